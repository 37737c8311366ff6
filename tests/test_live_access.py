"""Access to the live server: token on /, /status and /ws, cross-origin refusal, oversized and
too-frequent client messages. Real HTTP and websocket connections on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.client
from datetime import date
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from ratiowatch.agents.engine import ShardEngine
from ratiowatch.config import load_config
from ratiowatch.streams.history import daily_ticks, load_history
from ratiowatch.streams.live import LiveHub

HISTORY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "history"
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def statuses():
    cfg = load_config()
    eng = ShardEngine(cfg.scenarios, cfg.settings)
    states: dict = {}
    for _, ticks in daily_ticks(load_history(HISTORY, cfg.symbols), start=date(2000, 1, 1), end=date(2001, 12, 31)):
        eng.apply(states, ticks[0].ts_ms, ticks)
    return [eng.engines[sid].status(st) for sid, st in states.items()]


@pytest.fixture
async def live(statuses):
    servers = []

    async def start(token=None, **kw):
        hub = LiveHub(**kw)
        for s in statuses:
            hub.publish_status(s)
        server = await hub.serve(port=0, token=token)
        servers.append(server)
        return hub, server.sockets[0].getsockname()[1], server

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


async def aget(port, path, headers=None):
    return await asyncio.to_thread(get, port, path, headers)


async def test_token_is_required_on_page_status_and_ws_and_rejections_are_counted(live, statuses):
    hub, port, server = await live(token=TOKEN)
    assert server.sockets[0].getsockname()[0] == "127.0.0.1"
    rejected = 0
    for path, headers in [("/", None), ("/?token=wrong", None), ("/status", None),
                          ("/status", {"Authorization": "Bearer wrong"}), ("/status?token=", None)]:
        code, h, _ = await aget(port, path, headers)
        assert code == 401, path
        assert h["www-authenticate"].startswith("Bearer")
        rejected += 1
    code, h, body = await aget(port, f"/?token={TOKEN}")
    assert code == 200 and h["content-type"].startswith("text/html") and b"card-template" in body
    assert "default-src 'none'" in h["content-security-policy"]
    code, h, body = await aget(port, "/status", {"Authorization": f"Bearer {TOKEN}"})
    assert code == 200 and h["content-type"] == "application/json"
    assert {s["scenario"]: s["ts_ms"] for s in orjson.loads(body)["scenarios"]} == {s["scenario"]: s["ts_ms"] for s in statuses}
    assert (await aget(port, "/status.js"))[0] == 200  # code, not data: public
    assert (await aget(port, "/nope"))[0] == 404

    base = f"ws://127.0.0.1:{port}/ws"
    for url in (base, f"{base}?token=wrong"):
        async with connect(url) as ws:
            with pytest.raises(ConnectionClosedError) as e:
                await ws.recv()
            assert e.value.rcvd.code == 1008 and e.value.rcvd.reason == "unauthorized"
            rejected += 1
    async with connect(base, additional_headers={"Authorization": "Bearer nope"}) as ws:
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
        rejected += 1
    for kw in ({"uri": f"{base}?token={TOKEN}"}, {"uri": base, "additional_headers": {"Authorization": f"Bearer {TOKEN}"}}):
        async with connect(**kw) as ws:
            m = orjson.loads(await ws.recv())
            assert m["type"] == "status"
    assert hub.stats["unauthorized"] == rejected


async def test_no_token_configured_means_open_on_localhost(live):
    hub, port, _ = await live()
    assert (await aget(port, "/"))[0] == 200
    async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
        assert orjson.loads(await ws.recv())["type"] == "status"
    assert hub.stats["unauthorized"] == 0


async def test_pages_of_other_origins_are_refused(live):
    hub, port, _ = await live()
    with pytest.raises(InvalidStatus) as e:
        async with connect(f"ws://127.0.0.1:{port}/ws", origin="http://evil.example"):
            pass
    assert e.value.response.status_code == 403
    async with connect(f"ws://127.0.0.1:{port}/ws", origin=f"http://127.0.0.1:{port}") as ws:
        assert orjson.loads(await ws.recv())["type"] == "status"
    assert hub.stats["bad_origin"] == 1


async def test_oversized_client_message_is_rejected_and_counted(live):
    hub, port, _ = await live()
    async with connect(f"ws://127.0.0.1:{port}/ws") as bystander, connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send(orjson.dumps({"subscribe": ["x" * 5000]}).decode())
        with pytest.raises(ConnectionClosedError) as e:
            while True:
                await ws.recv()
        assert e.value.rcvd.code == 1009  # message too big
        assert orjson.loads(await bystander.recv())["type"] == "status"  # others carry on
    assert hub.stats["oversized"] == 1


async def test_client_messages_are_rate_limited(live):
    frozen = [100.0]
    hub, port, _ = await live(now=lambda: frozen[0], client_rate=(1.0, 3))
    async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
        for _ in range(5):
            await ws.send('{"subscribe": "*"}')
        replies = []
        async with asyncio.timeout(10):
            while sum(m["type"] in ("subscribed", "error") for m in replies) < 4:
                replies.append(orjson.loads(await ws.recv()))
        kinds = [m["type"] for m in replies if m["type"] != "status"]
        # 3 within the burst, then one notice for the 2 over the limit (the clock does not move).
        assert kinds == ["subscribed", "subscribed", "subscribed", "error"]
        assert "rate limit" in [m for m in replies if m["type"] == "error"][0]["error"]
        async with asyncio.timeout(10):  # the fifth message gets no reply: wait for it to be counted
            while hub.stats["rate_limited"] < 2:
                await asyncio.sleep(0.01)
    assert hub.stats["rate_limited"] == 2
