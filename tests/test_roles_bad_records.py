"""A malformed record on ``scenario-status`` or ``events`` (written there by hand, or by a broken
producer) does not stop the web or the notify role: it is counted, logged with its offset and
skipped, and the good records around it are used."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from ratiowatch.agents.engine import ShardEngine
from ratiowatch.config import load_config
from ratiowatch.ops.metrics import Metrics
from ratiowatch.roles.notify import NotifyRole
from ratiowatch.roles.web import WebRole
from ratiowatch.streams.topics import EVENTS, SCENARIO_STATUS
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.live import LiveHub

pytestmark = pytest.mark.broker
FIXTURES = Path(__file__).parent / "fixtures"
GARBAGE = [b"not json", b"[1, 2]", b'{"no": "scenario"}']


def _real_records(cfg):
    """A status and a fired trigger event, made by the engine (spy-level: SPY 99 then 101)."""
    eng, states, t0 = ShardEngine(cfg.scenarios, cfg.settings), {}, 1_767_000_000_000
    eng.apply(states, t0, [("SPY", 99.0, t0)])
    events, _ = eng.apply(states, t0 + 1000, [("SPY", 101.0, t0 + 1000)])
    event = next(e for e in events if e["scenario"] == "spy-level" and e["rule"] == "trigger")
    return eng.engines["spy-level"].status(states["spy-level"]), event


async def _until(cond, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_web_and_notify_skip_bad_records_and_use_the_good_ones(caplog, capsys):
    cfg = load_config(FIXTURES / "levels.yaml")
    status, event = _real_records(cfg)
    with EmbeddedBroker() as broker:
        ensure_topics(broker, cfg.settings.partitions)
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=(3, 0))
        for raw in GARBAGE:
            p.send(SCENARIO_STATUS, key=b"x", value=raw, partition=0)
            p.send(EVENTS, key=b"x", value=raw, partition=0)
        p.send(SCENARIO_STATUS, key=b"spy-level", value=orjson.dumps(status), partition=0)
        p.send(EVENTS, key=b"spy-level", value=orjson.dumps(event), partition=0)
        p.flush()

        metrics = Metrics()
        hub = LiveHub(scenarios=[s.id for s in cfg.scenarios])
        web = WebRole(hub, bootstrap=broker.bootstrap, metrics=metrics)
        notify = NotifyRole(cfg, bootstrap=broker.bootstrap, ephemeral=True, metrics=metrics)
        caplog.set_level(logging.WARNING)
        await web.start()
        await notify.start()
        try:
            await _until(lambda: web.health.readiness().ok and "spy-level" in hub.snapshot(), "web took the status")
            await _until(lambda: notify.handled == 1 and notify.bad_records == len(GARBAGE), "notify took the event")
            await notify.drain(timeout=30)
        finally:
            await notify.stop()
            await web.stop()
    # web: 3 bad on each topic, the good status shown, the good event passed on
    assert web.counters == {"statuses": 1, "events": 1, "bad_records": 2 * len(GARBAGE)}
    assert hub.snapshot()["spy-level"]["trigger"]["state"] == "fired"
    assert metrics.value("ratiowatch_bad_records_total", {"role": "web", "topic": SCENARIO_STATUS}) == 3
    assert metrics.value("ratiowatch_bad_records_total", {"role": "notify", "topic": EVENTS}) == 3
    logged = [r.getMessage() for r in caplog.records if "skipping a record" in r.getMessage()]
    assert any(f"on {EVENTS} partition 0 offset 0" in m for m in logged), logged      # web
    assert any("at partition 0 offset 0" in m for m in logged), logged                   # notify
    assert "ALERT: SPY above 100" in capsys.readouterr().out  # the good event reached the console channel
