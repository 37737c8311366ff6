"""The web role following the ``scenarios`` topic, when an engine publishes a just-applied
scenario's first status before the web process has read the scenario: the card shows that status
once the scenario is read (not "waiting for the engine" until some later status), and a status of
another version of it is not shown in its place."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from kafka import KafkaProducer

from ratiowatch.config import parse_config
from ratiowatch.model.spec import encode_record
from ratiowatch.ops.health import Health
from ratiowatch.ops.metrics import Metrics
from ratiowatch.roles.web import WebRole
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.clients import kafka_python_kwargs_for
from ratiowatch.streams.live import LiveHub
from ratiowatch.streams.topics import SCENARIO_STATUS, SCENARIOS

pytestmark = pytest.mark.broker


def _scenarios(*specs):
    return parse_config({"scenarios": [{"id": sid, "trigger": {"series": "SPY", "above": above}, "notify": []}
                                       for sid, above in specs]}, "t.yaml").scenarios


async def _until(cond, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_a_status_read_before_its_scenario_is_shown_once_the_scenario_is_read():
    first, early, stale = _scenarios(("first", 1), ("early", 2), ("stale", 3))
    (stale_now,) = _scenarios(("stale", 4))  # another version of "stale" is what gets applied
    with EmbeddedBroker() as broker:
        ensure_topics(broker, 2)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, **kafka_python_kwargs_for())

        def status(sc, n):
            # Partition 0 for all: once the web shows "first"'s status n, it has read those before it.
            doc = {"type": "status", "scenario": sc.id, "title": sc.title, "scenario_version": sc.version, "n": n}
            producer.send(SCENARIO_STATUS, key=sc.id.encode(), value=orjson.dumps(doc), partition=0)

        key, value = encode_record(first)
        producer.send(SCENARIOS, key=key, value=value)
        producer.flush()
        hub = LiveHub()
        web = WebRole(hub, bootstrap=broker.bootstrap, metrics=Metrics(), health=Health(), follow_scenarios=True)
        await web.start()
        try:
            status(early, 1)
            status(stale, 1)
            status(first, 1)
            producer.flush()
            await _until(lambda: hub.snapshot().get("first", {}).get("n") == 1, "first's status shown")
            assert "early" not in hub.snapshot() and "stale" not in hub.snapshot()

            for sc in (early, stale_now):
                key, value = encode_record(sc)
                producer.send(SCENARIOS, key=key, value=value)
            producer.flush()
            await _until(lambda: {"early", "stale"} <= hub.snapshot().keys(), "both cards on the page")
            await _until(lambda: hub.snapshot()["early"].get("n") == 1, f"early's status: {hub.snapshot()['early']}")
            # The status read early was of another version of "stale": its card waits for the engine.
            assert hub.snapshot()["stale"].get("pending") is True, hub.snapshot()["stale"]
        finally:
            await web.stop()
            hub.close()
            producer.close()
