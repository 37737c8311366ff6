"""faust's PrometheusMonitor installed on a real ratiowatch faust app (streams/app.py's factory) on
the embedded broker: its metrics land in our registry under faust_, and the engine-side readings
(rebalances, recovery time, readiness, consumer lag) follow what the worker really does."""

from __future__ import annotations

import asyncio
import time

import pytest
from kafka import KafkaProducer

from ratiowatch.ops import Health, Metrics
from ratiowatch.ops.faust_sensors import RatiowatchMonitor, install_faust_monitor
from ratiowatch.streams.app import create_app
from ratiowatch.streams.broker import EmbeddedBroker

pytestmark = pytest.mark.broker

APP_ID = "ops-test"
TOPIC = "ops-in"
PARTITIONS = 2
N = 10


async def _until(cond, what: str, timeout: float = 60.0, diag=None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}: {diag() if diag else ''}")
        await asyncio.sleep(0.05)


async def test_faust_monitor_records_into_our_registry_and_drives_readiness_and_lag(tmp_path):
    broker = EmbeddedBroker()
    broker.create_topic(TOPIC, PARTITIONS)
    broker.create_topic(f"{APP_ID}-counts-changelog", PARTITIONS)
    app = create_app(broker.url, partitions=PARTITIONS, app_id=APP_ID, datadir=tmp_path)
    counts = app.Table("counts", default=int, partitions=PARTITIONS)
    topic = app.topic(TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    @app.agent(topic)
    async def count(stream):
        async for key, _ in stream.items():
            counts[key] += 1

    metrics = Metrics()
    monitor = install_faust_monitor(app, metrics)
    assert app.monitor is monitor and isinstance(monitor, RatiowatchMonitor)
    health = Health()
    health.add_ready_check("engine", monitor.readiness)
    health.add_live_check("faust", monitor.liveness)
    metrics.add_lag_source(APP_ID, monitor.consumer_lag)
    assert health.readiness().checks["engine"].reason == "no partitions assigned yet"

    await app.start()
    try:
        with pytest.raises(RuntimeError, match="before the faust app starts"):
            install_faust_monitor(app, Metrics())
        await _until(lambda: health.readiness().ok, "the worker to be assigned and recovered")
        assert metrics.value("ratiowatch_rebalances_total") >= 1
        assert metrics.value("ratiowatch_state_recovering") == 0
        assert metrics.value("ratiowatch_state_recovery_seconds") > 0

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=(3, 0))
        for i in range(N):
            producer.send(TOPIC, key=f"k{i % 2}".encode(), value=b"x", partition=i % 2)
        producer.flush()
        producer.close()
        await _until(lambda: metrics.value("faust_messages_received_total") == N, "faust to count the messages")
        # Committed (commit interval 1 s) up to the end of both partitions: no lag left. (A
        # partition nothing was ever fetched from has no end offset yet, hence a record in each.)
        await _until(lambda: sorted(p for t, p, n in monitor.consumer_lag() if t == TOPIC and n == 0) == [0, 1],
                     "both partitions committed to their end",
                     diag=lambda: (dict(monitor.tp_end_offsets), dict(monitor.tp_committed_offsets)))
        assert health.liveness().ok
        await app.crash(RuntimeError("disk full"))
        assert health.liveness().checks["faust"].reason == "faust worker crashed: RuntimeError('disk full')"
    finally:
        await app.stop()
        broker.stop()

    exposed = metrics.exposition()[0].decode()
    assert 'faust_messages_received_per_topic_total{topic="ops-in"} 10.0' in exposed
    assert metrics.value("faust_table_operations_total",
                         {"table": "table.counts", "operation": "keys_updated"}) == N
    lag = {(s.labels["topic"], s.labels["partition"]): s.value
           for fam in metrics.registry.collect() if fam.name == "ratiowatch_consumer_lag" for s in fam.samples}
    assert lag[(TOPIC, "0")] == 0 and lag[(TOPIC, "1")] == 0
    # faust's rebalance gauge (in progress) went up and down again, beside our counter.
    assert metrics.value("faust_total_rebalances") == 0
