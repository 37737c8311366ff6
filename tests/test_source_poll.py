"""The FRED and Stooq poller against a local HTTP server serving the documented CSV shapes."""

from __future__ import annotations

from datetime import date

import aiohttp
import orjson
import pytest

from ratiowatch.streams.sources.calendar import Calendar
from ratiowatch.streams.sources.poller import Poller, Series, series_from_spec
from source_vendors import VendorHTTP
from test_source_feeds import RecordingSink

NY = Calendar("America/New_York")


def poller(server, series, sink, **kw):
    kw.setdefault("since", date(2026, 1, 1))
    return Poller(series, base_url=server.url, sink=sink, interval_s=3600, calendar_for=lambda s: NY,
                  known=frozenset({"DGS10", "DGS2", "IWM", "BTC"}), backoff=0.01, **kw)


async def test_fred_poll_sends_new_observations_once_and_the_newest_revision():
    with VendorHTTP() as fred:
        fred.series["DGS10"] = [("2025-12-31", "4.18"), ("2026-01-02", "4.19"), ("2026-01-05", "."), ("2026-01-06", "4.17")]
        fred.series["DGS2"] = [("2026-01-02", "3.47"), ("2026-01-06", "oops"), ("2026-01-07", "-0.5")]
        sink = RecordingSink()
        p = poller(fred, [Series("fred", "DGS10", "DGS10"), Series("fred", "DGS2", "DGS2")], sink)
        async with aiohttp.ClientSession() as session:
            await p.poll_once(session)
            assert [(t.symbol, t.price, t.ts_ms) for t in sink.ticks] == [
                ("DGS10", 4.19, NY.close_ts_ms(date(2026, 1, 2))), ("DGS10", 4.17, NY.close_ts_ms(date(2026, 1, 6))),
                ("DGS2", 3.47, NY.close_ts_ms(date(2026, 1, 2)))]
            assert [d["reason"] for d in sink.dlq] == ["bad_row", "bad_price"]
            assert "'oops' is not a number" in sink.dlq[0]["detail"] and sink.dlq[1]["input"]["date"] == "2026-01-07"
            assert sink.keys == {b"DGS10", b"DGS2"}
            # Unchanged: nothing sent again (and the server is asked only from the newest date on).
            await p.poll_once(session)
            assert len(sink.ticks) == 3 and len(sink.dlq) == 2
            assert fred.requests[-2][1] == {"id": "DGS10", "cosd": "2026-01-06"}
            # A revision of the newest date is sent again; of an older one, not; a new date is.
            fred.series["DGS10"] = [("2026-01-02", "4.20"), ("2026-01-06", "4.16"), ("2026-01-07", "4.15")]
            await p.poll_once(session)
        assert [(t.symbol, t.price) for t in sink.ticks[3:]] == [("DGS10", 4.16), ("DGS10", 4.15)]
        assert p.counters["revisions_sent"] == 1 and p.counters["ticks"] == 5


async def test_http_errors_are_retried_then_dead_lettered_and_polled_again():
    with VendorHTTP() as fred:
        fred.series["DGS10"] = [("2026-01-02", "4.19")]
        fred.fail["DGS10"] = [503, 429]                      # retried within the round
        sink = RecordingSink()
        p = poller(fred, [Series("fred", "DGS10", "DGS10"), Series("fred", "DGS2", "NOSUCH")], sink)
        async with aiohttp.ClientSession() as session:
            await p.poll_once(session)
            assert [t.price for t in sink.ticks] == [4.19]
            assert [(d["reason"], d["input"]["series"]) for d in sink.dlq] == [("http_error", "NOSUCH")]
            assert "HTTP 404" in sink.dlq[0]["detail"]
            fred.fail["DGS10"] = [500, 500, 500]             # every attempt fails: dead-lettered, kept for next round
            fred.series["DGS10"].append(("2026-01-05", "4.2"))
            await p.poll_once(session)
            assert sink.dlq[-2]["reason"] == "fetch_failed" and "after 3 attempts" in sink.dlq[-2]["detail"]
            await p.poll_once(session)
        assert [t.price for t in sink.ticks] == [4.19, 4.2]
        assert p.counters["fetch_errors"] == 4


async def test_stooq_poll_and_a_24_7_series_closing_at_the_end_of_the_utc_day():
    with VendorHTTP() as stooq:
        stooq.series["iwm.us"] = [("2026-01-02", "250.1"), ("2026-01-05", "251.5")]
        stooq.series["btcusd"] = [("2026-01-03", "97000.5")]
        sink = RecordingSink()
        utc = Calendar("UTC", always_open=True)
        series = [series_from_spec("stooq", "IWM"), series_from_spec("stooq", "BTC=btcusd"), series_from_spec("stooq", "ZZZ.US")]
        assert series[0] == Series("stooq", "IWM", "iwm.us") and series[2] == Series("stooq", "ZZZ", "zzz.us")
        p = Poller(series, base_url=stooq.url, sink=sink, interval_s=3600, since=date(2026, 1, 1), known=None,
                   calendar_for=lambda s: utc if s == "BTC" else NY)
        async with aiohttp.ClientSession() as session:
            await p.poll_once(session)
        assert [(t.symbol, t.price, t.ts_ms) for t in sink.ticks] == [
            ("IWM", 250.1, NY.close_ts_ms(date(2026, 1, 2))), ("IWM", 251.5, NY.close_ts_ms(date(2026, 1, 5))),
            ("BTC", 97000.5, 1767484799999)]
        assert [d["reason"] for d in sink.dlq] == ["no_data"]
        assert stooq.requests[0][1] == {"s": "iwm.us", "i": "d", "d1": "20260101"}
