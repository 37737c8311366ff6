"""The live stream from a running engine, through the web role reading its topics: a websocket client receives status updates and the
crossing event, over TCP, from ticks sent with kafka-python through the embedded broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer
from websockets.asyncio.client import connect

from ratiowatch.config import load_config
from ratiowatch.roles.engine import EngineRole
from ratiowatch.roles.web import WebRole
from ratiowatch.streams.topics import TICKS
from ratiowatch.streams.live import LiveHub

pytestmark = pytest.mark.broker
FIXTURES = Path(__file__).parent / "fixtures"


async def _next(ws, pred, timeout=30.0):
    async def loop():
        while True:
            msg = orjson.loads(await ws.recv())
            if pred(msg):
                return msg
    return await asyncio.wait_for(loop(), timeout)


async def test_a_websocket_client_gets_status_and_the_crossing_from_a_running_worker():
    cfg = load_config(FIXTURES / "levels.yaml")
    hub = LiveHub(scenarios=[s.id for s in cfg.scenarios], min_interval_ms=50)
    rt = EngineRole(cfg)
    await rt.start()
    # The web role reads scenario-status and events from the broker, as in a cluster.
    web = WebRole(hub, bootstrap=rt.bootstrap)
    await web.start()
    server = await hub.serve("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws", origin=f"http://127.0.0.1:{port}") as ws:
            await ws.send(orjson.dumps({"subscribe": ["spy-level"]}).decode())
            p = KafkaProducer(bootstrap_servers=rt.bootstrap, api_version=(3, 0))
            t0 = 1_767_000_000_000
            p.send(TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": 99.0, "ts_ms": t0}))
            p.flush()
            armed = await _next(ws, lambda m: m["type"] == "status" and m["trigger"]["state"] == "armed")
            p.send(TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": 101.5, "ts_ms": t0 + 1000}))
            p.flush()
            event = await _next(ws, lambda m: m["type"] == "event")
            fired = await _next(ws, lambda m: m["type"] == "status" and m["trigger"]["state"] == "fired")
    finally:
        server.close()
        hub.close()
        await web.stop()
        await rt.stop()
    assert armed["scenario"] == "spy-level" and armed["trigger"]["value"] == 99.0
    assert armed["trigger"]["distance"] == pytest.approx(1.0)
    assert (event["scenario"], event["rule"], event["kind"], event["value"]) == ("spy-level", "trigger", "fired", 101.5)
    assert fired["last_event"]["event_id"] == event["event_id"]
