"""The ``engine`` role: route and evaluate (agents/pipeline.py) in the consumer group that owns the
scenario state. It reads ``ticks`` and writes ``events``, ``scenario-status``, ``ticks.dlq`` and
the ``scenario-state`` changelog; nothing else talks to it.

``ratiowatch engine`` runs it alone; ``ratiowatch run``, ``replay``, the chaos run, the bench and
the tests build the same :class:`EngineRole`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

from ratiowatch.agents.pipeline import Pipeline
from ratiowatch.agents.warmstart import seed_states
from ratiowatch.model import Config, Scenario
from ratiowatch.model.changes import ScenarioChanges, diff
from ratiowatch.ops.faust_sensors import install_faust_monitor
from ratiowatch.ops.health import Health
from ratiowatch.ops.metrics import Metrics
from ratiowatch.roles.scenarios import ScenarioFollower
from ratiowatch.roles.startup_watch import StartupBounds, start_watched, watch_startup
from ratiowatch.streams.topics import APP_ID, SCENARIOS, SHARD_TICKS
from ratiowatch.streams.app import create_app, ensure_topics, ensure_topics_exist
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.clients import kafka_python_kwargs_for
from ratiowatch.streams.kafka_settings import faust_app_kwargs, load_kafka_security
from ratiowatch.streams.member_state import coordination_error, crash_reason, member_state
from ratiowatch.streams.origin import LIVE
from ratiowatch.track_record import track_records_from_history

__all__ = ["EngineRole"]

log = logging.getLogger(__name__)

SYNC_S = 0.5


class EngineRole:
    """One engine worker. ``broker_url`` None starts an embedded broker in this process (tests,
    replay); ``metrics`` and ``health`` are the process's (see ratiowatch/ops/)."""

    def __init__(self, config: Config, *, broker_url: str | None = None, partitions: int | None = None,
                 app_id: str = APP_ID, datadir: str | None = None, app_settings: dict[str, Any] | None = None,
                 seed: dict[str, Any] | None = None, history_dir: str | None = None,
                 metrics: Metrics | None = None, health: Health | None = None, origin: str = LIVE,
                 follow_scenarios: bool = False) -> None:
        # Following the `scenarios` topic, the scenarios in force are the topic's, read at start
        # and changed live; the file gives only the settings. Otherwise (replay, the bench, the
        # chaos run, tests) they are the file's, for the whole run.
        if follow_scenarios:
            config = replace(config, scenarios=())
        self.config = config
        self.history_dir = history_dir
        self.partitions = partitions or config.settings.partitions
        self.embedded: EmbeddedBroker | None = None
        if broker_url is None:
            self.embedded = EmbeddedBroker()
            broker_url = self.embedded.url
        self.broker_url = broker_url
        self.bootstrap = broker_url.removeprefix("kafka://")
        self.app_id = app_id
        extra = dict(app_settings or {})
        self.security = None
        if self.embedded is not None:
            ensure_topics(self.embedded, self.partitions, app_id)
            self.client_kwargs: dict[str, Any] = kafka_python_kwargs_for()
        else:
            # A real cluster may need TLS/SASL: from env only, never from the scenario file.
            self.security = load_kafka_security()
            self.client_kwargs = kafka_python_kwargs_for(self.security)
            ensure_topics_exist(self.bootstrap, self.partitions, app_id, **self.client_kwargs)
            extra = {**faust_app_kwargs(self.security), **extra}
        self.app = create_app(broker_url, partitions=self.partitions, app_id=app_id, datadir=datadir, **extra)
        self.startup = StartupBounds()  # how long start() waits for partitions and their state
        self.warm_started: str | None = None  # what the warm start did, for the console
        if history_dir is not None and seed is None and config.scenarios:
            seed, self.warm_started = warm_start(config, history_dir)
        self.pipeline = Pipeline(self.app, config, shards=self.partitions, bootstrap=self.bootstrap,
                                 security=self.security, seed=seed, origin=origin)
        if history_dir is not None and config.scenarios:
            # What each trigger did over the history, for the status cards: at start, never per tick.
            self.pipeline.evaluator.track_records = track_records_from_history(config, history_dir)
        self.metrics = metrics if metrics is not None else Metrics()
        self.health = health if health is not None else Health()
        self.metrics.add_role("engine")
        monitor = install_faust_monitor(self.app, self.metrics)
        self.metrics.add_lag_source(app_id, monitor.consumer_lag)
        self.sync_metrics = _CounterSync(self.pipeline, self.metrics)
        self.app.timer(SYNC_S, name="ratiowatch.metrics")(self._sync)
        self.pipeline.evaluator.on_latency = self.metrics.tick_to_event.observe
        self.health.add_ready_check("engine", lambda: monitor.readiness() or self._partitions_check())
        self.follower: ScenarioFollower | None = None
        if follow_scenarios:
            self.follower = ScenarioFollower(bootstrap=self.bootstrap, role="engine", sec=self.security,
                                             on_scenarios=self._scenarios_changed, on_bad_record=self._bad_scenario)
        self._wanted: tuple[Scenario, ...] | None = None
        self._applying: asyncio.Future[None] | None = None

    # --- the scenarios topic ----------------------------------------------------------------------

    def _bad_scenario(self, why: str) -> None:
        self.metrics.bad_records.labels(role="engine", topic=SCENARIOS).inc()

    def _scenarios_changed(self, scenarios: tuple[Scenario, ...]) -> None:
        # Called by the follower after each batch of records; applied one set at a time, the
        # newest wins (a burst of records costs one warm start, not one per record).
        self._wanted = scenarios
        if self._applying is None or self._applying.done():
            self._applying = asyncio.ensure_future(self._apply_wanted())

    async def _apply_wanted(self) -> None:
        while self._wanted is not None:
            scenarios, self._wanted = self._wanted, None
            await self.apply_scenarios(scenarios)

    async def apply_scenarios(self, scenarios: tuple[Scenario, ...]) -> ScenarioChanges:
        """Evaluate ``scenarios`` from now on: added and restarted ones warm-started from the
        history folder when there is one (in a thread: the event loop keeps serving ticks)."""
        pipeline = self.pipeline
        changes = diff(pipeline.by_id, {sc.id: sc for sc in scenarios})
        if not changes:
            return changes
        fresh = (*changes.added, *changes.restarted)
        seeds: dict[str, Any] = {}
        if self.history_dir is not None and fresh:
            sub = replace(self.config, scenarios=fresh)
            t0 = time.monotonic()
            seeds, records, last_date = await asyncio.get_running_loop().run_in_executor(
                None, _from_history, sub, self.history_dir)
            if self.warm_started is None:
                self.warm_started = (f"warm start: {len(seeds)} scenarios seeded from {self.history_dir} through "
                                     f"{last_date} ({time.monotonic() - t0:.1f}s)")
            tracks = {k: v for k, v in (pipeline.evaluator.track_records or {}).items() if k not in changes.removed}
            pipeline.evaluator.track_records = {**tracks, **records}
        self.config = replace(self.config, scenarios=tuple(scenarios))
        done = await pipeline.set_scenarios(tuple(scenarios), seeds)
        for line in done.lines() if pipeline.counters["ticks_in"] else []:  # at start, the summary says enough
            log.info("engine: %s", line)
        log.info("engine: scenarios from %s: %s%s", SCENARIOS, done.summary(),
                 f" ({len(seeds)} warm-started from {self.history_dir})" if seeds else "")
        return done

    def _partitions_check(self) -> str | None:
        consumer = self.app.consumer
        if not any(tp.topic == SHARD_TICKS for tp in consumer.assignment()):
            return "no shard partitions assigned to this engine"
        if not self.app.tables.recovery.completed.is_set():
            return "state recovery in progress"
        return None

    async def start(self) -> None:
        if self.follower is not None:
            # Every scenario in force before the first tick: none is evaluated late or missed.
            await self.follower.start()
            if not self.follower.by_id:
                log.warning("engine: no scenarios on topic %s: nothing is evaluated until some are applied "
                            "(ratiowatch scenarios apply FILE --broker ...)", SCENARIOS)
            await self.apply_scenarios(self.follower.scenarios)
        try:
            # faust starts agents before partitions are assigned; wait until this worker owns its shards.
            await start_watched(self.app.start(), self.wait_assigned())
        except BaseException:
            # Stopped here, whoever started it: a faust app left running keeps its consumer thread
            # (not a daemon) alive, and the process would hang at exit instead of being restarted.
            await self.app.stop()
            raise

    async def wait_assigned(self, timeout: float | None = None) -> None:
        """Until this worker owns shard partitions and has recovered their state, within
        ``self.startup`` (or ``timeout`` for the assignment); StartupFailed says which did not happen."""
        bounds = self.startup if timeout is None else replace(self.startup, assign_s=timeout)
        await watch_startup(lambda: member_state(self.app), bounds, group=f"{self.app_id!r} at {self.bootstrap}")

    def coordination_error(self) -> str | None:
        """Why this member stopped being able to work for good: its app crashed, or its group
        coordination stopped (see streams/member_state.py)."""
        return crash_reason(self.app) or coordination_error(self.app)

    async def _sync(self) -> None:
        self.sync_metrics()

    async def stop(self) -> None:
        try:
            if self.follower is not None:
                await self.follower.stop()
            if self._applying is not None:
                self._applying.cancel()
                await asyncio.gather(self._applying, return_exceptions=True)
            await self.app.stop()
        finally:
            self.sync_metrics()
            self.metrics.remove_lag_source(self.app_id)
            if self.embedded is not None:
                self.embedded.stop()
                self.embedded = None


