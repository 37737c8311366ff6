"""Vendor feeds end to end over real websockets on 127.0.0.1: a local server replays message
shapes written from each vendor's documentation (the vendors' clouds cannot be reached from
here), including auth failures, errors, a dropped connection and a stalled one. The ticks land in
a TickSink that records what it was sent (Kafka itself: tests/test_source_kafka.py)."""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from websockets.asyncio.server import serve

from ratiowatch.roles.source import feed_client
from ratiowatch.roles.source_options import FeedSpec
from ratiowatch.streams.sources.base import FeedFatalError

KEY, SECRET, TOKEN = "AKTESTKEY123", "s3cr3t-value-xyz", "fh-token-789"


def client_logs(caplog) -> str:
    """What ratiowatch's side logged (the local vendor server's own logging is left out)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server"))


class RecordingSink:
    """A TickSink that keeps what it was sent, and lets a test wait for an amount of it."""

    def __init__(self) -> None:
        self.ticks: list = []
        self.dlq: list[dict] = []
        self.keys: set[bytes] = set()
        self.counters = {"ticks": 0, "batches": 0, "dead_lettered": 0}
        self._changed = asyncio.Condition()

    async def send_ticks(self, ticks, key):
        async with self._changed:
            self.ticks.extend(ticks)
            self.keys.add(key)
            self._changed.notify_all()

    async def send_dlq(self, record, key):
        async with self._changed:
            self.dlq.append(orjson.loads(record))
            self._changed.notify_all()

    async def wait(self, ticks: int, dlq: int = 0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.ticks) >= ticks and len(self.dlq) >= dlq), 30)


class Config:
    """The part of a ratiowatch Config a feed reads."""
    symbols = frozenset({"IWM", "SPY", "AAPL", "ETH", "BTC"})


def trade(sym, price, t):
    return {"T": "t", "S": sym, "i": 1, "x": "V", "p": price, "s": 100, "t": t, "c": ["@"], "z": "C"}


async def alpaca_vendor(ws, state):
    """Alpaca's stream as documented: welcome, auth, subscribe ack, trades in arrays."""
    state["connections"] += 1
    await ws.send(orjson.dumps([{"T": "success", "msg": "connected"}]))
    auth = orjson.loads(await ws.recv())
    state["auth"].append(auth)
    if auth != {"action": "auth", "key": KEY, "secret": SECRET}:
        await ws.send(orjson.dumps([{"T": "error", "code": 402, "msg": "auth failed"}]))
        await ws.wait_closed()
        return
    await ws.send(orjson.dumps([{"T": "success", "msg": "authenticated"}]))
    sub = orjson.loads(await ws.recv())
    state["subscribe"].append(sub)
    await ws.send(orjson.dumps([{"T": "subscription", "trades": sub["trades"], "quotes": [], "bars": []}]))
    if state["connections"] == 1:
        await ws.send(orjson.dumps([trade("IWM", 210.5, "2026-01-05T15:00:00Z"), trade("SPY", 590.1, "2026-01-05T15:00:00Z")]))
        await ws.send(orjson.dumps([trade("IWM", -1, "2026-01-05T15:01:00Z"), {"T": "t", "S": "SPY"}, trade("ZZZ", 1.0, "2026-01-05T15:01:00Z")]))
        await ws.send(b"{not json")
        return  # the connection drops here: the client must reconnect, authenticate and subscribe again
    await ws.send(orjson.dumps([trade("IWM", 211.0, "2026-01-05T15:02:00Z")]))
    await ws.wait_closed()


@pytest.fixture
async def alpaca_server():
    state = {"connections": 0, "auth": [], "subscribe": []}
    async with serve(lambda ws: alpaca_vendor(ws, state), "127.0.0.1", 0) as server:
        state["url"] = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v2/iex"
        yield state


