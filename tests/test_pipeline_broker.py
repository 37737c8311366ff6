"""The streaming path over TCP on the embedded broker: kafka-python in, faust agents, kafka-python out."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from ratiowatch.config import load_config
from ratiowatch.roles.engine import EngineRole
from ratiowatch.streams import topics as T
from ratiowatch.streams.readback import read_topic

pytestmark = pytest.mark.broker
FIXTURES = Path(__file__).parent / "fixtures"


def _producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, api_version=(3, 0))


async def _until(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def _read(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict]]:
    loop = asyncio.get_running_loop()
    recs = await loop.run_in_executor(None, lambda: list(read_topic(bootstrap, topic)))
    return [(k, orjson.loads(v)) for k, v, _, _ in recs]


async def test_tick_from_kafka_python_crosses_and_event_is_read_back_plainly():
    cfg = load_config(FIXTURES / "levels.yaml")
    rt = EngineRole(cfg)
    await rt.start()
    try:
        p = _producer(rt.bootstrap)
        t0 = 1_767_000_000_000
        for i, price in enumerate([99.0, 99.5, 101.0]):  # arms below 100, fires at 101
            p.send(T.TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": price, "ts": t0 + i * 1000}))
        p.flush()
        await _until(lambda: rt.pipeline.counters["events"] >= 1 and rt.pipeline.idle())
        events = [e for _, e in await _read(rt.bootstrap, T.EVENTS)]
        # The worker writes as an idempotent producer: the broker gave it a producer id, so a
        # produce request retried after a dropped connection is not written twice.
        txn = rt.app.producer._producer._txn_manager
        assert txn is not None and txn.producer_id >= 0
    finally:
        await rt.stop()
    assert [(e["scenario"], e["rule"], e["kind"], e["direction"], e["ts_ms"], e["value"]) for e in events] == [
        ("spy-level", "trigger", "fired", "up", t0 + 2000, 101.0)]
    assert events[0]["at"] == "2025-12-29T09:20:02Z"


async def test_malformed_ticks_go_to_the_dlq_with_reasons_and_the_worker_keeps_going():
    cfg = load_config(FIXTURES / "levels.yaml")
    rt = EngineRole(cfg)
    await rt.start()
    try:
        p = _producer(rt.bootstrap)
        t0 = 1_767_000_000_000
        bad = [b"not json", b'{"symbol":"SPY","price":-1,"ts":1767000000}', b'{"symbol":"SPY","ts":1767000000}',
               b'{"symbol":"ZZZ","price":5,"ts":1767000000}', b'{"symbol":"SPY","price":1e999,"ts":1767000000}',
               orjson.dumps([{"symbol": "SPY", "price": 99.0, "ts": t0}, {"symbol": "SPY", "price": "x", "ts": t0}])]
        for raw in bad:
            p.send(T.TICKS, key=b"SPY", value=raw)
        p.send(T.TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": 100.5, "ts": t0 + 1000}))
        p.flush()
        await _until(lambda: rt.pipeline.counters["ticks_in"] >= 8 and rt.pipeline.idle())
        dlq = [e for _, e in await _read(rt.bootstrap, T.TICKS_DLQ)]
        events = [e for _, e in await _read(rt.bootstrap, T.EVENTS)]
    finally:
        await rt.stop()
    assert sorted(d["reason"] for d in dlq) == sorted(
        ["not_json", "bad_price", "missing_field", "unknown_symbol", "not_json", "bad_price"])
    assert all(d["detail"] and d["source"] == T.TICKS for d in dlq)
    assert {"symbol": "SPY", "price": "x", "ts": t0} in [d["input"] for d in dlq]
    # the valid tick inside the half-bad batch was applied: it armed the rule, the next one fired it
    assert [(e["scenario"], e["kind"]) for e in events] == [("spy-level", "fired")]


@pytest.mark.parametrize("order", [("IWM", "SPY"), ("SPY", "IWM")])
async def test_same_timestamp_legs_in_separate_records_never_cross_spuriously(order):
    # IWM/SPY goes 0.40 -> 0.40 with both legs doubling at t1. Applied one leg at a time the
    # ratio would pass through 0.80 (or 0.20) and fire; applied together it stays put.
    cfg = load_config(FIXTURES / "levels.yaml")
    rt = EngineRole(cfg)
    await rt.start()
    try:
        p = _producer(rt.bootstrap)
        t0 = 1_767_000_000_000
        p.send(T.TICKS, key=b"x", value=orjson.dumps([{"symbol": "IWM", "price": 40.0, "ts_ms": t0},
                                                        {"symbol": "SPY", "price": 100.0, "ts_ms": t0}]))
        p.flush()
        await _until(lambda: rt.pipeline.idle() and rt.pipeline.counters["ticks_in"] >= 2)
        price = {"IWM": 80.0, "SPY": 200.0}
        for sym in order:  # separate records, keyed by symbol: different partitions
            p.send(T.TICKS, key=sym.encode(), value=orjson.dumps({"symbol": sym, "price": price[sym], "ts_ms": t0 + 1}))
        p.flush()
        await _until(lambda: rt.pipeline.idle() and rt.pipeline.counters["ticks_in"] >= 4)
        eng, st = rt.pipeline.engine_for("iwm-spy-ratio")
        events = [e for _, e in await _read(rt.bootstrap, T.EVENTS)]
    finally:
        await rt.stop()
    assert st.metrics["trigger"] == pytest.approx(0.4)
    assert st.armed["trigger"] is True
    assert [e for e in events if e["scenario"] == "iwm-spy-ratio" and e["rule"] == "trigger"] == []
