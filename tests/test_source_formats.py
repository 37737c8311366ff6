"""The vendor protocols and the CSV series parsers, pure: message samples written from each
vendor's documentation (pages named in the modules and docs/sources.md)."""

from __future__ import annotations

from datetime import date

import orjson
import pytest

from ratiowatch.streams.sources.alpaca import AlpacaProtocol
from ratiowatch.streams.sources.calendar import Calendar
from ratiowatch.streams.sources.coinbase import CoinbaseProtocol, product_for, symbol_for
from ratiowatch.streams.sources.csvseries import Obs, SeriesTracker, parse_fred_csv, parse_stooq_csv
from ratiowatch.streams.sources.finnhub import FinnhubProtocol
from ratiowatch.streams.ticks import Rejected, parse_tick_obj


def ticks(reply):
    return [parse_tick_obj(i.tick) for i in reply.items if not isinstance(i.tick, Rejected)]


def rejected(reply):
    return [i.tick.reason for i in reply.items if isinstance(i.tick, Rejected)]


# -- Alpaca (docs.alpaca.markets/docs/streaming-market-data, .../real-time-stock-pricing-data) --

def test_alpaca_handshake_authenticates_then_subscribes_and_reads_trades():
    p = AlpacaProtocol(["IWM", "SPY"], key="KEY-ID", secret="S3CRET")
    assert p.start() == []
    r = p.handle([{"T": "success", "msg": "connected"}])
    assert r.status == "connected"
    assert orjson.loads(r.send[0]) == {"action": "auth", "key": "KEY-ID", "secret": "S3CRET"}
    r = p.handle([{"T": "success", "msg": "authenticated"}])
    assert orjson.loads(r.send[0]) == {"action": "subscribe", "trades": ["IWM", "SPY"]}
    r = p.handle([{"T": "subscription", "trades": ["IWM"], "quotes": [], "bars": [], "updatedBars": [],
                   "dailyBars": [], "statuses": [], "lulds": [], "corrections": ["IWM"], "cancelErrors": ["IWM"]}])
    assert r.status == "subscribed" and p.missing() == ["SPY"]
    r = p.handle([{"T": "t", "S": "IWM", "i": 96921, "x": "D", "p": 210.55, "s": 100,
                   "t": "2026-01-05T15:51:44.208123456Z", "c": ["@"], "z": "C"},
                  {"T": "q", "S": "IWM", "bx": "U", "bp": 210.5, "bs": 1, "ax": "Q", "ap": 210.6, "as": 1,
                   "t": "2026-01-05T15:51:44.3Z", "c": ["R"], "z": "C"},
                  {"T": "b", "S": "SPY", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "t": "2026-01-05T15:51:00Z"}])
    assert [(t.symbol, t.price) for t in ticks(r)] == [("IWM", 210.55)]
    assert ticks(r)[0].ts_ms == 1767628304208


@pytest.mark.parametrize("code, fatal", [(402, True), (401, True), (404, True), (406, True), (409, True),
                                         (405, True), (400, True), (407, False), (500, False)])
def test_alpaca_errors_are_fatal_or_retried_by_code(code, fatal):
    p = AlpacaProtocol(["IWM"], key="k", secret="s")
    r = p.handle([{"T": "error", "code": code, "msg": "auth failed"}])
    assert bool(r.fatal) is fatal and bool(r.retry) is (not fatal)
    assert f"alpaca error {code}" in (r.fatal or r.retry)


def test_alpaca_bad_items_are_rejected_with_reasons_and_keys_never_in_repr():
    p = AlpacaProtocol(["IWM"], key="KEY-ID", secret="S3CRET")
    r = p.handle([{"T": "t", "S": "IWM", "p": 1.0}, 7, {"x": 1}, {"T": "zz"}, {"T": "subscription", "trades": "IWM"}])
    assert rejected(r) == ["missing_field", "not_object", "missing_field", "bad_message", "bad_message"]
    assert p.state() == ("new", ())
    assert "S3CRET" not in repr(p) and "KEY-ID" not in repr(p)
    assert rejected(p.handle([])) == ["empty_batch"]


# -- Finnhub (finnhub.io/docs/api/websocket-trades) --

def test_finnhub_subscribes_per_symbol_reads_trades_and_ignores_pings():
    p = FinnhubProtocol(["AAPL", "IWM"])
    assert [orjson.loads(m) for m in p.start()] == [{"type": "subscribe", "symbol": "AAPL"},
                                                    {"type": "subscribe", "symbol": "IWM"}]
    r = p.handle({"data": [{"c": ["1", "8"], "p": 129.58, "s": "AAPL", "t": 1672348887666, "v": 1},
                           {"p": 210.1, "s": "IWM", "t": 1672348887700, "v": 3}], "type": "trade"})
    assert [(t.symbol, t.price, t.ts_ms) for t in ticks(r)] == [("AAPL", 129.58, 1672348887666),
                                                                 ("IWM", 210.1, 1672348887700)]
    assert p.handle({"type": "ping"}).items == ()
    assert p.handle({"type": "error", "msg": "Subscribing to too many symbols"}).fatal.startswith("finnhub error")
    assert rejected(p.handle({"type": "trade", "data": [{"s": "X", "p": 1}]})) == ["missing_field"]
    assert rejected(p.handle({"type": "trade"})) == ["missing_field"]
    assert rejected(p.handle(["x"])) == ["not_object"]


