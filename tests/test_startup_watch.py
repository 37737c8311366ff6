"""A group member that cannot get its partitions, or cannot recover their state, within its bounds
exits non-zero at once saying which, and never hangs (ratiowatch/roles/startup_watch.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from ratiowatch.config import load_config
from ratiowatch.roles.engine import EngineRole
from ratiowatch.roles.startup_watch import (READY, WAIT, StartupBounds, StartupFailed, startup_verdict,
                                            watch_coordination)
from ratiowatch.streams.topics import STATE_TABLE, changelog
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.member_state import MemberState

RW = str(Path(sys.executable).with_name("ratiowatch"))
BOUNDS = StartupBounds(assign_s=10, recover_s=20)


def verdict(state: MemberState, waited: float, assigned_for: float | None = None):
    return startup_verdict(state, waited_s=waited, assigned_for_s=assigned_for, bounds=BOUNDS, group="'g' at h:1")


def test_the_verdict_waits_within_the_bounds_and_says_which_bound_was_passed():
    assert verdict(MemberState(assigned=False, recovered=False), 9.9) == WAIT
    assert "no partitions assigned after 10 s" in verdict(MemberState(False, False), 10).failure
    assert verdict(MemberState(assigned=True, recovered=False), 30, assigned_for=19.9) == WAIT
    failed = verdict(MemberState(assigned=True, recovered=False), 30, assigned_for=20).failure
    assert failed.startswith("table recovery did not finish within 20 s")
    assert verdict(MemberState(assigned=True, recovered=True), 500, assigned_for=400) == READY


def test_a_stopped_group_coordination_fails_at_once_whatever_the_time():
    got = verdict(MemberState(False, False, coordination_error="KafkaError: UnknownError"), 0.5).failure
    assert got.startswith("no partitions assigned after 0.5 s") and "KafkaError: UnknownError" in got


def _engine(url: str, tmp_path: Path, *extra: str) -> tuple[int, str, float]:
    env = dict(os.environ, RATIOWATCH_SESSION_TIMEOUT_S="6", RATIOWATCH_DATADIR=str(tmp_path / "data"))
    t0 = time.monotonic()
    p = subprocess.run([RW, "engine", "--broker", url, "--origin", "replay", "--http", "off", *extra],
                       capture_output=True, text=True, env=env, timeout=120)
    return p.returncode, p.stderr, time.monotonic() - t0


@pytest.mark.broker
def test_an_engine_whose_group_coordination_dies_exits_1_at_once_saying_so(tmp_path):
    # aiokafka ends its coordination task on a SyncGroup error it does not know: the member would
    # sit without partitions, alive, until its start timed out (60 s) or for ever.
    with EmbeddedBroker() as broker:
        ensure_topics(broker, 8)
        broker.push_request_errors("sync_group", -1)  # UNKNOWN_SERVER_ERROR
        code, err, took = _engine(broker.url, tmp_path, "--start-timeout", "60")
    assert code == 1, err[-3000:]
    assert "ratiowatch engine: no partitions assigned after" in err and "UnknownError" in err, err[-3000:]
    assert took < 30, f"took {took:.1f}s to exit"


@pytest.mark.broker
def test_an_engine_never_assigned_exits_1_at_its_bound_naming_the_partitions(tmp_path):
    with EmbeddedBroker() as broker:
        ensure_topics(broker, 8)
        # The coordinator answers every JoinGroup "not available": the group never forms.
        broker.push_request_errors("join_group", *["coordinator_not_available"] * 100_000)
        code, err, took = _engine(broker.url, tmp_path, "--start-timeout", "5")
    assert code == 1, err[-3000:]
    assert "ratiowatch engine: no partitions assigned after 5 s" in err, err[-3000:]
    assert took < 45, f"took {took:.1f}s to exit"


@pytest.mark.broker
def test_an_engine_that_cannot_read_its_changelog_exits_1_naming_the_recovery(tmp_path):
    with EmbeddedBroker() as broker:
        ensure_topics(broker, 8)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=(3, 0))
        for p in range(8):  # state to recover on every shard
            producer.send(changelog(STATE_TABLE), key=b"k", value=b"{}", partition=p)
        producer.flush()
        producer.close()
        broker.push_request_errors("fetch", *["not_leader"] * 100_000)  # nothing can be read
        code, err, took = _engine(broker.url, tmp_path, "--start-timeout", "30", "--recovery-timeout", "4")
    assert code == 1, err[-3000:]
    assert "ratiowatch engine: table recovery did not finish within 4 s" in err, err[-3000:]
    assert took < 60, f"took {took:.1f}s to exit"


@pytest.mark.broker
async def test_a_failed_start_leaves_no_client_thread_to_hold_the_process(tmp_path):
    # A faust app left running after a failed start keeps its consumer thread (not a daemon):
    # the process then hangs at exit instead of being restarted.
    before = {t for t in threading.enumerate() if not t.daemon}
    with EmbeddedBroker() as broker:
        ensure_topics(broker, 8)
        broker.push_request_errors("join_group", *["coordinator_not_available"] * 100_000)
        rt = EngineRole(load_config(), broker_url=broker.url, datadir=str(tmp_path / "data"))
        rt.startup = StartupBounds(assign_s=3)
        with pytest.raises(StartupFailed, match="no partitions assigned after 3 s"):
            await rt.start()
        left = [t for t in threading.enumerate() if not t.daemon and t not in before]
        for t in left:
            t.join(10)
        assert not [t.name for t in left if t.is_alive()]


async def test_a_running_role_whose_group_coordination_stops_exits_3_at_once(capsys):
    # After the start nothing else would notice: the member owns nothing and never will again.
    from argparse import Namespace

    from ratiowatch.commands._role import serve_role
    from ratiowatch.ops.health import Health
    from ratiowatch.ops.metrics import Metrics

    why: list[str] = []
    stopped: list[bool] = []

    async def start() -> None:
        asyncio.get_running_loop().call_later(0.5, why.append, "KafkaError: UnknownError")

    async def stop() -> None:
        stopped.append(True)

    args = Namespace(http=None, start_timeout=5.0, recovery_timeout=5.0, broker="kafka://127.0.0.1:9",
                     duration=60.0, unready_timeout=60.0)
    t0 = time.monotonic()
    code = await serve_role("engine", args, Metrics(), Health(), start, stop,
                            coordination=lambda: why[0] if why else None)
    assert code == 3 and stopped == [True]
    assert time.monotonic() - t0 < 5
    err = capsys.readouterr().err
    assert "the group coordination of engine stopped on an answer the client does not recover from " \
           "(KafkaError: UnknownError)" in err, err


@pytest.mark.broker
async def test_an_engine_whose_app_crashed_says_so_and_its_watch_ends(tmp_path):
    # A faust timer or agent that raises crashes the app; mode logs it and the process goes on
    # looking alive while it evaluates nothing. The role's check must name the crash.
    with EmbeddedBroker() as broker:
        ensure_topics(broker, 8)
        rt = EngineRole(load_config(), broker_url=broker.url, datadir=str(tmp_path / "data"))
        await rt.start()
        try:
            assert rt.coordination_error() is None
            await rt.app.crash(RuntimeError("a timer raised"))
            why = await asyncio.wait_for(watch_coordination(rt.coordination_error, group="engine", every_s=0.05), 10)
            assert why == "engine: the worker crashed: RuntimeError('a timer raised')"
        finally:
            await rt.stop()
