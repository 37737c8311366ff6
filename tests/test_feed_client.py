"""FeedClient against a real websockets server on 127.0.0.1 that plays ticks (good and malformed),
drops the connection, stalls silently, and records every subscribe message it receives."""

from __future__ import annotations

import asyncio
import csv
import shutil
import ssl
import subprocess
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.server import serve

from ratiowatch.streams.feed import FeedClient
from ratiowatch.streams.ticks import Tick

HISTORY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "history"
SUBSCRIBE = {"action": "subscribe", "symbols": "{symbols}"}


def real_closes(symbol: str, n: int) -> list[tuple[str, float]]:
    """The last ``n`` (date, close) rows of a symbol's history: real prices to play."""
    with open(HISTORY / f"{symbol}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [(r["date"], float(r["close"])) for r in rows[-n:]]


class ScriptedFeed:
    """A websocket server whose n-th connection runs ``scripts[n]`` (the last one repeats), after
    the client's subscribe message when ``subscribed`` (as a vendor waits for it)."""

    def __init__(self, scripts, subscribed=True, **serve_kwargs):
        self.scripts = scripts
        self.subscribed = subscribed
        self.serve_kwargs = serve_kwargs
        self.subscribes: list[str] = []
        self.connections = 0
        self.server = None

    async def handler(self, ws):
        i = self.connections
        self.connections += 1
        if self.subscribed:
            self.subscribes.append(await ws.recv())
        await self.scripts[min(i, len(self.scripts) - 1)](ws)

    async def __aenter__(self):
        self.server = await serve(self.handler, "127.0.0.1", 0, **self.serve_kwargs)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


async def send_all(ws, messages):
    for m in messages:
        await ws.send(m)


async def drop(ws):
    """Cut the TCP connection without a closing handshake, once the client has read what was sent
    (a pong answers a ping only after every earlier frame was received)."""
    await (await ws.ping())
    ws.transport.abort()


async def stall(ws):
    """Say nothing, but stay connected (the library still answers pings): only the client's
    silence watchdog can notice."""
    await ws.wait_closed()


class Sink:
    def __init__(self):
        self.batches: list[list[Tick]] = []
        self.dlq: list[dict] = []
        self.statuses: list[dict] = []
        self.changed = asyncio.Event()

    async def ticks(self, batch):
        self.batches.append(batch)
        self.changed.set()

    async def dead(self, record: bytes):
        self.dlq.append(orjson.loads(record))
        self.changed.set()

    def status(self, s):
        self.statuses.append(s)
        self.changed.set()

    async def until(self, cond, timeout=20.0):
        async with asyncio.timeout(timeout):
            while not cond():
                self.changed.clear()
                await self.changed.wait()


def tick(sym, close, date, **over):
    return {"symbol": sym, "price": close, "ts": f"{date}T20:00:00+00:00"} | over


async def test_plain_feed_survives_malformed_messages_drops_and_stalls():
    iwm, spy = real_closes("IWM", 6), real_closes("SPY", 6)
    d0 = iwm[0][0]
    # Connection 1: good ticks, then every kind of bad input, then a drop.
    conn1 = [
        orjson.dumps(tick("IWM", iwm[0][1], iwm[0][0])).decode(),
        orjson.dumps([tick("IWM", iwm[1][1], iwm[1][0]), tick("SPY", spy[1][1], spy[1][0])]).decode(),
        "{not json",
        b"\xff\xfe binary junk",
        "42",
        "[]",
        orjson.dumps({"symbol": "IWM", "ts": 1}).decode(),
        orjson.dumps([tick("SPY", spy[2][1], spy[2][0]), tick("SPY", "cheap", d0)]).decode(),
        orjson.dumps(tick("IWM", -3.0, d0)).decode(),
        orjson.dumps(tick("IWM", 1.0, d0, ts="yesterday")).decode(),
        orjson.dumps(tick("ZZZZ", 10.0, d0)).decode(),
    ]
    conn2 = [orjson.dumps(tick("IWM", iwm[3][1], iwm[3][0])).decode()]
    conn3 = [orjson.dumps([tick("IWM", iwm[5][1], iwm[5][0]), tick("SPY", spy[5][1], spy[5][0])]).decode()]
    expected_batches = [
        [("IWM", iwm[0][1])], [("IWM", iwm[1][1]), ("SPY", spy[1][1])], [("SPY", spy[2][1])],
        [("IWM", iwm[3][1])],
        [("IWM", iwm[5][1]), ("SPY", spy[5][1])],
    ]
    expected_reasons = ["not_json", "not_json", "not_object", "empty_batch", "missing_field", "bad_price",
                        "bad_price", "bad_ts", "unknown_symbol"]

    async def script1(ws):
        await send_all(ws, conn1)
        await drop(ws)

    async def script2(ws):
        await send_all(ws, conn2)
        await stall(ws)

    async def script3(ws):
        await send_all(ws, conn3)
        # The client answers our keepalive pings (the library does it; ping_interval stays on).
        await asyncio.wait_for(await ws.ping(), 10)
        await ws.wait_closed()

    sink = Sink()
    async with ScriptedFeed([script1, script2, script3]) as feed:
        url = f"ws://user:s3cret@127.0.0.1:{feed.port}/stocks?apiKey=s3cret"
        client = FeedClient(url, fmt="plain", symbols=["IWM", "SPY"], publish_ticks=sink.ticks,
                            publish_dlq=sink.dead, subscribe=SUBSCRIBE, silence_s=1.0, backoff=(0.01, 0.05),
                            on_status=sink.status, known_symbols={"IWM", "SPY"})
        task = asyncio.create_task(client.run())
        try:
            await sink.until(lambda: len(sink.batches) >= len(expected_batches) and len(sink.dlq) >= len(expected_reasons))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # Every valid tick reached publish_ticks, one batch per message, in order.
    assert [[(t.symbol, t.price) for t in b] for b in sink.batches] == expected_batches
    assert sink.batches[0][0].ts_ms == int(datetime.fromisoformat(f"{iwm[0][0]}T20:00:00+00:00").timestamp() * 1000)
    # Every malformed item reached the dlq with its reason, the input, and a source without secrets.
    assert [r["reason"] for r in sink.dlq] == expected_reasons
    assert sink.dlq[0]["input"] == "{not json"
    assert sink.dlq[5]["input"] == tick("SPY", "cheap", d0)
    assert all(r["source"] == f"feed:ws://127.0.0.1:{feed.port}/stocks" for r in sink.dlq)
    assert b"s3cret" not in orjson.dumps(sink.dlq) + orjson.dumps(sink.statuses)
    # Three connections at least (drop, stall; a slow machine may see the last one go quiet too),
    # each subscribed again with the same message.
    assert feed.connections >= 3 and client.connections == feed.connections
    assert [orjson.loads(m) for m in feed.subscribes] == [{"action": "subscribe", "symbols": ["IWM", "SPY"]}] * feed.connections
    assert client.reconnects >= 2
    states = [s["state"] for s in sink.statuses]
    assert states.count("connected") == feed.connections
    reasons = [s["reason"] for s in sink.statuses if s["state"] == "reconnecting"]
    assert reasons[0].startswith("closed") and reasons[1].startswith("silent")
    # Each outage is reported as a gap status before the next prices, never as made-up prices.
    gaps = [s for s in sink.statuses if s["state"] == "gap"]
    assert len(gaps) == 2 == client.gaps
    assert all(g["reason"] == "connection lost" and g["from_ms"] <= g["to_ms"] for g in gaps)
    assert (client.messages, client.ticks, client.rejected) == (len(conn1) + len(conn2) + len(conn3), 7, 9)


async def test_polygon_feed_ignores_status_events_and_dead_letters_bad_trades():
    [(d, p)] = real_closes("IWM", 1)
    t_ms = 1766000000000
    msgs = [
        orjson.dumps([{"ev": "status", "status": "connected", "message": "Connected Successfully"}]).decode(),
        orjson.dumps([{"ev": "T", "sym": "IWM", "p": p, "t": t_ms, "s": 100},
                      {"ev": "T", "sym": "IWM", "t": t_ms},
                      {"ev": "T", "sym": "IWM", "p": 0, "t": t_ms},
                      {"ev": "Q", "sym": "IWM", "bp": p}]).decode(),
        orjson.dumps({"ev": "status", "status": "success", "message": "subscribed to: T.IWM"}).decode(),
        orjson.dumps([{"ev": "T", "sym": "IWM", "p": p * 1.01, "t": t_ms + 1000}]).decode(),
    ]

    async def script(ws):
        await send_all(ws, msgs)
        await ws.wait_closed()

    sink = Sink()
    async with ScriptedFeed([script]) as feed:
        client = FeedClient(f"ws://127.0.0.1:{feed.port}/stocks", fmt="polygon", symbols=["T.IWM"],
                            publish_ticks=sink.ticks, publish_dlq=sink.dead,
                            subscribe='{"action":"subscribe","params":"{symbols}"}', silence_s=30, backoff=(0.01, 0.05))
        task = asyncio.create_task(client.run())
        try:
            await sink.until(lambda: len(sink.batches) >= 2 and len(sink.dlq) >= 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert feed.subscribes == ['{"action":"subscribe","params":"T.IWM"}']
    assert sink.batches == [[Tick("IWM", p, t_ms)], [Tick("IWM", p * 1.01, t_ms + 1000)]]
    assert [(r["reason"], r["input"]) for r in sink.dlq] == [
        ("missing_field", {"ev": "T", "sym": "IWM", "t": t_ms}),
        ("bad_price", {"ev": "T", "sym": "IWM", "p": 0, "t": t_ms}),  # the vendor's object, not our mapping
    ]
    assert client.messages == 4 and client.reconnects == 0


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("the wss test makes a throwaway certificate with the openssl CLI: apt-get install -y openssl")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


async def test_wss_feed_with_verified_certificate(tmp_path):
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))  # verifies the chain and the host (IP SAN)
    [(d, p)] = real_closes("SPY", 1)

    async def script(ws):
        await ws.send(orjson.dumps(tick("SPY", p, d)).decode())
        await ws.wait_closed()

    sink = Sink()
    async with ScriptedFeed([script], ssl=server_ctx) as feed:
        client = FeedClient(f"wss://127.0.0.1:{feed.port}/", fmt="plain", symbols=["SPY"], publish_ticks=sink.ticks,
                            publish_dlq=sink.dead, subscribe={"subscribe": "{symbols}"}, ssl=client_ctx,
                            backoff=(0.01, 0.05))
        task = asyncio.create_task(client.run())
        try:
            await sink.until(lambda: sink.batches)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [(t.symbol, t.price) for t in sink.batches[0]] == [("SPY", p)]
    assert orjson.loads(feed.subscribes[0]) == {"subscribe": ["SPY"]}


