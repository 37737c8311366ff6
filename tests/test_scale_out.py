"""Several engines on one broker: three started at the same instant (as `docker compose up --scale
engine=3` starts them) form one group and split the shards; when one is killed the others take its
shards over, recover their state from the changelog, and no event is lost or repeated.

Runs on the broker RATIOWATCH_TEST_BROKER selects (``both_brokers``). Every check is a wait on a
condition with a deadline, never retried: a failed wait reports each engine's log and metrics.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

import orjson
import polars as pl
import pytest
from kafka import KafkaProducer

from ratiowatch.backtest import run_backtest
from ratiowatch.config import default_config_path, load_config
from ratiowatch.streams.topics import APP_ID, EVENTS, SHARD_TICKS, TICKS
from ratiowatch.streams.history import daily_ticks, load_history
from ratiowatch.streams.ticks import encode_ticks
from tansu_peer import read_to_highwater

pytestmark = [pytest.mark.broker, pytest.mark.both_brokers]
RW = str(Path(sys.executable).with_name("ratiowatch"))
ENGINES = 3


def engine_command(url: str) -> list[str]:
    """How every engine of these tests is started (it follows the scenarios on the `scenarios` topic)."""
    return [RW, "-v", "engine", "--broker", url, "--origin", "replay", "--http", "127.0.0.1:0"]


def apply_scenarios(url: str) -> None:
    """The shipped scenario file onto the cluster's `scenarios` topic, as an operator does."""
    p = subprocess.run([RW, "scenarios", "apply", default_config_path(), "--broker", url],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"scenarios apply exited {p.returncode}: {p.stdout}{p.stderr}"


class Worker:
    """An engine in its own process, its log collected."""

    def __init__(self, url: str, cwd: Path) -> None:
        env = dict(os.environ, RATIOWATCH_SESSION_TIMEOUT_S="6")
        self.proc = subprocess.Popen(engine_command(url), cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.ops_url: str | None = None
        threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)
            if m := re.search(r"(http://127\.0\.0\.1:\d+)/metrics", line):
                self.ops_url = m.group(1)

    def get(self, path: str) -> tuple[int, str]:
        if self.ops_url is None or self.proc.poll() is not None:
            return 0, ""
        try:
            with urllib.request.urlopen(self.ops_url + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def report(self) -> str:
        """Its exit code, log tail and ratiowatch metrics: what a failed wait shows."""
        text = f"exit code: {self.proc.poll()}\n" + "".join(self.lines[-60:])
        code, body = self.get("/metrics")
        text += "".join(f"{line}\n" for line in body.splitlines() if line.startswith("ratiowatch_")) if code == 200 \
            else f"(metrics unavailable: {code} {body})\n"
        return text

    def shards(self) -> set[int] | None:
        owned = [m.group(1) for line in self.lines if (m := re.search(r"owns shards ([\d,]*|none) of", line))]
        if not owned:
            return None
        return set() if owned[-1] == "none" else {int(s) for s in owned[-1].split(",")}

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_engines(url: str, cwd: Path, n: int) -> list[Worker]:
    """The scenarios applied, then ``n`` engine processes started back to back, without waiting
    for any of them: the one place these tests start engines."""
    apply_scenarios(url)
    return [Worker(url, cwd) for _ in range(n)]


def _split(workers: list[Worker], partitions: int) -> bool:
    """Every worker ready, owning shards none of the others owns, all shards owned."""
    owned = [w.shards() for w in workers]
    if not all(owned) or not all(w.ready() for w in workers):
        return False
    return sum(len(s) for s in owned) == partitions and set().union(*owned) == set(range(partitions))


def _events(bootstrap: str) -> list[dict]:
    # To the high watermarks fetch answers report: ListOffsets is wrong on Tansu (conftest.py, GAPS).
    return [orjson.loads(r.value) for r in asyncio.run(read_to_highwater(bootstrap, EVENTS))]


def _all_committed(bootstrap: str, partitions: int) -> bool:
    """Whether the engines' group has committed every record of ``ticks`` and the shard topic."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, api_version=(3, 0), group_id=APP_ID, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in (TICKS, SHARD_TICKS) for p in range(partitions)]
        ends = c.end_offsets(tps)
        return all((c.committed(tp) or 0) >= ends[tp] for tp in tps)
    finally:
        c.close()


def _wait(cond, timeout: float, what: str, workers: list[Worker], *, alive: list[Worker] | None = None) -> None:
    """Until ``cond()``; fails at the deadline, or at once when a worker of ``alive`` (default:
    all) exits, with every worker's report."""
    alive = workers if alive is None else alive
    deadline = time.monotonic() + timeout
    while not cond():
        exited = [i for i, w in enumerate(workers) if w in alive and w.proc.poll() is not None]
        if exited or time.monotonic() > deadline:
            why = f"engine(s) {exited} exited" if exited else f"timed out after {timeout:g}s"
            tails = "\n".join(f"--- engine {i} ---\n{w.report()}" for i, w in enumerate(workers))
            raise AssertionError(f"{why} waiting for {what}\n{tails}")
        time.sleep(0.5)


def _send(bootstrap: str, groups) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, api_version=(3, 0), linger_ms=5)
    try:
        for _, ticks in groups:
            producer.send(TICKS, key=b"history", value=encode_ticks(ticks))
        producer.flush()
    finally:
        producer.close()


def _expected(history_dir: Path, since: date):
    cfg = load_config()
    history = load_history(history_dir, cfg.symbols).filter(pl.col("date") >= since)
    expected = run_backtest(cfg, history).as_published("replay")  # the workers run with --origin replay
    return cfg, expected, list(daily_ticks(history, cfg.settings.session_timezone))


def test_three_engines_started_at_once_split_the_shards_and_emit_every_event_once(kafka_broker, tmp_path,
                                                                                   history_dir):
    cfg, expected, groups = _expected(history_dir, date(2024, 1, 1))
    partitions = cfg.settings.partitions
    workers = start_engines(kafka_broker.url, tmp_path, ENGINES)
    try:
        _wait(lambda: _split(workers, partitions), 120, f"{ENGINES} engines to split the {partitions} shards", workers)
        split = [w.shards() for w in workers]
        _send(kafka_broker.bootstrap, groups)
        _wait(lambda: len({e["event_id"] for e in _events(kafka_broker.bootstrap)}) >= len(expected), 120,
              f"every expected event ({len(expected)})", workers)
        # Nobody's shards moved while they worked: the split held.
        assert [w.shards() for w in workers] == split, "the shards moved while the engines worked"
        assert all(w.ready() for w in workers)
    finally:
        for w in workers:
            w.stop()
    got = _events(kafka_broker.bootstrap)
    ids = [e["event_id"] for e in got]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events were emitted twice"
    by_id = {e["event_id"]: e for e in got}
    assert [by_id.get(e["event_id"]) for e in expected] == expected
    assert len(got) == len(expected)


def test_when_one_of_three_is_killed_the_others_take_its_shards_and_nothing_is_lost_or_repeated(
        kafka_broker, tmp_path, history_dir):
    # A taken-over shard's state comes from its changelog, read to the end offsets ListOffsets gives.
    kafka_broker.require("list_offsets_log_end")
    cfg, expected, groups = _expected(history_dir, date(2012, 1, 1))
    partitions = cfg.settings.partitions
    half = len(groups) // 2
    mid_ts = groups[half - 1][1][0].ts_ms
    bootstrap = kafka_broker.bootstrap

    workers = start_engines(kafka_broker.url, tmp_path, ENGINES)
    try:
        _wait(lambda: _split(workers, partitions), 120, f"{ENGINES} engines to split the {partitions} shards", workers)
        _send(bootstrap, groups[:half])
        first = [e for e in expected if e["ts_ms"] <= mid_ts]
        _wait(lambda: len(_events(bootstrap)) >= len(first), 120, "the first half's events", workers)
        victim, survivors = workers[0], workers[1:]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        _send(bootstrap, groups[half:])
        _wait(lambda: _split(survivors, partitions), 90, "the survivors to take every shard", workers, alive=survivors)
        _wait(lambda: len({e["event_id"] for e in _events(bootstrap)}) >= len(expected), 180,
              f"every expected event ({len(expected)})", workers, alive=survivors)
        # Once the group has committed every ticks and shard record, everything was handled:
        # an event sent twice would be on the topic by then.
        _wait(lambda: _all_committed(bootstrap, partitions), 120, "every record committed", workers, alive=survivors)
        got = _events(bootstrap)
    finally:
        for w in workers:
            w.stop()
    ids = [e["event_id"] for e in got]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events were emitted twice"
    by_id = {e["event_id"]: e for e in got}
    assert [by_id.get(e["event_id"]) for e in expected] == expected
    assert len(got) == len(expected)
