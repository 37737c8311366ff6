"""The streaming path over TCP: kafka-python in, faust agents, kafka-python out, on the broker
RATIOWATCH_TEST_BROKER selects (``kafka_broker``, tests/conftest.py: the mock cluster or Tansu);
and the engine on a broker that refuses idempotent producers (Tansu, whatever the selection)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from ratiowatch.config import load_config
from ratiowatch.errors import ConfigError
from ratiowatch.roles.engine import EngineRole
from ratiowatch.streams.topics import EVENTS, TICKS, TICKS_DLQ
from ratiowatch.streams.faust_consumer import IDEMPOTENCE_ENV, IdempotenceUnsupported
from tansu_peer import TansuBroker, read_to_highwater  # a helper module in tests/, on sys.path

pytestmark = pytest.mark.broker
FIXTURES = Path(__file__).parent / "fixtures"
LEVELS_PARTITIONS = 4  # fixtures/levels.yaml's settings.partitions


def _producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, api_version=(3, 0))


async def _until(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def _read(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict]]:
    # What the engine wrote, read to the fetch's high watermark: not to ListOffsets, which Tansu
    # 0.6.0 answers wrong (conftest.GAPS; streams/readback.py reads to it and is tested on the mock).
    return [(r.key, orjson.loads(r.value)) for r in await read_to_highwater(bootstrap, topic)]


@pytest.mark.both_brokers
@pytest.mark.broker_partitions(LEVELS_PARTITIONS)
async def test_tick_from_kafka_python_crosses_and_event_is_read_back_plainly(kafka_broker, tmp_path):
    cfg = load_config(FIXTURES / "levels.yaml")
    rt = EngineRole(cfg, broker_url=kafka_broker.url, datadir=str(tmp_path))
    await rt.start()
    try:
        p = _producer(rt.bootstrap)
        t0 = 1_767_000_000_000
        for i, price in enumerate([99.0, 99.5, 101.0]):  # arms below 100, fires at 101
            p.send(TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": price, "ts": t0 + i * 1000}))
        p.flush()
        await _until(lambda: rt.pipeline.counters["events"] >= 1 and rt.pipeline.idle())
        events = [e for _, e in await _read(rt.bootstrap, EVENTS)]
        txn = rt.app.producer._producer._txn_manager
        if "idempotent_producer" not in kafka_broker.gaps:
            # The worker writes as an idempotent producer: the broker gave it a producer id, so on
            # Kafka a produce request retried after a dropped connection is not written twice (the
            # embedded broker still writes it twice: tests/test_events_once_after_outage.py).
            assert txn is not None and txn.producer_id >= 0
        else:
            # Tansu refuses producer ids: the fixture runs it with RATIOWATCH_IDEMPOTENCE=off.
            assert os.environ[IDEMPOTENCE_ENV] == "off" and txn is None
    finally:
        await rt.stop()
    assert [(e["scenario"], e["rule"], e["kind"], e["direction"], e["ts_ms"], e["value"]) for e in events] == [
        ("spy-level", "trigger", "fired", "up", t0 + 2000, 101.0)]
    assert events[0]["at"] == "2025-12-29T09:20:02Z"


@pytest.mark.both_brokers
@pytest.mark.broker_partitions(LEVELS_PARTITIONS)
async def test_malformed_ticks_go_to_the_dlq_with_reasons_and_the_worker_keeps_going(kafka_broker, tmp_path):
    cfg = load_config(FIXTURES / "levels.yaml")
    rt = EngineRole(cfg, broker_url=kafka_broker.url, datadir=str(tmp_path))
    await rt.start()
    try:
        p = _producer(rt.bootstrap)
        t0 = 1_767_000_000_000
        bad = [b"not json", b'{"symbol":"SPY","price":-1,"ts":1767000000}', b'{"symbol":"SPY","ts":1767000000}',
               b'{"symbol":"ZZZ","price":5,"ts":1767000000}', b'{"symbol":"SPY","price":1e999,"ts":1767000000}',
               orjson.dumps([{"symbol": "SPY", "price": 99.0, "ts": t0}, {"symbol": "SPY", "price": "x", "ts": t0}])]
        for raw in bad:
            p.send(TICKS, key=b"SPY", value=raw)
        p.send(TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": 100.5, "ts": t0 + 1000}))
        p.flush()
        await _until(lambda: rt.pipeline.counters["ticks_in"] >= 8 and rt.pipeline.idle())
        dlq = [e for _, e in await _read(rt.bootstrap, TICKS_DLQ)]
        events = [e for _, e in await _read(rt.bootstrap, EVENTS)]
    finally:
        await rt.stop()
    assert sorted(d["reason"] for d in dlq) == sorted(
        ["not_json", "bad_price", "missing_field", "unknown_symbol", "not_json", "bad_price"])
    assert all(d["detail"] and d["source"] == TICKS for d in dlq)
    assert {"symbol": "SPY", "price": "x", "ts": t0} in [d["input"] for d in dlq]
    # the valid tick inside the half-bad batch was applied: it armed the rule, the next one fired it
    assert [(e["scenario"], e["kind"]) for e in events] == [("spy-level", "fired")]


@pytest.mark.both_brokers
@pytest.mark.broker_partitions(LEVELS_PARTITIONS)
@pytest.mark.parametrize("order", [("IWM", "SPY"), ("SPY", "IWM")])
async def test_same_timestamp_legs_in_separate_records_never_cross_spuriously(order, kafka_broker, tmp_path):
    # IWM/SPY goes 0.40 -> 0.40 with both legs doubling at t1. Applied one leg at a time the
    # ratio would pass through 0.80 (or 0.20) and fire; applied together it stays put.
    cfg = load_config(FIXTURES / "levels.yaml")
    rt = EngineRole(cfg, broker_url=kafka_broker.url, datadir=str(tmp_path))
    await rt.start()
    try:
        p = _producer(rt.bootstrap)
        t0 = 1_767_000_000_000
        p.send(TICKS, key=b"x", value=orjson.dumps([{"symbol": "IWM", "price": 40.0, "ts_ms": t0},
                                                        {"symbol": "SPY", "price": 100.0, "ts_ms": t0}]))
        p.flush()
        await _until(lambda: rt.pipeline.idle() and rt.pipeline.counters["ticks_in"] >= 2)
        price = {"IWM": 80.0, "SPY": 200.0}
        for sym in order:  # separate records, keyed by symbol: different partitions
            p.send(TICKS, key=sym.encode(), value=orjson.dumps({"symbol": sym, "price": price[sym], "ts_ms": t0 + 1}))
        p.flush()
        await _until(lambda: rt.pipeline.idle() and rt.pipeline.counters["ticks_in"] >= 4)
        eng, st = rt.pipeline.engine_for("iwm-spy-ratio")
        events = [e for _, e in await _read(rt.bootstrap, EVENTS)]
    finally:
        await rt.stop()
    assert st.metrics["trigger"] == pytest.approx(0.4)
    assert st.armed["trigger"] is True
    assert [e for e in events if e["scenario"] == "iwm-spy-ratio" and e["rule"] == "trigger"] == []


# --- a broker that refuses idempotent producers (Tansu 0.6.0, whatever RATIOWATCH_TEST_BROKER says) ---


@pytest.fixture
def tansu():
    with TansuBroker() as b:
        b.ensure_topics(LEVELS_PARTITIONS)
        yield b


async def test_without_the_setting_the_engine_refuses_a_broker_without_producer_ids_at_once(
        tansu, tmp_path, monkeypatch):
    monkeypatch.delenv(IDEMPOTENCE_ENV, raising=False)
    rt = EngineRole(load_config(FIXTURES / "levels.yaml"), broker_url=tansu.url, datadir=str(tmp_path))
    t0 = time.monotonic()
    try:
        with pytest.raises(IdempotenceUnsupported) as e:
            await asyncio.wait_for(rt.start(), 30)  # a hang fails here as a TimeoutError, not as a pass
    finally:
        await rt.stop()
    assert time.monotonic() - t0 < 10
    msg = str(e.value)
    assert f"the broker at {tansu.url} refused a producer id (InitProducerId answered UnknownError" in msg
    assert "does not support idempotent producers" in msg and f"set {IDEMPOTENCE_ENV}=off" in msg
    assert "may be written twice" in msg


def test_the_engine_command_exits_1_naming_the_capability_and_the_setting(tansu, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != IDEMPOTENCE_ENV}
    env["RATIOWATCH_DATADIR"] = str(tmp_path)
    proc = subprocess.run([str(Path(sys.executable).with_name("ratiowatch")), "engine", "--broker", tansu.url,
                           "--config", str(FIXTURES / "levels.yaml"), "--http", "off", "--start-timeout", "60"],
                          env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "IdempotenceUnsupported" in proc.stderr and "InitProducerId" in proc.stderr, proc.stderr[-3000:]
    assert f"set {IDEMPOTENCE_ENV}=off" in proc.stderr
    assert "running" not in proc.stdout


async def test_with_the_setting_off_the_engine_says_what_it_gives_up_and_runs(tansu, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(IDEMPOTENCE_ENV, "off")
    caplog.set_level(logging.WARNING, logger="ratiowatch.streams.app")
    rt = EngineRole(load_config(FIXTURES / "levels.yaml"), broker_url=tansu.url, datadir=str(tmp_path))
    said = [r.getMessage() for r in caplog.records if IDEMPOTENCE_ENV in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"{IDEMPOTENCE_ENV}=off: the ratiowatch producer is not idempotent")
    assert "may be written twice" in said[0] and "de-duplicate by event_id" in said[0]
    await asyncio.wait_for(rt.start(), 60)
    try:
        assert rt.app.producer._producer._txn_manager is None  # no producer id asked for
        p = _producer(tansu.bootstrap)
        t0 = 1_767_000_000_000
        for i, price in enumerate([99.0, 99.5, 101.0]):
            p.send(TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": price, "ts": t0 + i * 1000}))
        p.flush()
        p.close()
        await _until(lambda: rt.pipeline.counters["events"] >= 1 and rt.pipeline.idle())
        events = [e for _, e in await _read(tansu.bootstrap, EVENTS)]
    finally:
        await rt.stop()
    assert [(e["scenario"], e["kind"], e["ts_ms"]) for e in events] == [("spy-level", "fired", t0 + 2000)]


async def test_a_broker_out_of_reach_is_not_taken_for_one_refusing_producer_ids(tmp_path, monkeypatch):
    import socket

    from ratiowatch.streams.app import create_app

    monkeypatch.delenv(IDEMPOTENCE_ENV, raising=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(f"kafka://127.0.0.1:{port}", partitions=1, datadir=tmp_path)
    try:
        with pytest.raises(Exception) as e:
            await asyncio.wait_for(app.producer.start(), 30)
    finally:
        if app.producer._producer is not None:  # faust leaves aiokafka's producer of a failed start open
            await app.producer._producer.stop()
    assert not isinstance(e.value, IdempotenceUnsupported), e.value
    assert "Unable to bootstrap" in str(e.value), repr(e.value)


@pytest.mark.parametrize("value", ["of", "false", "0", "disabled"])
def test_any_other_value_of_the_setting_is_a_config_error_naming_it(value, monkeypatch, tmp_path):
    from ratiowatch.streams.app import create_app

    monkeypatch.setenv(IDEMPOTENCE_ENV, value)
    with pytest.raises(ConfigError) as e:
        create_app("kafka://127.0.0.1:9", partitions=1, datadir=tmp_path)
    assert str(e.value) == f"environment: {IDEMPOTENCE_ENV}: must be on or off, got {value!r}"


# --- a known gap of Tansu 0.6.0, pinned on both brokers ---------------------------------------------

# ListOffsets(latest) must answer the log end offset, the offset the next record will get: readers
# that stop at the end offsets (streams/readback.py, the events read-back of a taken-over shard,
# faust's changelog recovery) rely on it. Tansu 0.6.0 answers the base offset of the
# partition's last batch + 1 instead (conftest.GAPS["tansu"]["list_offsets_log_end"]); the tests that
# need it call kafka_broker.require("list_offsets_log_end") and are skipped there.


@pytest.mark.both_brokers
async def test_list_offsets_latest_is_the_log_end_after_a_multi_record_batch(kafka_broker, request):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    if "list_offsets_log_end" in kafka_broker.gaps:
        # Fails (XPASS, strict) once the broker answers the log end: then delete the gap in conftest.GAPS.
        request.applymarker(pytest.mark.xfail(reason=kafka_broker.gaps["list_offsets_log_end"], strict=True))
    kafka_broker.create_topic("offsets-probe", 1)
    tp = TopicPartition("offsets-probe", 0)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    try:
        ends = []
        for n in (6, 1, 3):  # each one batch, in one produce request
            batch = producer.create_batch()
            for i in range(n):
                assert batch.append(key=None, value=b"r%d" % i, timestamp=None) is not None
            meta = await (await producer.send_batch(batch, tp.topic, partition=0))
            ends.append((meta.offset + n, (await consumer.end_offsets([tp]))[tp]))
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        fetched = []
        while len(fetched) < 10:
            got = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=500), 30)
            fetched += [r.offset for r in got.get(tp, [])]
        highwater = consumer.highwater(tp)
    finally:
        await consumer.stop()
        await producer.stop()
    assert fetched == list(range(10)) and highwater == 10  # the records and the fetch's high watermark
    assert ends == [(6, 6), (7, 7), (10, 10)]  # (log end, ListOffsets latest); Tansu 0.6.0: (6, 1), (7, 7), (10, 8)
