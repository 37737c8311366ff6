"""Events read twice after a broker outage (docs/faults.md, finding 6): a documented limit of the
embedded broker, pinned here.

The situation: the broker goes down while the engine's produce request for an event is in flight,
after the broker has appended the batch and before its answer reached the producer. The producer
retries the batch once the broker is back. Kafka recognises that retry by the batch's producer id,
epoch and sequence number (the engine's producer is idempotent, streams/faust_consumer.py), does
not append it again and answers with the first append's offsets: one record. The embedded broker
(librdkafka's mock cluster, streams/broker.py) checks sequence numbers only for transactional
producers, so it appends the batch a second time, right after the first. These tests pin both
halves of that: the engine emits the event once, and the two copies on the topic are one producer
batch stored twice (same record time, adjacent offsets), which the chaos verdict counts as a
broker retry copy (ratiowatch/chaos/repeats.py), not as a duplicated event. Should the mock start
checking sequence numbers, there is one copy and these tests fail: then the limit is gone from
docs/faults.md and streams/broker.py too.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaProducer

from ratiowatch.chaos.repeats import Placed, classify_repeats
from ratiowatch.config import load_config
from ratiowatch.roles.engine import EngineRole
from ratiowatch.streams.topics import EVENTS, TICKS
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from tansu_peer import read_to_highwater  # a helper module in tests/, on sys.path

pytestmark = pytest.mark.broker
FIXTURES = Path(__file__).parent / "fixtures"
PARTITIONS = 4  # fixtures/levels.yaml's settings.partitions
RTT_MS = 1500   # how long the broker holds each answer: the window in which it goes down


async def _until(cond, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:g}s")
        await asyncio.sleep(0.01)


def _in_flight(producer, topic: str) -> bool:
    """Whether aiokafka has sent a batch for ``topic`` and awaits the broker's answer."""
    return any(b.tp.topic == topic for b in producer._message_accumulator._pending_batches)


async def _lose_the_answer(broker: EmbeddedBroker, producer, topic: str) -> None:
    """Once a produce request for ``topic`` is in flight (the broker holds its answer RTT_MS), take
    the broker down, which drops the answer with the connection, and bring it back."""
    await _until(lambda: _in_flight(producer, topic), what=f"a produce request for {topic} in flight")
    # Nothing can observe the append while the broker holds every answer RTT_MS, so its thread is
    # given a moment to read the request; had it not, there would be one copy and the test fails.
    await asyncio.sleep(0.2)
    broker.set_broker_down(1)
    broker.set_rtt(1, 0)
    await asyncio.sleep(1.0)
    broker.set_broker_up(1)


def _one_batch_twice(copies: list) -> bool:
    """Two records with the same value, partition and producer timestamp at adjacent offsets: one
    batch appended twice (a re-emission would be a new batch, with a later timestamp)."""
    a, b = copies
    return (a.partition, a.timestamp, a.value) == (b.partition, b.timestamp, b.value) and b.offset == a.offset + 1


async def test_a_retried_produce_is_stored_twice_by_the_embedded_broker_even_from_an_idempotent_producer():
    broker = EmbeddedBroker()
    broker.create_topic("t", 1)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True,
                                client_id="test-idempotent")
    try:
        await producer.start()
        await producer.send_and_wait("t", b"before", partition=0)
        assert producer._txn_manager.producer_id >= 0  # the broker granted a producer id
        broker.set_rtt(1, RTT_MS)
        sent = await producer.send("t", b"once", partition=0)
        await _lose_the_answer(broker, producer, "t")
        await asyncio.wait_for(sent, 30)
        await producer.stop()
        records = await read_to_highwater(broker.bootstrap, "t")
    finally:
        await producer.stop()
        broker.stop()
    copies = [r for r in records if r.value == b"once"]
    assert len(copies) == 2 and _one_batch_twice(copies), [(r.offset, r.timestamp, r.value) for r in records]


async def test_limit_of_the_embedded_broker_the_engine_emits_once_and_the_retried_batch_is_stored_twice(tmp_path):
    broker = EmbeddedBroker()
    ensure_topics(broker, PARTITIONS)
    rt = EngineRole(load_config(FIXTURES / "levels.yaml"), broker_url=broker.url, datadir=str(tmp_path))
    await rt.start()
    try:
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=(3, 0))
        t0 = 1_767_000_000_000
        for i, price in enumerate([99.0, 99.5]):  # arms spy-level below 100
            p.send(TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": price, "ts": t0 + i * 1000}))
        p.flush()
        await _until(lambda: rt.pipeline.counters["shard_ticks_applied"] >= 2 and rt.pipeline.idle(),
                     what="the arming ticks applied")
        broker.set_rtt(1, RTT_MS)
        p.send(TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": 101.0, "ts": t0 + 2000}))
        p.flush()
        p.close()
        await _lose_the_answer(broker, rt.app.producer._producer, EVENTS)
        await _until(lambda: rt.pipeline.counters["events"] >= 1 and rt.pipeline.idle(), 60, "the event emitted")
        emitted = rt.pipeline.counters["events"]
        not_repeated = rt.pipeline.counters["events_not_repeated"]
    finally:
        await rt.stop()
    on_topic = await read_to_highwater(broker.bootstrap, EVENTS)
    broker.stop()
    # The engine applied the crossing tick once and sent its event once: no re-application.
    assert (emitted, not_repeated) == (1, 0)
    ids = [orjson.loads(r.value)["event_id"] for r in on_topic]
    assert len(set(ids)) == 1
    # The embedded broker holds that one send twice: the producer's retry of a batch it had
    # appended (see the module docstring). Kafka drops the retry by its producer id and sequence
    # number and holds one record.
    assert len(on_topic) == 2 and _one_batch_twice(on_topic), [(r.partition, r.offset, r.timestamp) for r in on_topic]
    # The chaos verdict sees the same: a broker retry copy, not a duplicated event.
    verdict = classify_repeats([Placed(r.partition, r.offset, r.timestamp, r.value) for r in on_topic], ids)
    assert (verdict.duplicated, verdict.broker_copies) == ({}, {ids[0]: 1})