async def test_alpaca_feed_reads_trades_dead_letters_bad_items_and_survives_a_drop(alpaca_server, caplog):
    caplog.set_level(logging.DEBUG)
    sink = RecordingSink()
    spec = FeedSpec("alpaca", alpaca_server["url"], ("IWM", "SPY"), secrets=(KEY, SECRET))
    statuses = []
    client = feed_client(spec, Config(), sink, backoff=(0.01, 0.05), on_status=statuses.append)
    task = asyncio.create_task(client.run())
    try:
        await sink.wait(ticks=3, dlq=4)
    finally:
        task.cancel()
    assert [(t.symbol, t.price) for t in sink.ticks] == [("IWM", 210.5), ("SPY", 590.1), ("IWM", 211.0)]
    assert sorted(d["reason"] for d in sink.dlq) == ["bad_price", "missing_field", "not_json", "unknown_symbol"]
    assert all(d["source"] == "feed:ws://127.0.0.1:%s/v2/iex" % urlsplit(alpaca_server["url"]).port for d in sink.dlq)
    assert alpaca_server["connections"] == 2 and len(alpaca_server["subscribe"]) == 2
    assert alpaca_server["subscribe"][0] == {"action": "subscribe", "trades": ["IWM", "SPY"]}
    assert sink.keys == {spec.label.encode()}
    assert {"connected", "authenticated", "subscribed", "reconnecting", "gap"} <= {s["state"] for s in statuses}
    logged = client_logs(caplog) + repr(statuses) + repr(spec) + repr(sink.dlq)
    assert SECRET not in logged and KEY not in logged


async def test_alpaca_auth_failure_is_a_clear_error_without_retries(alpaca_server, caplog):
    caplog.set_level(logging.DEBUG)
    sink = RecordingSink()
    spec = FeedSpec("alpaca", alpaca_server["url"], ("IWM",), secrets=(KEY, "wrong-secret"))
    with pytest.raises(FeedFatalError, match="alpaca error 402: auth failed"):
        await asyncio.wait_for(feed_client(spec, Config(), sink, backoff=(0.01, 0.05)).run(), 30)
    assert alpaca_server["connections"] == 1          # no retry storm
    assert "wrong-secret" not in client_logs(caplog) and sink.ticks == []


async def finnhub_vendor(ws, state):
    state["connections"] += 1
    subs = [orjson.loads(await ws.recv()) for _ in range(2)]
    state["subscribe"].append(subs)
    await ws.send(orjson.dumps({"type": "ping"}))
    n = state["connections"]
    await ws.send(orjson.dumps({"type": "trade", "data": [{"s": "AAPL", "p": 129.5 + n, "t": 1767628800000 + n, "v": 1, "c": ["1"]},
                                                           {"s": "AAPL", "p": "x", "t": 1767628800000, "v": 1}]}))
    await ws.wait_closed()   # then silence: the client must notice the stall and reconnect


@pytest.fixture
async def finnhub_server():
    state = {"connections": 0, "subscribe": [], "tokens": []}

    def check_token(connection, request):
        token = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        state["tokens"].append(token)
        if token != TOKEN:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Invalid API key\n")
        return None

    async with serve(lambda ws: finnhub_vendor(ws, state), "127.0.0.1", 0, process_request=check_token) as server:
        state["url"] = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        yield state


async def test_finnhub_feed_trades_pings_and_a_stall(finnhub_server):
    sink = RecordingSink()
    spec = FeedSpec("finnhub", finnhub_server["url"] + f"?token={TOKEN}", ("AAPL", "IWM"))
    client = feed_client(spec, Config(), sink, backoff=(0.01, 0.05), silence_s=0.5)
    task = asyncio.create_task(client.run())
    try:
        await sink.wait(ticks=2, dlq=2)
    finally:
        task.cancel()
    assert [t.price for t in sink.ticks] == [130.5, 131.5]
    assert [d["reason"] for d in sink.dlq] == ["bad_price", "bad_price"]
    assert finnhub_server["subscribe"][0] == [{"type": "subscribe", "symbol": "AAPL"}, {"type": "subscribe", "symbol": "IWM"}]
    assert TOKEN.encode() not in spec.label.encode()


