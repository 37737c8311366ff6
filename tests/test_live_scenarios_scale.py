"""Scale, measured: many scenarios applied in one file to a running engine (its own process) while
it works through a backlog of ticks. Prints the figures; asserts only that every scenario ends up
evaluating and that no tick is lost, never a time.

- **time until all are evaluating**: from the start of ``ratiowatch scenarios apply`` until every
  applied scenario has a status on ``scenario-status`` (the engine publishes one for each scenario
  it has taken), until a web role's page has every card with its status, and until every one has
  been evaluated on a tick (the status has an event time);
- **throughput while they are applied**: the engine's ``ratiowatch_ticks_in_total`` per second
  before the apply, from the apply until all are evaluating, and after.

CI size: 100 scenarios. Full size (the figure in docs and reports):

    RATIOWATCH_SCALE_SCENARIOS=1000 .venv/bin/pytest -q -s -p no:cacheprovider tests/test_live_scenarios_scale.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import timedelta

import orjson
import polars as pl
import pytest
import yaml
from kafka import KafkaConsumer, TopicPartition

from live_cluster import RW, Role, TickSender, until
from ratiowatch.config import default_config_path, load_config
from ratiowatch.streams.topics import SCENARIO_STATUS
from ratiowatch.streams.clients import kafka_python_kwargs_for
from ratiowatch.streams.history import load_history

pytestmark = [pytest.mark.broker, pytest.mark.slow]

SIZE = int(os.environ.get("RATIOWATCH_SCALE_SCENARIOS", "100"))
COPIES = 2 + SIZE // 200  # of the history in the backlog: it must outlast the apply
# The symbols of the shipped scenarios: applied first, they keep every tick of the backlog in use
# (a tick of a symbol no scenario uses is dead-lettered, which costs nothing to speak of).
LEVELS = ["SPY", "QQQ", "IWM", "XLK", "XLU", "HYG", "DXY", "KRE", "XLF"]
RATIOS = ["IWM/SPY", "QQQ/SPY", "XLK/XLU", "KRE/XLF", "RSP/SPY", "XLI/SPY", "XBI/SPY"]


def many(n: int) -> list[dict]:
    """``n`` scenarios over the history's symbols, of every kind of rule the engine keeps state for:
    levels, ratio changes over a lookback, against a moving average, and streaks."""
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            trigger = {"series": LEVELS[i % len(LEVELS)], "above": 50 + i % 400}
        elif kind == 1:
            trigger = {"series": RATIOS[i % len(RATIOS)], "lookback": 21 + i % 200, "above": 0.01 + (i % 50) / 1000}
        elif kind == 2:
            trigger = {"series": RATIOS[i % len(RATIOS)], "ma": 20 + i % 180, "above": 0, "rearm": -0.02}
        else:
            trigger = {"series": RATIOS[i % len(RATIOS)], "streak": True, "above": 3 + i % 5, "rearm": 0}
        out.append({"id": f"scale-{i:04d}", "title": f"Scale scenario {i}", "trigger": trigger, "notify": []})
    return out


class StatusWatch:
    """Follows ``scenario-status`` from its beginning: when each scenario first had a status, and
    when it first had one with an event time (it was evaluated on a tick)."""

    def __init__(self, bootstrap: str) -> None:
        self.c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                               **kafka_python_kwargs_for())
        parts = self.c.partitions_for_topic(SCENARIO_STATUS)
        self.c.assign([TopicPartition(SCENARIO_STATUS, p) for p in sorted(parts)])
        self.c.seek_to_beginning()
        self.seen: dict[str, float] = {}
        self.evaluated: dict[str, float] = {}

    def poll(self) -> None:
        for records in self.c.poll(timeout_ms=100, max_records=20000).values():
            now = time.monotonic()
            for r in records:
                if r.key is None or r.value is None:
                    continue
                sid = r.key.decode()
                self.seen.setdefault(sid, now)
                if orjson.loads(r.value).get("ts_ms") is not None:
                    self.evaluated.setdefault(sid, now)

    def close(self) -> None:
        self.c.close()


def test_many_scenarios_applied_to_a_running_engine(kafka_broker, history_dir, tmp_path):
    url, bootstrap = kafka_broker.url, kafka_broker.bootstrap
    env = {**os.environ, "RATIOWATCH_DATADIR": str(tmp_path / "data")}
    shipped = load_config(require_channels=False)
    big = tmp_path / "many.yaml"
    big.write_text(yaml.safe_dump({"scenarios": many(SIZE)}, sort_keys=False))
    cfg = load_config(big, require_channels=False, check_channels="if_defined")
    assert set(cfg.symbols) <= set(shipped.symbols)
    ids = {s.id for s in cfg.scenarios}
    history = load_history(history_dir, shipped.symbols, shipped.settings.signed_symbols)

    p = subprocess.run(RW + ["scenarios", "apply", default_config_path(), "--broker", url], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    ticks = TickSender(bootstrap, history, shipped.settings.session_timezone)
    # A backlog the engine works through while the scenarios are applied and after: the history,
    # then again as many times as it takes to outlast the apply, each copy moved on in time by
    # whole weeks (the same weekdays) so that event time only goes forward.
    sent = 0
    weeks = ((history["date"].max() - history["date"].min()).days // 7 + 1) * 7
    for k in range(COPIES):
        ticks.history = history.with_columns(pl.col("date") + timedelta(days=k * weeks))
        sent += ticks.send(ticks.history["date"].min(), ticks.history["date"].max())
    engine = Role("engine", ["engine", "--broker", url, "--origin", "replay"], tmp_path, env)
    web = Role("web", ["web", "--broker", url], tmp_path, env)
    watch = StatusWatch(bootstrap)
    try:
        until(lambda: all(r.running() and r.get("/readyz")[0] == 200 for r in (engine, web)), "engine and web ready",
              120)
        ticks_in = lambda: engine.metric("ratiowatch_ticks_in_total")  # noqa: E731
        applied_in = lambda: engine.metric("ratiowatch_ticks_applied_total")  # noqa: E731
        until(lambda: ticks_in() > 0, "the first ticks read", 60)
        t_before, n_before, a_before = time.monotonic(), ticks_in(), applied_in()
        until(lambda: ticks_in() >= sent * 0.1, "a tenth of the backlog read", 120)
        t0, n0, a0 = time.monotonic(), ticks_in(), applied_in()
        before_rate, before_applied = (n0 - n_before) / (t0 - t_before), (a0 - a_before) / (t0 - t_before)

        apply = subprocess.Popen(RW + ["scenarios", "apply", str(big), "--broker", url], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
        applied = all_seen = all_evaluated = backlog_done = on_page = None
        next_page = 0.0
        n_at_done = None
        while all_evaluated is None:
            watch.poll()
            engine.running()
            now = time.monotonic()
            if applied is None and apply.poll() is not None:
                applied = now
            if backlog_done is None and ticks_in() >= sent:
                backlog_done, a_at_backlog = now, applied_in()
            if on_page is None and now >= next_page:  # the page's JSON, twice a second
                next_page = now + 0.5
                if ids <= {sid for sid, st in web.statuses().items() if not st.get("pending")}:
                    on_page = time.monotonic()
            if all_seen is None and ids <= watch.seen.keys():
                all_seen = now
            if ids <= watch.evaluated.keys():
                all_evaluated, n_at_done, a_at_done = now, ticks_in(), applied_in()
            assert now - t0 < 600, (f"{len(ids & watch.seen.keys())} of {len(ids)} with a status, "
                                    f"{len(ids & watch.evaluated.keys())} evaluated after 600 s")
            assert backlog_done is None or now - backlog_done < 30, (
                f"the backlog was read 30 s ago and {len(ids - watch.evaluated.keys())} scenarios were never "
                "evaluated: it ended before the apply took effect (raise COPIES)")
        out, err = apply.communicate(timeout=60)
        assert apply.returncode == 0 and f"applied: {SIZE} added" in out, out + err
        applied = applied or time.monotonic()
        # While applying: until all are evaluating, or until the backlog ran out if it did first.
        t1 = min(all_evaluated, backlog_done or all_evaluated)
        during_rate = ((n_at_done if backlog_done is None else sent) - n0) / (t1 - t0)
        during_applied = ((a_at_done if backlog_done is None else a_at_backlog) - a0) / (t1 - t0)
        until(lambda: ticks_in() == sent, lambda: f"every tick read: {ticks_in()} of {sent}", 600)
        t2, a2 = time.monotonic(), applied_in()
        # After: from all evaluating until the backlog is read (nothing to measure if it ran out first).
        after = (sent - n_at_done) / (t2 - all_evaluated) if backlog_done is None else float("nan")
        after_applied = (a2 - a_at_done) / (t2 - all_evaluated) if backlog_done is None else float("nan")
        if on_page is None:
            until(lambda: ids <= {sid for sid, st in web.statuses().items() if not st.get("pending")},
                  "every card on the page with its status", 60)
            on_page = time.monotonic()
        for r in (engine, web):
            assert r.stop(signal.SIGTERM) == 0, r.log.read_text()[-2000:]
    finally:
        ticks.close()
        watch.close()
        for r in (engine, web):
            r.stop(signal.SIGKILL)
    print(f"\n{SIZE} scenarios applied in one file to a running engine (1 process, on {len(shipped.scenarios)} "
          f"shipped ones, working through a backlog of {sent:,} ticks of {len(shipped.symbols)} symbols):")
    print(f"  scenarios apply (validate, diff, publish) exited: {applied - t0:.1f} s after it started")
    print(f"  every one with a status on {SCENARIO_STATUS}:     {all_seen - t0:.1f} s")
    print(f"  every card on the web role's page with a status: {on_page - t0:.1f} s")
    print(f"  every one evaluated on a tick:                   {all_evaluated - t0:.1f} s")
    ran_out = " (the backlog ran out before all were evaluating)" if backlog_done else ""
    print(f"  engine ticks read and routed /s: before {before_rate:,.0f}; while applying {during_rate:,.0f}"
          f"{ran_out}; after, with all {SIZE + len(shipped.scenarios)}, {after:,.0f}")
    print(f"  shard ticks applied /s (a tick once per shard using it): before {before_applied:,.0f}; "
          f"while applying {during_applied:,.0f}; after {after_applied:,.0f}")
