"""The source role's flags: parsing, environment fallbacks, per-feed symbols, secrets kept out of
every repr. (Bad flags exiting 2 with a message: tests/test_source_e2e.py, as a user runs them.)"""

from __future__ import annotations

import argparse
from datetime import date

from ratiowatch.config import load_config
from ratiowatch.roles.source_options import add_source_arguments, source_options_from_args
from ratiowatch.streams.sources.poller import Series


def options(argv, monkeypatch, **env):
    for k in ("RATIOWATCH_FEED", "RATIOWATCH_FRED_URL", "RATIOWATCH_STOOQ_URL", "RATIOWATCH_ALPACA_URL",
              "APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "FINNHUB_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    p = argparse.ArgumentParser()
    add_source_arguments(p)
    return source_options_from_args(p.parse_args(argv), load_config(None))


def test_several_feeds_and_polls_with_their_symbols(monkeypatch):
    o = options(["--feed", "alpaca", "--feed", "finnhub:wss://ws.finnhub.io", "--feed-symbols", "finnhub=XLK",
                 "--poll", "fred:DGS10,DGS2", "--poll", "stooq:DXY=dx.f", "--poll-since", "2026-01-02",
                 "--always-open", "btc"], monkeypatch,
                APCA_API_KEY_ID="AKID", APCA_API_SECRET_KEY="SECRETVALUE", FINNHUB_API_KEY="FHKEY",
                RATIOWATCH_ALPACA_URL="ws://127.0.0.1:9999/v2/test")
    alpaca, finnhub = o.feeds
    assert (alpaca.fmt, alpaca.url) == ("alpaca", "ws://127.0.0.1:9999/v2/test")
    assert not {"DGS10", "DXY", "XLK"} & set(alpaca.symbols) and {"IWM", "SPY"} <= set(alpaca.symbols)
    assert finnhub.symbols == ("XLK",) and finnhub.url == "wss://ws.finnhub.io?token=FHKEY"
    assert o.polls == (Series("fred", "DGS10", "DGS10"), Series("fred", "DGS2", "DGS2"), Series("stooq", "DXY", "dx.f"))
    assert o.poll_since == date(2026, 1, 2) and o.always_open == frozenset({"BTC"}) and not o.sim
    shown = repr(o) + alpaca.label + finnhub.label
    assert "SECRETVALUE" not in shown and "AKID" not in shown and "FHKEY" not in shown


def test_environment_sets_the_feed_and_the_base_urls(monkeypatch):
    o = options(["--poll", "fred:DGS10"], monkeypatch, RATIOWATCH_FEED="polygon:ws://127.0.0.1:1/stocks",
                RATIOWATCH_FRED_URL="http://127.0.0.1:2", RATIOWATCH_STOOQ_URL="http://127.0.0.1:3")
    assert [(f.fmt, f.url) for f in o.feeds] == [("polygon", "ws://127.0.0.1:1/stocks")]
    assert (o.fred_url, o.stooq_url) == ("http://127.0.0.1:2", "http://127.0.0.1:3")
    assert options(["--fred-url", "http://mirror:8080"], monkeypatch, RATIOWATCH_FRED_URL="http://x").fred_url == "http://mirror:8080"


def test_no_source_means_the_simulated_market_unless_no_sim(monkeypatch):
    assert options([], monkeypatch).sim
    assert not options(["--no-sim"], monkeypatch).sim


def test_feed_symbols_no_scenario_uses_exit_2(monkeypatch, capsys):
    import pytest

    with pytest.raises(SystemExit) as e:
        options(["--feed", "coinbase", "--feed-symbols", "coinbase=ETH"], monkeypatch)
    assert e.value.code == 2 and "no scenario uses ETH" in capsys.readouterr().err