async def test_finnhub_wrong_key_is_refused_at_the_handshake_and_not_retried(finnhub_server, caplog):
    caplog.set_level(logging.DEBUG)
    sink = RecordingSink()
    spec = FeedSpec("finnhub", finnhub_server["url"] + "?token=bad-token-000", ("AAPL",))
    with pytest.raises(FeedFatalError, match="HTTP 401") as e:
        await asyncio.wait_for(feed_client(spec, Config(), sink, backoff=(0.01, 0.05)).run(), 30)
    assert finnhub_server["tokens"] == ["bad-token-000"]
    assert "bad-token-000" not in str(e.value) + client_logs(caplog)


async def coinbase_vendor(ws, state):
    sub = orjson.loads(await ws.recv())
    state["subscribe"].append(sub)
    if "BAD-USD" in sub["product_ids"]:
        await ws.send(orjson.dumps({"type": "error", "message": "Failed to subscribe", "reason": "BAD-USD is not a valid product"}))
        await ws.wait_closed()
        return
    await ws.send(orjson.dumps({"type": "subscriptions", "channels": [{"name": "ticker", "product_ids": sub["product_ids"]},
                                                                     {"name": "heartbeat", "product_ids": sub["product_ids"]}]}))
    await ws.send(orjson.dumps({"type": "heartbeat", "sequence": 90, "last_trade_id": 20, "product_id": "ETH-USD",
                                "time": "2026-01-03T23:59:58.000001Z"}))
    for pid, price in (("ETH-USD", "3012.55"), ("BTC-USD", "97000.10"), ("ETH-USD", "NaN")):
        await ws.send(orjson.dumps({"type": "ticker", "sequence": 1, "product_id": pid, "price": price,
                                    "time": "2026-01-03T23:59:59.5Z", "trade_id": 1, "last_size": "0.1"}))
    await ws.wait_closed()


async def test_coinbase_feed_ticker_heartbeat_and_a_refused_subscription():
    state = {"subscribe": []}
    async with serve(lambda ws: coinbase_vendor(ws, state), "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        sink = RecordingSink()
        task = asyncio.create_task(feed_client(FeedSpec("coinbase", url, ("ETH", "BTC")), Config(), sink).run())
        try:
            await sink.wait(ticks=2, dlq=1)
        finally:
            task.cancel()
        assert [(t.symbol, t.price) for t in sink.ticks] == [("ETH", 3012.55), ("BTC", 97000.1)]
        assert sink.dlq[0]["reason"] == "bad_price"
        assert state["subscribe"][0] == {"type": "subscribe", "product_ids": ["ETH-USD", "BTC-USD"], "channels": ["ticker", "heartbeat"]}
        with pytest.raises(FeedFatalError, match="Failed to subscribe: BAD-USD is not a valid product"):
            await asyncio.wait_for(feed_client(FeedSpec("coinbase", url, ("BAD",)), Config(), RecordingSink()).run(), 30)
        assert len(state["subscribe"]) == 2


async def test_alpaca_internal_error_reconnects_and_resubscribes():
    state = {"connections": 0, "subscribed": 0}

    async def vendor(ws):
        state["connections"] += 1
        await ws.send(orjson.dumps([{"T": "success", "msg": "connected"}]))
        await ws.recv()
        await ws.send(orjson.dumps([{"T": "success", "msg": "authenticated"}]))
        await ws.recv()
        state["subscribed"] += 1
        if state["connections"] == 1:
            await ws.send(orjson.dumps([{"T": "error", "code": 500, "msg": "internal error"}]))
        else:
            await ws.send(orjson.dumps([trade("SPY", 590.0, "2026-01-05T15:00:00Z")]))
        await ws.wait_closed()

    async with serve(vendor, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        sink, statuses = RecordingSink(), []
        client = feed_client(FeedSpec("alpaca", url, ("SPY",), secrets=(KEY, SECRET)), Config(), sink,
                             backoff=(0.01, 0.05), on_status=statuses.append)
        task = asyncio.create_task(client.run())
        try:
            await sink.wait(ticks=1)
        finally:
            task.cancel()
    assert state == {"connections": 2, "subscribed": 2}
    assert [s["reason"] for s in statuses if s["state"] == "reconnecting"] == ["alpaca error 500: internal error"]