def warm_start(config: Config, history_dir: str) -> tuple[dict[str, Any], str]:
    """Every scenario's windows and armed flags from the history, so a 3-month trigger is live
    from the first tick (used for scenarios the changelog has no state for); and a line saying so."""
    t0 = time.monotonic()
    seed, _, last_date = seed_states(config, history_dir)
    said = (f"warm start: {len(seed)} scenarios seeded from {history_dir} through {last_date} "
            f"({time.monotonic() - t0:.1f}s)")
    log.info(said)
    return seed, said


def _from_history(config: Config, history_dir: str) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Warm-start states, track records and the last date of ``config``'s scenarios (in a thread)."""
    seed, _, last_date = seed_states(config, history_dir)
    return seed, track_records_from_history(config, history_dir), last_date


class _CounterSync:
    """Copies the pipeline's counters into the Prometheus metrics (every SYNC_S, and at stop). The
    hot path keeps plain integer counters: a prometheus_client increment per tick would cost more
    than routing it."""

    def __init__(self, pipeline: Pipeline, metrics: Metrics) -> None:
        self.c = pipeline.counters
        self.m = metrics
        self.seen: dict[str, int] = {}

    def __call__(self) -> None:
        for name, value in list(self.c.items()):
            delta = value - self.seen.get(name, 0)
            if delta <= 0:
                continue
            self.seen[name] = value
            if name == "ticks_in":
                self.m.ticks_in.inc(delta)
            elif name == "shard_ticks_applied":
                self.m.ticks_applied.inc(delta)
            elif name.startswith("dlq."):
                self.m.dead_lettered.labels(reason=name[4:]).inc(delta)
            elif name.startswith("events."):
                self.m.events.labels(kind=name[7:]).inc(delta)
