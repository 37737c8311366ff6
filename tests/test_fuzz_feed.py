"""Fuzzing what a market-data feed may send (streams/feed_formats.py, streams/feed.py): any
message, text or binary, in either format, is handled without raising; each valid tick is
published, each rejected item goes to the dead-letter sink with a reason, and nothing is both or
neither."""

from __future__ import annotations

import asyncio
import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratiowatch.streams.feed import FeedClient
from ratiowatch.streams.feed_formats import FORMATS, Item
from ratiowatch.streams.ticks import Rejected, Tick

KNOWN = frozenset({"SPY", "IWM"})
REASONS = {"not_json", "not_object", "empty_batch", "missing_field", "bad_symbol", "bad_price", "bad_ts",
           "unknown_symbol", "bad_format"}
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
fields = st.sampled_from(["ev", "sym", "p", "t", "symbol", "price", "ts", "ts_ms", "status", "x"])
values = scalars | st.sampled_from(["T", "Q", "SPY", "IWM", "spy", 1767000000000, 277.6, "2026-01-02T16:00:00Z"])
events = st.dictionaries(fields, values, max_size=6)
documents = st.recursive(scalars | events, lambda kids: st.lists(kids, max_size=6), max_leaves=20)
messages = (st.binary(max_size=200) | st.text(max_size=200)
            | documents.map(lambda d: json.dumps(d)) | documents.map(lambda d: json.dumps(d).encode()))


@FUZZ
@given(st.sampled_from(sorted(FORMATS)), documents)
def test_formats_map_any_document_to_items_without_raising(fmt, doc):
    items = FORMATS[fmt](doc)
    assert isinstance(items, list)
    for it in items:
        assert isinstance(it, Item)
        # A Rejected when the format saw the wrong shape; anything else goes on to parse_tick_obj
        # (plain passes non-objects through: parse_tick_obj rejects them as not_object).
        if isinstance(it.tick, Rejected):
            assert it.tick.reason in REASONS and it.tick.detail


class _Sink:
    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.dlq: list[dict] = []

    async def publish_ticks(self, ticks):
        self.ticks.extend(ticks)

    async def publish_dlq(self, record: bytes):
        self.dlq.append(orjson.loads(record))


@settings(FUZZ, max_examples=100)
@given(st.sampled_from(sorted(FORMATS)), st.lists(messages, min_size=1, max_size=5))
def test_the_feed_client_handles_any_message_and_accounts_for_every_item(fmt, msgs):
    sink = _Sink()
    client = FeedClient("ws://127.0.0.1:1/", fmt=fmt, symbols=sorted(KNOWN), publish_ticks=sink.publish_ticks,
                        publish_dlq=sink.publish_dlq, known_symbols=KNOWN, clock=lambda: 1_767_000_000.0)

    async def feed_all():
        for m in msgs:
            before_t, before_d = len(sink.ticks), len(sink.dlq)
            await client._handle(m)  # what the connection loop does with each message it receives
            new_ticks, new_dlq = sink.ticks[before_t:], sink.dlq[before_d:]
            # The message's items, as the format sees them: each one is a tick or a dead letter.
            try:
                doc = orjson.loads(m)
            except orjson.JSONDecodeError:
                assert not new_ticks and [d["reason"] for d in new_dlq] == ["not_json"]
                continue
            items = FORMATS[fmt](doc)
            assert len(new_ticks) + len(new_dlq) == len(items)

    asyncio.run(feed_all())
    for t in sink.ticks:
        assert t.symbol in KNOWN and t.price > 0
    for d in sink.dlq:
        assert d["reason"] in REASONS and d["detail"] and d["source"].startswith("feed:ws://127.0.0.1:1")
    assert client.messages == len(msgs)
    assert client.rejected == len(sink.dlq) and client.ticks == len(sink.ticks)
