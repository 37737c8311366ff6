"""The source role into real topics: a local Alpaca-shaped websocket and a FRED-shaped HTTP
server -> run_sources -> KafkaTickSink (aiokafka, built by streams.clients) -> the embedded
broker -> read back. Every valid message reaches `ticks`, every bad one `ticks.dlq` with a reason."""

from __future__ import annotations

import asyncio
from datetime import date

import orjson
import pytest
from websockets.asyncio.server import serve

from ratiowatch.config import load_config
from ratiowatch.roles.source import run_sources
from ratiowatch.roles.source_options import FeedSpec, SourceOptions
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.clients import aio_consumer, aio_producer
from ratiowatch.streams.sources.base import FeedFatalError
from ratiowatch.streams.sources.poller import Series
from ratiowatch.streams.sources.sinks import KafkaTickSink
from ratiowatch.streams.ticks import parse_ticks
from ratiowatch.streams.topics import TICKS, TICKS_DLQ
from source_vendors import VendorHTTP
from test_source_feeds import RecordingSink

pytestmark = pytest.mark.broker
KEY, SECRET = "AKKAFKATEST", "kafka-secret-1"


async def read(bootstrap: str, topic: str, partitions: int, until) -> list:
    """Records of ``topic`` from the beginning until ``until(records)`` holds."""
    from aiokafka import TopicPartition

    c = aio_consumer(bootstrap, client_id="test-readback")
    await c.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        out: list = []
        async with asyncio.timeout(60):
            while not until(out):
                for recs in (await c.getmany(timeout_ms=500)).values():
                    out.extend(recs)
        return out
    finally:
        await c.stop()


async def alpaca(ws, state):
    state["connections"] += 1
    await ws.send(orjson.dumps([{"T": "success", "msg": "connected"}]))
    auth = orjson.loads(await ws.recv())
    if auth.get("secret") != SECRET:
        await ws.send(orjson.dumps([{"T": "error", "code": 402, "msg": "auth failed"}]))
        await ws.wait_closed()
        return
    await ws.send(orjson.dumps([{"T": "success", "msg": "authenticated"}]))
    sub = orjson.loads(await ws.recv())
    await ws.send(orjson.dumps([{"T": "subscription", "trades": sub["trades"], "quotes": [], "bars": []}]))
    await ws.send(orjson.dumps([{"T": "t", "S": "IWM", "p": 210.5, "t": "2026-01-05T15:00:00Z", "s": 1, "i": 1, "x": "V"},
                                {"T": "t", "S": "SPY", "p": 590.0, "t": "2026-01-05T15:00:00Z", "s": 1, "i": 2, "x": "V"},
                                {"T": "t", "S": "SPY", "p": 0, "t": "2026-01-05T15:00:01Z"},
                                {"T": "q", "S": "SPY", "bp": 1, "ap": 2, "t": "2026-01-05T15:00:00Z"}]))
    await ws.wait_closed()


async def test_feed_and_poll_reach_ticks_and_bad_input_reaches_the_dlq():
    config = load_config(None)
    state = {"connections": 0}
    with EmbeddedBroker() as broker, VendorHTTP() as fred:
        broker.create_topic(TICKS, 8)
        broker.create_topic(TICKS_DLQ, 1)
        fred.series["DGS10"] = [("2026-01-02", "4.19"), ("2026-01-05", "bad")]
        fred.series["DGS2"] = [("2026-01-02", "3.47")]
        async with serve(lambda ws: alpaca(ws, state), "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v2/iex"
            spec = FeedSpec("alpaca", url, ("IWM", "SPY"), secrets=(KEY, SECRET))
            opts = SourceOptions(feeds=(spec,), polls=(Series("fred", "DGS10", "DGS10"), Series("fred", "DGS2", "DGS2")),
                                 fred_url=fred.url, poll_since=date(2026, 1, 1))
            producer = aio_producer(broker.bootstrap, client_id="ratiowatch-source")
            await producer.start()
            try:
                sink, stop = KafkaTickSink(producer), asyncio.Event()
                task = asyncio.create_task(run_sources(opts, config, sink, stop))
                ticks = await read(broker.bootstrap, TICKS, 8, lambda rs: sum(len(parse_ticks(r.value)[0]) for r in rs) >= 4)
                dlq = await read(broker.bootstrap, TICKS_DLQ, 1, lambda rs: len(rs) >= 2)
                stop.set()
                await asyncio.wait_for(task, 30)   # returns cleanly once stopped
            finally:
                await producer.stop()
    got = sorted((r.key, t.symbol, t.price) for r in ticks for t in parse_ticks(r.value)[0])
    assert got == sorted([(spec.label.encode(), "IWM", 210.5), (spec.label.encode(), "SPY", 590.0),
                          (b"DGS10", "DGS10", 4.19), (b"DGS2", "DGS2", 3.47)])
    reasons = sorted((r.key, orjson.loads(r.value)["reason"]) for r in dlq)
    assert reasons == sorted([(spec.label.encode(), "bad_price"), (b"DGS10", "bad_row")])
    assert sink.counters == {"ticks": 4, "batches": 3, "dead_lettered": 2}
    assert SECRET not in repr(opts)


async def test_a_feed_that_fails_stops_every_source_and_is_raised():
    config = load_config(None)
    state = {"connections": 0}
    with VendorHTTP() as fred:
        fred.series["DGS10"] = [("2026-01-02", "4.19")]
        async with serve(lambda ws: alpaca(ws, state), "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v2/iex"
            opts = SourceOptions(feeds=(FeedSpec("alpaca", url, ("IWM",), secrets=(KEY, "nope")),),
                                 polls=(Series("fred", "DGS10", "DGS10"),), fred_url=fred.url, poll_interval_s=0.01)
            sink = RecordingSink()
            with pytest.raises(FeedFatalError, match="auth failed"):
                await asyncio.wait_for(run_sources(opts, config, sink, asyncio.Event()), 30)
    assert state["connections"] == 1
