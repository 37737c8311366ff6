"""Several engines on one broker split the shards; when one is killed the other takes its shards
over, recovers their state from the changelog, and no event is lost or repeated."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

import orjson
import polars as pl
import pytest
from kafka import KafkaProducer

from ratiowatch.backtest import run_backtest
from ratiowatch.config import load_config
from ratiowatch.streams import topics as T
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.history import daily_ticks, load_history
from ratiowatch.streams.readback import read_topic
from ratiowatch.streams.ticks import encode_ticks

pytestmark = pytest.mark.broker
RW = str(Path(sys.executable).with_name("ratiowatch"))


class Worker:
    """`ratiowatch -v engine --broker URL` in its own process, its log collected."""

    def __init__(self, url: str, cwd: Path) -> None:
        env = dict(os.environ, RATIOWATCH_SESSION_TIMEOUT_S="6")
        self.proc = subprocess.Popen([RW, "-v", "engine", "--broker", url, "--origin", "replay", "--http", "127.0.0.1:0"], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.metrics_url: str | None = None
        threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)
            if m := re.search(r"(http://127\.0\.0\.1:\d+)/metrics", line):
                self.metrics_url = m.group(1) + "/metrics"

    def report(self) -> str:
        """Its log tail and its ratiowatch metrics: what a failed wait shows."""
        text = "".join(self.lines[-60:])
        if self.metrics_url and self.proc.poll() is None:
            try:
                body = urllib.request.urlopen(self.metrics_url, timeout=5).read().decode()
                text += "".join(f"{line}\n" for line in body.splitlines() if line.startswith("ratiowatch_"))
            except OSError as e:
                text += f"(metrics unavailable: {e})\n"
        return text

    def shards(self) -> set[int] | None:
        owned = [m.group(1) for line in self.lines if (m := re.search(r"owns shards ([\d,]*|none) of", line))]
        if not owned:
            return None
        return set() if owned[-1] == "none" else {int(s) for s in owned[-1].split(",")}


def _all_committed(bootstrap: str, partitions: int) -> bool:
    """Whether the engines' group has committed every record of ``ticks`` and the shard topic."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, api_version=(3, 0), group_id=T.APP_ID, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in (T.TICKS, T.SHARD_TICKS) for p in range(partitions)]
        ends = c.end_offsets(tps)
        return all((c.committed(tp) or 0) >= ends[tp] for tp in tps)
    finally:
        c.close()


def _events(bootstrap: str) -> list[dict]:
    return [orjson.loads(v) for _, v, _, _ in read_topic(bootstrap, T.EVENTS)]


def _wait(cond, timeout: float, what: str, *logs: Worker) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- worker {i} ---\n{w.report()}" for i, w in enumerate(logs))
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.5)


def test_two_workers_split_the_shards_and_one_takes_over_when_the_other_is_killed(tmp_path, history_dir):
    cfg = load_config()
    history = load_history(history_dir, cfg.symbols).filter(pl.col("date") >= date(2012, 1, 1))
    expected = run_backtest(cfg, history).as_published("replay")  # the workers run with --origin replay
    groups = list(daily_ticks(history, cfg.settings.session_timezone))
    half = len(groups) // 2
    mid_ts = groups[half - 1][1][0].ts_ms

    split, got = _two_workers(cfg, groups, half, expected, mid_ts, tmp_path)
    assert split[0] and split[1], f"the shards were not split: {split}"
    ids = [e["event_id"] for e in got]
    repeated = len(ids) - len(set(ids))
    assert repeated == 0, f"{repeated} events were emitted twice"
    by_id = {e["event_id"]: e for e in got}
    assert [by_id.get(e["event_id"]) for e in expected] == expected
    assert len(got) == len(expected)


def _two_workers(cfg, groups, half, expected, mid_ts, tmp_path):
    with EmbeddedBroker() as broker:
        ensure_topics(broker, cfg.settings.partitions)
        # Both engines start at the same instant, as `docker compose up --scale engine=2` starts
        # them: whichever the coordinator makes the follower must still get its shards (see
        # streams/faust_consumer.py, _rejoin_on_invalid_sync, for the embedded broker's part).
        a, b = Worker(broker.url, tmp_path), Worker(broker.url, tmp_path)
        try:
            _wait(lambda: a.shards() and b.shards() and not (a.shards() & b.shards())
                  and len(a.shards() | b.shards()) == cfg.settings.partitions, 90, "both engines to own shards", a, b)
            split = (a.shards(), b.shards())
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=(3, 0), linger_ms=5)

            def send(part):
                for _, ticks in part:
                    producer.send(T.TICKS, key=b"history", value=encode_ticks(ticks))
                producer.flush()

            send(groups[:half])
            first = [e for e in expected if e["ts_ms"] <= mid_ts]
            _wait(lambda: len(_events(broker.bootstrap)) >= len(first), 120, "the first half's events")
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait(timeout=10)
            send(groups[half:])
            _wait(lambda: b.shards() == set(range(cfg.settings.partitions)), 90, "the survivor to take every shard", a, b)
            _wait(lambda: len({e["event_id"] for e in _events(broker.bootstrap)}) >= len(expected), 180,
                  f"every expected event ({len(expected)})", a, b)
            # Once the group has committed every ticks and shard record, everything was handled:
            # an event sent twice would be on the topic by then.
            _wait(lambda: _all_committed(broker.bootstrap, cfg.settings.partitions), 120, "every record committed")
            got = _events(broker.bootstrap)
        finally:
            for w in (a, b):
                if w is not None and w.proc.poll() is None:
                    w.proc.send_signal(signal.SIGTERM)
                    try:
                        w.proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        w.proc.kill()
                        w.proc.wait()
    return split, got
