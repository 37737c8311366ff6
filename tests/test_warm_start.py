"""Warm start: with --history the windows and armed flags are seeded from daily closes, so a
63-session trigger is live from the first tick, not three months later."""

from __future__ import annotations

import asyncio
import csv
from datetime import date

import orjson
import pytest
from kafka import KafkaProducer

from ratiowatch.model.sessions import session_close_ts_ms
from ratiowatch.agents.warmstart import seed_states
from ratiowatch.config import load_config
from ratiowatch.roles.engine import EngineRole
from ratiowatch.streams.topics import TICKS

pytestmark = pytest.mark.broker


def _closes(path) -> dict[str, float]:
    with open(path) as f:
        return {row["date"]: float(row["close"]) for row in csv.DictReader(f)}


async def test_first_live_tick_after_warm_start_has_its_63_session_reading(history_dir):
    cfg = load_config()
    seed, last, last_date = seed_states(cfg, history_dir)
    assert last_date == date(2026, 8, 20)  # DXY, the series that ends last
    iwm, spy = _closes(history_dir / "IWM.csv"), _closes(history_dir / "SPY.csv")
    ratio = [iwm[d] / spy[d] for d in sorted(set(iwm) & set(spy))]  # both on NYSE days since 2000

    rt = EngineRole(cfg, seed=seed)
    await rt.start()
    try:
        ts = session_close_ts_ms(date(2026, 8, 21), cfg.settings.session_timezone)
        p = KafkaProducer(bootstrap_servers=rt.bootstrap, api_version=(3, 0))
        p.send(TICKS, key=b"live", value=orjson.dumps([{"symbol": "IWM", "price": 250.0, "ts_ms": ts},
                                                          {"symbol": "SPY", "price": 640.0, "ts_ms": ts}]))
        p.flush()
        deadline = asyncio.get_running_loop().time() + 30
        while rt.pipeline.counters["ticks_in"] < 2 or not rt.pipeline.idle():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        engine, state = rt.pipeline.engine_for("small-caps-outperform")
        status = engine.status(state)
    finally:
        await rt.stop()
    v = 250.0 / 640.0
    # The new session's value against the closes 63 and 252 sessions before it.
    assert status["trigger"]["metric"] == pytest.approx(v / ratio[-63] - 1, rel=1e-12)
    assert status["windows"]["252"] == pytest.approx(v / ratio[-252] - 1, rel=1e-12)
    # Armed as history left it (the last crossing, 2026-02-25, re-armed it), and still armed: the
    # reading is far below +10%, so the first live tick cannot have fired the trigger.
    assert status["trigger"]["state"] == "armed"
    # The status's last crossing is that re-arm from the history, not anything the live tick did.
    assert (status["last_event"]["kind"], status["last_event"]["at"][:10]) == ("rearmed", "2026-02-25")


async def test_a_warm_started_state_survives_a_restart_before_its_next_session(history_dir, tmp_path):
    # The seeded past closes are the warm start: the changelog must hold them as soon as the
    # seeded state is written, not only once a session rolls. Otherwise an engine restarted the
    # same day finds the live part alone and every window is undefined again.
    from ratiowatch.streams.app import ensure_topics
    from ratiowatch.streams.broker import EmbeddedBroker

    cfg = load_config()
    seed, _, _ = seed_states(cfg, history_dir)
    with EmbeddedBroker() as broker:
        ensure_topics(broker, cfg.settings.partitions)
        first = EngineRole(cfg, broker_url=broker.url, seed=seed, datadir=str(tmp_path / "a"))
        await first.start()
        try:
            engine, state = await _loaded(first, "small-caps-outperform")
            assert all(v is not None for v in engine.windows(state).values())  # seeded
        finally:
            await first.stop()  # writes every owned shard's state on its way out
        again = EngineRole(cfg, broker_url=broker.url, datadir=str(tmp_path / "b"))  # no seed this time
        await again.start()
        try:
            engine, state = await _loaded(again, "small-caps-outperform")
            windows = engine.windows(state)
        finally:
            await again.stop()
    assert all(v is not None for v in windows.values()), windows


async def _loaded(role: EngineRole, sid: str):
    """The scenario's engine and state, once its shard is loaded (the status timer loads every
    owned shard after recovery)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        try:
            engine, state = role.pipeline.engine_for(sid)
            if state is not None:
                return engine, state
        except KeyError:
            pass
        assert loop.time() < deadline, f"{sid}: its shard was not loaded within 30 s"
        await asyncio.sleep(0.05)
