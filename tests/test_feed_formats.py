"""Feed message formats and subscribe templates: pure functions, no network."""

from __future__ import annotations

import orjson
import pytest

from ratiowatch.streams.feed import FeedClient, redact_url
from ratiowatch.streams.feed_subscribe import render_subscribe
from ratiowatch.streams.feed_formats import FORMATS, Item, get_format, plain, polygon
from ratiowatch.streams.ticks import Rejected


def _reasons(items: list[Item]) -> list[str | None]:
    return [it.tick.reason if isinstance(it.tick, Rejected) else None for it in items]


def test_plain_passes_objects_and_arrays_through_for_validation():
    one = {"symbol": "IWM", "price": 277.6, "ts": 1766000000000}
    assert plain(one) == [Item(one, one)]
    assert plain([one, 42]) == [Item(one, one), Item(42, 42)]  # 42 is rejected later by parse_tick_obj
    [empty] = plain([])
    assert empty.tick.reason == "empty_batch"


def test_polygon_maps_trades_ignores_other_events_and_rejects_bad_shapes():
    trade = {"ev": "T", "sym": "IWM", "p": 277.6, "t": 1766000000000, "s": 100}
    doc = [
        {"ev": "status", "status": "auth_success", "message": "authenticated"},
        trade,
        {"ev": "Q", "sym": "SPY", "bp": 1.0},          # a quote: not a price we use
        {"ev": "T", "sym": "SPY", "t": 1766000000000},  # trade without a price
        {"sym": "SPY", "p": 1.0},                       # no event type at all
        "T.SPY",
    ]
    items = polygon(doc)
    assert items[0] == Item(trade, {"symbol": "IWM", "price": 277.6, "ts": 1766000000000})
    assert _reasons(items) == [None, "missing_field", "missing_field", "not_object"]
    assert "'p'" in items[1].tick.detail and "'ev'" in items[2].tick.detail
    # The dead letter keeps the vendor's own object.
    assert items[1].raw == doc[3] and items[1].tick.item == doc[3]
    assert polygon({"ev": "status", "status": "connected"}) == []
    assert _reasons(polygon([])) == ["empty_batch"]


def test_unknown_format_names_the_choices():
    with pytest.raises(KeyError, match="plain") as e:
        get_format("bloomberg")
    assert "polygon" in str(e.value)
    assert set(FORMATS) >= {"plain", "polygon"}


def test_render_subscribe_fills_symbols():
    syms = ["IWM", "SPY"]
    assert render_subscribe(None, syms) == []
    [m] = render_subscribe({"op": "subscribe", "symbols": "{symbols}", "channel": "trades:{symbols}"}, syms)
    assert orjson.loads(m) == {"op": "subscribe", "symbols": ["IWM", "SPY"], "channel": "trades:IWM,SPY"}
    assert render_subscribe('{"action":"subscribe","params":"{symbols}"}', ["T.IWM", "T.SPY"]) == [
        '{"action":"subscribe","params":"T.IWM,T.SPY"}']
    auth, sub = render_subscribe([{"action": "auth", "params": "k"}, {"action": "subscribe", "params": "{symbols}"}], syms)
    assert orjson.loads(auth) == {"action": "auth", "params": "k"}
    assert orjson.loads(sub) == {"action": "subscribe", "params": ["IWM", "SPY"]}
    with pytest.raises(TypeError):
        render_subscribe(42, syms)


def test_redact_url_drops_credentials_and_query():
    assert redact_url("wss://user:s3cret@feed.example.com:8443/stocks?apiKey=s3cret#x") == "wss://feed.example.com:8443/stocks"
    assert redact_url("ws://127.0.0.1:9000/") == "ws://127.0.0.1:9000/"


async def _noop(_):
    return None


@pytest.mark.parametrize("kwargs, match", [
    ({"url": "http://127.0.0.1/"}, "ws:// or wss://"),
    ({"fmt": "nope"}, "unknown feed format"),
    ({"backoff": (2.0, 1.0)}, "backoff"),
    ({"silence_s": 0}, "silence_s"),
])
def test_bad_client_settings_fail_at_construction(kwargs, match):
    args = {"url": "ws://127.0.0.1:1/", "fmt": "plain"} | kwargs
    with pytest.raises((ValueError, KeyError), match=match):
        FeedClient(args.pop("url"), symbols=["IWM"], publish_ticks=_noop, publish_dlq=_noop, **args)
