"""Offsets are committed while the worker runs, not only at rebalances and shutdown: under steady
input the group's committed offsets keep moving, and after one tick and silence they reach the end.
(A killed worker re-reads everything since its last commit, and consumer lag is what operators
watch: a frozen commit would make both grow without bound.)"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ratiowatch.config import load_config
from ratiowatch.roles.engine import EngineRole
from ratiowatch.streams.topics import APP_ID, SHARD_TICKS, TICKS
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker

pytestmark = pytest.mark.broker


def _offsets(bootstrap: str, partitions: int) -> tuple[dict, dict]:
    """(committed, end) of the engine group on ``ticks`` and the shard topic, per partition."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, api_version=(3, 0), group_id=APP_ID, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in (TICKS, SHARD_TICKS) for p in range(partitions)]
        return {tp: c.committed(tp) or 0 for tp in tps}, c.end_offsets(tps)
    finally:
        c.close()


async def test_committed_offsets_follow_steady_input_and_reach_the_end_after_silence(tmp_path):
    cfg = load_config()
    n = cfg.settings.partitions
    loop = asyncio.get_running_loop()
    with EmbeddedBroker() as broker:
        ensure_topics(broker, n)
        rt = EngineRole(cfg, broker_url=broker.url, datadir=str(tmp_path))
        await rt.start()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=(3, 0), linger_ms=0)
        try:
            await rt.wait_assigned()
            t0 = 1_780_000_000_000
            samples = []
            # 20 s of one SPY tick every 100 ms (keyed by symbol: one ticks partition), sampling the
            # committed offset of that partition every 2 s.
            for i in range(200):
                producer.send(TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": 500 + i % 7,
                                                                     "ts_ms": t0 + i * 1000}))
                producer.flush()
                if i % 20 == 19:
                    committed, end = await loop.run_in_executor(None, _offsets, broker.bootstrap, n)
                    tp = max((tp for tp in end if tp.topic == TICKS), key=lambda tp: end[tp])
                    samples.append((committed[tp], end[tp]))
                await asyncio.sleep(0.1)  # the input's pace, not a wait for a result
            # Every 2 s window after the first saw the commit move on: it never froze under input.
            moved = [b[0] > a[0] for a, b in zip(samples[1:], samples[2:])]
            assert all(moved), samples
            # One more tick, then silence: the commit catches up with the end of every partition.
            producer.send(TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": 505, "ts_ms": t0 + 300_000}))
            producer.flush()
            deadline = time.monotonic() + 30
            while True:
                committed, end = await loop.run_in_executor(None, _offsets, broker.bootstrap, n)
                behind = {f"{tp.topic}/{tp.partition}": end[tp] - committed[tp] for tp in end if committed[tp] < end[tp]}
                if not behind:
                    break
                assert time.monotonic() < deadline, f"not committed to the end after 30 s of silence: {behind}"
                await asyncio.sleep(0.5)
        finally:
            producer.close()
            await rt.stop()