# -- Coinbase Exchange (docs.cdp.coinbase.com/exchange/websocket-feed/overview, .../channels) --

def test_coinbase_subscribes_to_ticker_and_heartbeat_and_maps_products():
    p = CoinbaseProtocol(["ETH", "BTC", "ETH.BTC"])
    assert orjson.loads(p.start()[0]) == {"type": "subscribe", "product_ids": ["ETH-USD", "BTC-USD", "ETH-BTC"],
                                          "channels": ["ticker", "heartbeat"]}
    r = p.handle({"type": "subscriptions", "channels": [{"name": "ticker", "product_ids": ["ETH-USD", "BTC-USD"]},
                                                        {"name": "heartbeat", "product_ids": ["ETH-USD"]}]})
    assert r.status == "subscribed" and p.missing() == ["ETH-BTC"]
    r = p.handle({"type": "ticker", "sequence": 37475248783, "product_id": "ETH-USD", "price": "3012.55",
                  "open_24h": "1", "volume_24h": "1", "low_24h": "1", "high_24h": "1", "volume_30d": "1",
                  "best_bid": "3012.54", "best_ask": "3012.56", "side": "buy", "time": "2026-01-05T12:00:00.123456Z",
                  "trade_id": 370843401, "last_size": "0.5"})
    assert [(t.symbol, t.price) for t in ticks(r)] == [("ETH", 3012.55)]
    assert p.handle({"type": "heartbeat", "sequence": 90, "last_trade_id": 20, "product_id": "BTC-USD",
                     "time": "2014-11-07T08:19:28.464459Z"}).items == ()
    assert "Failed to subscribe" in p.handle({"type": "error", "message": "Failed to subscribe",
                                              "reason": "ETH-XYZ is not a valid product"}).fatal
    assert rejected(p.handle({"type": "ticker", "product_id": "ETH-USD", "price": "abc", "time": "x"})) == ["bad_price"]
    assert symbol_for("ETH-BTC") == "ETH.BTC" and product_for("ETH.BTC") == "ETH-BTC"


# -- CSV series, the send policy, sessions --

FRED = "observation_date,DGS10\n2026-01-02,4.19\n2026-01-05,.\n2026-01-06,4.17\n2026-01-07,4.15\n"


def test_fred_csv_skips_missing_days_and_rejects_bad_rows():
    obs, bad = parse_fred_csv(FRED, "DGS10")
    assert obs == [Obs(date(2026, 1, 2), 4.19), Obs(date(2026, 1, 6), 4.17), Obs(date(2026, 1, 7), 4.15)]
    assert bad == []
    obs, bad = parse_fred_csv("DATE,DGS2\n2026-01-02,4.3\n2026-13-01,4.2\n2026-01-03,x\n2026-01-01,4.1\n", "DGS2")
    assert obs == [Obs(date(2026, 1, 2), 4.3)]
    assert [b.reason for b in bad] == ["bad_row"] * 3
    assert "dates must ascend" in bad[2].detail
    assert parse_fred_csv("<html>", "X")[1][0].reason == "bad_csv"


def test_stooq_csv_reads_closes_and_no_data_is_a_reason():
    obs, bad = parse_stooq_csv("Date,Open,High,Low,Close,Volume\n2026-01-02,1,2,0.5,1.5,100\n", "iwm.us")
    assert obs == [Obs(date(2026, 1, 2), 1.5)] and bad == []
    assert parse_stooq_csv("No data", "zzz.us")[1][0].reason == "no_data"


def test_tracker_sends_once_resends_a_revision_of_the_newest_and_ignores_older_revisions():
    t = SeriesTracker(since=date(2026, 1, 3))
    obs, _ = parse_fred_csv(FRED, "DGS10")
    ch = t.changes(obs)
    assert ch.send == obs[1:]                      # since 2026-01-03
    assert t.changes(obs).send == ch.send          # nothing is recorded until commit
    t.commit(ch)
    assert t.changes(obs) == ([], [], [])          # unchanged: nothing again
    revised = [obs[0], Obs(obs[1].day, 4.18), Obs(obs[2].day, 4.16), Obs(date(2026, 1, 8), 4.2)]
    ch = t.changes(revised)
    assert ch.send == [Obs(obs[2].day, 4.16), Obs(date(2026, 1, 8), 4.2)]
    assert ch.revised == [Obs(obs[2].day, 4.16)] and ch.ignored == [Obs(obs[1].day, 4.18)]
    t.commit(ch)
    assert t.changes(revised) == ([], [], [])


def test_sessions_close_at_1600_local_or_at_the_end_of_the_utc_day_for_24_7():
    ny = Calendar("America/New_York")
    assert ny.close_ts_ms(date(2026, 1, 5)) == 1767646800000          # 21:00 UTC
    utc = Calendar("UTC", always_open=True)
    end = utc.close_ts_ms(date(2026, 1, 3))                          # a Saturday trades too
    assert end == 1767484799999 and utc.session_of(end) == date(2026, 1, 3)
    assert utc.session_of(end + 1) == date(2026, 1, 4)
