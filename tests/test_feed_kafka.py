"""FeedClient publishing into the real topics: websocket server -> FeedClient -> aiokafka ->
embedded Kafka-protocol broker -> read back with kafka-python."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition
from websockets.asyncio.server import serve

from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.feed import FeedClient, kafka_sinks
from ratiowatch.streams.ticks import parse_ticks
from ratiowatch.streams.topics import TICKS, TICKS_DLQ

pytestmark = pytest.mark.broker

HISTORY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "history"


def read_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list:
    """Every record of ``topic`` from the beginning (manual assignment: no group join to wait for)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=10_000)
    try:
        c.assign([TopicPartition(topic, p) for p in range(partitions)])
        c.seek_to_beginning()
        out = []
        for rec in c:
            out.append(rec)
            if len(out) >= expected:
                break
        return out
    finally:
        c.close()


async def test_feed_publishes_batches_to_ticks_and_rejects_to_dlq():
    with open(HISTORY / "IWM.csv", newline="") as f:
        rows = list(csv.DictReader(f))[-3:]
    good = [{"symbol": "IWM", "price": float(r["close"]), "ts": f"{r['date']}T20:00:00Z"} for r in rows]
    messages = [orjson.dumps(good[:2]).decode(), "not json at all",
                orjson.dumps([good[2], {"symbol": "IWM", "price": "n/a", "ts": 1}]).decode()]

    async def vendor(ws):
        await ws.recv()  # the subscribe message
        for m in messages:
            await ws.send(m)
        await ws.wait_closed()

    broker = EmbeddedBroker()
    try:
        broker.create_topic(TICKS, 4)
        broker.create_topic(TICKS_DLQ, 1)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            async with serve(vendor, "127.0.0.1", 0) as server:
                port = server.sockets[0].getsockname()[1]
                url = f"ws://127.0.0.1:{port}/trades"
                pub_ticks, pub_dlq = kafka_sinks(producer, key="feed:" + url)
                client = FeedClient(url, fmt="plain", symbols=["IWM"], publish_ticks=pub_ticks, publish_dlq=pub_dlq,
                                    subscribe={"subscribe": "{symbols}"}, backoff=(0.01, 0.05))
                task = asyncio.create_task(client.run())
                try:
                    async with asyncio.timeout(30):
                        while client.ticks < 3 or client.rejected < 2:
                            await asyncio.sleep(0.02)
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
        finally:
            await producer.stop()

        tick_recs = await asyncio.to_thread(read_all, broker.bootstrap, TICKS, 4, 2)
        dlq_recs = await asyncio.to_thread(read_all, broker.bootstrap, TICKS_DLQ, 1, 2)
    finally:
        broker.stop()

    # One record per message (a batch), keyed by the source, parseable by the ticks topic's own parser.
    assert len(tick_recs) == 2 and {r.key for r in tick_recs} == {f"feed:{url}".encode()}
    batches = sorted((parse_ticks(r.value) for r in tick_recs), key=lambda gb: len(gb[0]), reverse=True)
    assert all(not bad for _, bad in batches)
    got = [(t.symbol, t.price) for g, _ in batches for t in g]
    assert sorted(got) == sorted(("IWM", g["price"]) for g in good)
    dlq = [orjson.loads(r.value) for r in dlq_recs]
    assert [d["reason"] for d in dlq] == ["not_json", "bad_price"]
    assert dlq[0]["input"] == "not json at all" and dlq[1]["input"] == {"symbol": "IWM", "price": "n/a", "ts": 1}
    assert all(d["source"] == f"feed:{url}" for d in dlq)
