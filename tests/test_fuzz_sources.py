"""Fuzzing every new source format (hypothesis): arbitrary and near-valid vendor messages and CSV
bodies. Nothing crashes, every item is a candidate tick or a rejection with a reason, and rejected
input changes no state."""

from __future__ import annotations

import copy

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratiowatch.streams.sources.alpaca import AlpacaProtocol
from ratiowatch.streams.sources.coinbase import CoinbaseProtocol
from ratiowatch.streams.sources.csvseries import SeriesTracker, parse_fred_csv, parse_stooq_csv
from ratiowatch.streams.sources.finnhub import FinnhubProtocol
from ratiowatch.streams.ticks import Rejected, Tick, parse_tick_obj

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["t", "success", "error", "subscription", "trade", "ping",
                                                           "ticker", "heartbeat", "subscriptions", "connected",
                                                           "authenticated", "2026-01-05T15:00:00Z", "IWM", "ETH-USD"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=6)),
                           max_leaves=25)
keys = ["T", "S", "p", "t", "msg", "code", "trades", "type", "data", "s", "v", "product_id", "price", "time",
        "channels", "message", "reason", "name", "product_ids"]
near_objects = st.dictionaries(st.sampled_from(keys), json_values, max_size=8)
documents = st.one_of(json_values, near_objects, st.lists(near_objects, max_size=4),
                      st.fixed_dictionaries({"type": st.just("trade"), "data": st.lists(near_objects, max_size=4)}))


def protocols():
    a1 = AlpacaProtocol(["IWM", "SPY"], key="k", secret="s")
    a2 = AlpacaProtocol(["IWM", "SPY"], key="k", secret="s")
    a2.handle([{"T": "success", "msg": "connected"}])
    a3 = copy.deepcopy(a2)
    a3.handle([{"T": "success", "msg": "authenticated"}])
    return [a1, a2, a3, FinnhubProtocol(["AAPL"]), CoinbaseProtocol(["ETH", "BTC"])]


def check(proto, doc) -> None:
    before = proto.state()
    reply = proto.handle(orjson.loads(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS)) if _encodable(doc) else doc)
    for it in reply.items:
        if isinstance(it.tick, Rejected):
            assert it.tick.reason and it.tick.detail
        else:
            assert isinstance(parse_tick_obj(it.tick), (Tick, Rejected))   # validation never raises either
    assert all(isinstance(m, str) for m in reply.send)
    if reply.status is None:
        assert proto.state() == before, (doc, reply)   # only an accepted milestone moves the handshake


def _encodable(doc) -> bool:
    try:
        orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS)
        return True
    except (TypeError, orjson.JSONEncodeError):
        return False


@FUZZ
@given(st.lists(documents, min_size=1, max_size=5))
def test_vendor_protocols_never_crash_and_rejected_input_changes_no_state(docs):
    for proto in protocols():
        for doc in docs:
            check(proto, doc)


csv_lines = st.lists(st.one_of(
    st.tuples(st.dates().map(str), st.one_of(st.floats(allow_nan=True).map(repr), st.sampled_from([".", "", "x", "1e400"]))).map(",".join),
    st.text(max_size=40)), max_size=12)


@FUZZ
@given(st.sampled_from(["observation_date,DGS10", "DATE,DGS2", "Date,Open,High,Low,Close,Volume", "", "No data", "x"]),
       csv_lines)
def test_csv_series_parsers_never_crash_and_keep_dates_ascending(header, lines):
    text = "\n".join([header, *lines])
    for obs, bad in (parse_fred_csv(text, "DGS10"), parse_stooq_csv(text, "iwm.us")):
        assert all(a.day < b.day for a, b in zip(obs, obs[1:]))
        assert all(r.reason in ("bad_csv", "bad_row", "no_data") and r.detail for r in bad)
        t = SeriesTracker()
        snapshot = (dict(t.sent), t.newest)
        ch = t.changes(obs)
        assert (dict(t.sent), t.newest) == snapshot      # deciding what to send changes nothing
        assert ch.send == obs                            # a fresh tracker sends every observation once
        t.commit(ch)
        assert t.changes(obs) == ([], [], [])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["alpaca", "finnhub", "coinbase"]),
       st.lists(st.one_of(documents.map(lambda d: orjson.dumps(d, option=orjson.OPT_NON_STR_KEYS) if _encodable(d) else b"[]"),
                          st.binary(max_size=40), st.text(max_size=40)), min_size=1, max_size=4))
def test_feed_client_takes_any_message_of_any_vendor_and_loses_nothing(fmt, messages):
    """Through the feed client: no message crashes it, and every item the vendor sent is either a
    published tick or a dead letter with a reason."""
    import asyncio

    from ratiowatch.roles.source import feed_client
    from ratiowatch.roles.source_options import FeedSpec
    from test_source_feeds import Config, RecordingSink

    async def go():
        sink = RecordingSink()
        client = feed_client(FeedSpec(fmt, "ws://127.0.0.1:9/x", ("IWM", "ETH"), secrets=("k", "s")), Config(), sink)
        proto = client.protocol(client.symbols)
        expected = 0
        for m in messages:
            reply = await client._handle(m, proto)
            expected += len(reply.items) if reply is not None else 1   # None: not JSON, one dead letter
        assert len(sink.ticks) + len(sink.dlq) == expected
        assert all(d["reason"] and d["detail"] for d in sink.dlq)

    asyncio.run(go())