async def test_publish_failure_ends_run_instead_of_losing_ticks():
    async def script(ws):
        await ws.send(orjson.dumps({"symbol": "IWM", "price": 1.0, "ts": 1766000000000}).decode())
        await ws.wait_closed()

    async def broken(_batch):
        raise ConnectionError("kafka is down")

    sink = Sink()
    async with ScriptedFeed([script], subscribed=False) as feed:
        client = FeedClient(f"ws://127.0.0.1:{feed.port}/", fmt="plain", symbols=["IWM"], publish_ticks=broken,
                            publish_dlq=sink.dead, backoff=(0.01, 0.05))
        with pytest.raises(ConnectionError, match="kafka is down"):
            await asyncio.wait_for(client.run(), 20)
    assert client.ticks == 0 and client.reconnects == 0


class FakeClock:
    def __init__(self):
        self.t = 1_766_000_000.0

    def __call__(self):
        return self.t


async def test_quiet_feed_is_reported_as_a_gap_not_as_prices():
    clock = FakeClock()
    go = asyncio.Event()
    [(d1, p1), (d2, p2)] = real_closes("IWM", 2)

    async def script(ws):
        await ws.send(orjson.dumps(tick("IWM", p1, d1)).decode())
        await go.wait()
        await ws.send(orjson.dumps([{"ev": "heartbeat"}]).decode())  # a message, but no price
        await ws.send(orjson.dumps(tick("IWM", p2, d2)).decode())
        await ws.wait_closed()

    sink = Sink()
    async with ScriptedFeed([script], subscribed=False) as feed:
        client = FeedClient(f"ws://127.0.0.1:{feed.port}/", fmt="plain", symbols=["IWM"], publish_ticks=sink.ticks,
                            publish_dlq=sink.dead, silence_s=30, gap_s=10, on_status=sink.status, clock=clock)
        task = asyncio.create_task(client.run())
        try:
            await sink.until(lambda: len(sink.batches) == 1)
            clock.t += 60  # a minute without prices on a live connection
            go.set()
            await sink.until(lambda: len(sink.batches) == 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    [gap] = [s for s in sink.statuses if s["state"] == "gap"]
    assert gap["reason"] == "no ticks" and gap["seconds"] == 60 and gap["to_ms"] - gap["from_ms"] == 60_000
    assert gap["last_tick_ts_ms"] == sink.batches[0][0].ts_ms
    assert [t.price for b in sink.batches for t in b] == [p1, p2]  # nothing filled in
    assert [r["reason"] for r in sink.dlq] == ["missing_field"]  # plain format: the heartbeat is no tick


async def test_unreachable_feed_backs_off_exponentially_then_connects():
    import socket as _socket
    probe = _socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens here until we start the server below
    sink = Sink()
    client = FeedClient(f"ws://127.0.0.1:{port}/", fmt="plain", symbols=["IWM"], publish_ticks=sink.ticks,
                        publish_dlq=sink.dead, subscribe={"subscribe": "{symbols}"}, backoff=(0.01, 0.04),
                        on_status=sink.status)
    task = asyncio.create_task(client.run())
    try:
        await sink.until(lambda: sum(s["state"] == "reconnecting" for s in sink.statuses) >= 5)

        async def script(ws):
            await ws.send(orjson.dumps({"symbol": "IWM", "price": 200.0, "ts": 1766000000000}).decode())
            await ws.wait_closed()

        feed = ScriptedFeed([script])
        server = await serve(feed.handler, "127.0.0.1", port)
        try:
            await sink.until(lambda: sink.batches)
        finally:
            server.close()
            await server.wait_closed()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    retries = [s for s in sink.statuses if s["state"] == "reconnecting"]
    assert all(s["reason"].startswith("connect failed") for s in retries[:5])
    # Delay k is jittered within [0.5, 1] x min(max, initial * 2^k).
    for k, s in enumerate(retries[:5]):
        cap = min(0.04, 0.01 * 2 ** k)
        assert 0.5 * cap - 1e-3 <= s["delay_s"] <= cap + 1e-3, (k, s)
    assert feed.subscribes == ['{"subscribe":["IWM"]}']
