"""The engine's faust wiring: ticks -> (route) -> shard topic -> (evaluate) -> events.

    ticks ──route──► ratiowatch-ticks-by-shard ──evaluate──► events, scenario-status
      │              (+ each partition's progress)   (state table: scenario-state)
      └─► ticks.dlq (malformed, unknown symbol, too late)

- agents/route.py: the route stage (parse, re-key to shards, event-time progress);
- agents/evaluate.py: the evaluate stage (event-time gate, engine, events);
- agents/watermark.py: which waiting ticks a shard may apply (pure);
- agents/checkpoint.py: the commit order and the stored form of the state;
- agents/status_pacer.py: when a scenario's status goes to ``scenario-status`` (pure).

Why this module is long (~370 lines): it is the one place where the stages meet faust (topics,
table, timers, rebalance signals, the commit hooks) and where a live scenario change reaches every
owned shard under its lock; the logic it wires lives in the modules above.

Both stages take a fetched batch of records at a time from faust's consumer
(``RatiowatchApp.consume_batches``, streams/faust_consumer.py): faust's one-event-per-record
streams cost more than the whole work on a tick. Network I/O to people never happens here: the
notify role consumes ``events``, so a slow channel cannot hold up crossings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from dataclasses import replace
from typing import Any, Callable

import faust
import orjson
from faust.sensors import Sensor
from faust.types import TP

from ratiowatch.model import Config, Scenario
from ratiowatch.model.changes import ScenarioChanges, diff
from ratiowatch.streams.topics import EVENTS, SCENARIO_STATUS, SHARD_TICKS, STATE_TABLE, TICKS, TICKS_DLQ
from ratiowatch.streams.events_readback import events_on_topic
from ratiowatch.streams.faust_consumer import fetch_position
from ratiowatch.streams.kafka_settings import KafkaSecurity
from ratiowatch.streams.origin import LIVE
from ratiowatch.streams.ticks import Rejected, dlq_record

from .checkpoint import Checkpoint
from .engine import ScenarioEngine, ScenarioState
from .evaluate import Evaluator, ShardState
from .route import Router
from .shards import ShardMap, shard_of
from .status_pacer import StatusPacer

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

STATUS_TIMER_S = 0.25


def _now_ms() -> int:
    return int(time.time() * 1000)


def _exit_now(exc: BaseException) -> None:
    log.critical("a write to Kafka failed for good (%s: %s): stopping this worker at once so that it "
                 "resumes from its last durable state", type(exc).__name__, exc)
    logging.shutdown()
    os._exit(70)  # not sys.exit(): faust would go on committing offsets on its way out


class _StopOnLostWrite(Sensor):
    """faust only logs a send the producer gave up on (a non-retriable error such as code 13, which
    aiokafka 0.14 does not retry; a delivery timeout) and goes on. Here that would drop a routed
    tick, an event or a state write silently while this worker's memory runs ahead of the topics.
    So the worker stops before its consumer can commit past the lost write; restarted (compose's
    restart policy), it resumes from the changelog and the committed offsets."""

    def __init__(self, pipeline: "Pipeline") -> None:
        super().__init__()
        self.pipeline = pipeline

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        self.pipeline.on_lost_write(exc)


class Pipeline:
    """Registers the engine's stages on ``app`` for ``config``."""

    def __init__(self, app: faust.App, config: Config, *, shards: int, bootstrap: str,
                 security: KafkaSecurity | None = None, seed: dict[str, ScenarioState] | None = None,
                 status_every_s: float = 1.0, origin: str = LIVE) -> None:
        if not hasattr(app, "consume_batches"):
            raise TypeError("Pipeline needs an app from ratiowatch.streams.app.create_app (batch delivery)")
        self.app = app
        self.config = config
        self.shards = shards
        self.bootstrap = bootstrap
        self.security = security
        self.origin = origin  # what every event and status says its ticks were (streams/origin.py)
        self.map = ShardMap(config.scenarios, shards)
        self.by_id = {sc.id: sc for sc in config.scenarios}
        # scenario id -> why its state started again (a live change of its rules), for its status
        self.restarts: dict[str, dict[str, Any]] = {}
        self.counters: Counter[str] = Counter()
        self.on_lost_write: Callable[[BaseException], None] = _exit_now  # tests may replace it
        self._owned: dict[int, ShardState] = {}
        self._on_topic: asyncio.Future[dict[str, list[tuple[int, str]]]] | None = None  # see _load_emitted
        # Whether faust has recovered the table for the current assignment. Its own flag
        # (recovery.completed) stays set from the first recovery on, so a shard loaded from the
        # table during a later one would start from a half-read changelog: see _status_timer.
        self._recovered = False
        self.pacer = StatusPacer(status_every_s)

        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        self.ticks_topic = app.topic(TICKS, key_type=bytes, value_type=bytes, partitions=shards, **raw)
        self.shard_topic = app.topic(SHARD_TICKS, key_type=bytes, value_type=bytes, partitions=shards, **raw)
        self.dlq_topic = app.topic(TICKS_DLQ, partitions=1, **raw)
        self.events_topic = app.topic(EVENTS, partitions=shards, **raw)
        self.table = app.Table(STATE_TABLE, partitions=shards, key_type=bytes, value_type=bytes,
                               help="scenario id -> state; ~shard/N -> the shard's offsets and waiting ticks")

        self.router = Router(self.map, signed=config.settings.signed_symbols,
                             lateness_ms=int(config.settings.allowed_lateness_s * 1000),
                             send_shard=lambda n, v: self._send(SHARD_TICKS, b"%d" % n, v, n),
                             dead_letter=self._dead_letter, positions=self._ticks_positions,
                             now=time.monotonic, counters=self.counters, origin=origin)
        self.evaluator = Evaluator(config, self.map.scenarios, sources=shards, emit=self._emit,
                                   dead_letter=lambda rej, partition, shard: self._dead_letter(
                                       rej, partition, None, judged_by=f"shard {shard}"),
                                   now=time.monotonic, counters=self.counters, on_applied=self._on_applied)
        self.checkpoint = Checkpoint(self.table, self._put, self._flush, counters=self.counters, seed=seed,
                                     shard_of=lambda sid: shard_of(sid, shards))

        app.consume_batches(self.ticks_topic, self.router.handle)
        app.consume_batches(self.shard_topic, self._evaluate)
        app.after_fetch_round.append(self.router.after_round)
        app.before_commit.append(lambda: self.checkpoint.before_commit(self._owned_list))
        app.commit_due = self.checkpoint.commit_due
        app.commit_cap = self._commit_cap
        # A caught-up partition stops holding a tick grace_ms after it arrived (agents/watermark.py);
        # the tick then waits for the next record to arrive or this timer's next run, so it runs
        # every 5 ms (a check of a few µs per shard with waiting ticks), not every grace_ms / 2 (up
        # to 25 ms more when nothing else arrives, as after a feed's last ticks before a pause).
        idle_s = config.settings.grace_ms / 1000.0
        app.timer(max(min(idle_s / 2, 0.005), 0.002), name="ratiowatch.release")(
            lambda: self.evaluator.release_idle(self._owned_list()))
        app.timer(1.0, name="ratiowatch.write")(self._write_timer)
        app.timer(STATUS_TIMER_S, name="ratiowatch.status")(self._status_timer)
        app.on_before_shutdown.connect(self._on_shutdown)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_rebalance_complete.connect(self._on_recovered)
        app.sensors.add(_StopOnLostWrite(self))

    # --- I/O the stages use -------------------------------------------------------------------

    async def _send(self, topic: str, key: bytes, value: bytes, partition: int | None) -> None:
        # Straight to the producer: faust's Topic.send builds a FutureMessage, a PendingMessage and
        # sensor callbacks around each record (~40 µs); these records need none of it. A failed
        # delivery still stops the worker, as the sensor does for faust's sends.
        fut = await self.app.producer.send(topic, key, value, partition, None, None)
        fut.add_done_callback(self._check_delivery)

    def _check_delivery(self, fut: Any) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self.on_lost_write(fut.exception())

    async def _emit(self, ev: dict[str, Any]) -> None:
        ev["origin"] = self.origin
        await self._send(EVENTS, ev["scenario"].encode(), orjson.dumps(ev), None)

    async def _dead_letter(self, rej: Rejected, partition: int | None, offset: int | None,
                           judged_by: str = "") -> None:
        self.counters["dead_lettered"] += 1
        self.counters["dlq." + rej.reason] += 1
        record = dlq_record(rej, source=TICKS, at_ms=_now_ms(), partition=partition, offset=offset,
                            judged_by=judged_by)
        await self._send(TICKS_DLQ, rej.reason.encode(), record, 0)

    async def _put(self, partition: int, key: bytes, raw: bytes | None) -> int:
        # Written with the shard's partition explicitly: the table is co-partitioned with the shard
        # topic, and this also runs from timers, outside any stream event. Sent (awaited) rather
        # than through the table's synchronous buffer, so a burst of state writes applies
        # back-pressure here instead of overflowing faust's buffer. The table keeps a right-sized
        # copy: orjson's output holds on to its ~4 KB working buffer.
        if raw is None:  # a tombstone: the state is deleted (Checkpoint.forget)
            self.table.data.pop(key, None)
        else:
            self.table.data[key] = memoryview(raw).tobytes()
        await self._send(self.table.changelog_topic.get_topic_name(), key, raw, partition)
        return len(raw or b"") + len(key)

    async def _flush(self) -> None:
        await self.app.producer.flush()

    def _shard_input_behind(self, n: int) -> bool:
        """Whether records of shard ``n``'s partition wait on the topic past what the consumer has
        handed out (as its last fetch knew the end)."""
        position, end = fetch_position(self.app.consumer, TP(SHARD_TICKS, n))
        return position is not None and end is not None and position < end

    def _ticks_positions(self) -> dict[int, tuple[int | None, int | None]]:
        consumer = self.app.consumer
        return {tp.partition: fetch_position(consumer, tp) for tp in consumer.assignment() if tp.topic == TICKS}

    # --- live scenario changes ------------------------------------------------------------------

    async def set_scenarios(self, scenarios: tuple[Scenario, ...], seeds: dict[str, ScenarioState] | None = None,
                            why: str = "") -> ScenarioChanges:
        """Evaluate ``scenarios`` from now on, without a restart (model/changes.py says what each
        change does to state). ``seeds``: warm-start states for added and restarted scenarios
        (from history), else they start cold. The other scenarios' state is untouched."""
        changes = diff(self.by_id, {sc.id: sc for sc in scenarios})
        if not changes:
            return changes
        seeds = seeds or {}
        self.by_id = {sc.id: sc for sc in scenarios}
        self.config = replace(self.config, scenarios=tuple(scenarios))
        self.map = ShardMap(scenarios, self.shards)
        self.router.set_map(self.map)
        self.evaluator.scenarios = self.map.scenarios
        self.checkpoint.seed.update(seeds)  # shards loaded later start these from history too
        restart = {sc.id for sc in changes.restarted}
        for sid in restart:
            if sid not in seeds:
                self.checkpoint.seed.pop(sid, None)  # a seed made under the old rules
            self.restarts[sid] = {"at_ms": _now_ms(), "why": why or "its rules changed",
                                  "from": "history" if sid in seeds else "cold"}
        for n, sh in list(self._owned.items()):
            async with sh.lock:
                sh.engine.set_scenarios(self.map.scenarios[n])
                sh.engine.set_track_records(self.evaluator.track_records)
                for sid in [*changes.removed, *restart]:
                    if sid in sh.states or sid in sh.last_written:
                        self.checkpoint.forget(sh, sid)
                for sc in (*changes.added, *changes.restarted):
                    if sc.id in seeds and sc.id in sh.engine.engines:
                        seed, keep = seeds[sc.id], sh.engine.engines[sc.id].keep
                        sh.states[sc.id] = st = ScenarioState.from_parts(seed.live_dict(), seed.history_dict(), keep)
                        st.history_changed = True  # both parts written with the next checkpoint
                        sh.dirty.add(sc.id)
            self.pacer.touched(n, [sc.id for sc in (*changes.added, *changes.changed) if shard_of(sc.id, self.shards) == n])
        for sid in changes.removed:
            self.restarts.pop(sid, None)
            if self._owns(shard_of(sid, self.shards)):
                # The page drops the card: a tombstone on the compacted status topic.
                await self._send(SCENARIO_STATUS, sid.encode(), None, None)
        log.info("scenarios changed: %s", changes.summary())
        return changes

    def _owns(self, n: int) -> bool:
        return n in self._owned or self._assigned(n)

    # --- shards -------------------------------------------------------------------------------

    def _commit_cap(self, tp: Any) -> int | None:
        """The offset a shard-topic partition may be committed up to: its oldest record with a
        tick still waiting for the watermark (they are read again after a restart)."""
        if tp.topic != SHARD_TICKS:
            return None
        sh = self._owned.get(tp.partition)
        return sh.gate.oldest_record() if sh is not None else None

    def _owned_list(self) -> list[ShardState]:
        return list(self._owned.values())

    def _shard(self, n: int) -> ShardState:
        sh = self._owned.get(n)
        if sh is None:
            sh = self._owned[n] = self.evaluator.new_shard(n)
            self.checkpoint.load(sh)
            for sid in self.checkpoint.restarted:
                self.restarts[sid] = {"at_ms": _now_ms(), "why": "its rules changed while no engine had it",
                                      "from": "history" if sid in self.checkpoint.seed else "cold"}
            self.checkpoint.restarted.clear()
        return sh

    async def _evaluate(self, batches: list[tuple[int, list[Any], int | None]]) -> None:
        for n, records, _ in batches:
            sh = self._shard(n)
            async with sh.lock:
                if sh.emitted is None:
                    await self._load_emitted(sh)
                await self.evaluator.handle(sh, records, behind=self._shard_input_behind(n))

    async def _load_emitted(self, sh: ShardState) -> None:
        """The events of the shard's scenarios that are on the topic and that ticks re-applied
        after a restart could produce again: a worker killed after sending events and before its
        state write re-applies those ticks. Their event time is at least the written frontier
        minus the allowed lateness (older ticks are dead-lettered as late), so those are the ones
        kept. The topic is read once per assignment, by the first shard that needs it; events are
        crossings, few enough to read whole."""
        if self._on_topic is None:
            self._on_topic = asyncio.ensure_future(self._read_events())
        by_scenario = await asyncio.shield(self._on_topic)
        frontier = sh.gate.frontier
        since = frontier - sh.gate.lateness_ms if frontier >= 0 else -1
        sh.emitted = {eid for sid in sh.engine.engines for ts, eid in by_scenario.get(sid, ()) if ts >= since}

    async def _read_events(self) -> dict[str, list[tuple[int, str]]]:
        return await events_on_topic(self.bootstrap, self.security, self.shards, f"{self.app.conf.id}-events-reader")

    def _on_applied(self, n: int, touched: set[str], events: list[dict[str, Any]]) -> None:
        self.pacer.touched(n, touched)
        for ev in events:
            self.pacer.crossed(n, ev["scenario"])

    async def _on_assigned(self, sender: Any, assigned: set[Any], **_: Any) -> None:
        self._recovered = False
        shards = sorted(tp.partition for tp in assigned if tp.topic == SHARD_TICKS)
        log.info("this worker owns shards %s of %d", ",".join(map(str, shards)) or "none", self.shards)
        if shards and self._on_topic is None:
            # Read `events` back while faust recovers the tables, rather than holding up the
            # first ticks for it (~0.5 s): see _load_emitted.
            self._on_topic = asyncio.ensure_future(self._read_events())
        for n in shards:  # the page shows every scenario an engine owns, ticked or not
            self.pacer.touched(n, [sc.id for sc in self.map.scenarios[n]])

    async def _on_recovered(self, sender: Any, **_: Any) -> None:
        # Sent by faust once the table holds what the changelog had for the assigned partitions.
        self._recovered = True

    async def _on_revoked(self, sender: Any, revoked: set[Any], **_: Any) -> None:
        self._recovered = False
        # Another worker takes these shards over from the changelog: write what is not written
        # yet (faust has usually just done so through its commit), then forget our copy.
        self._on_topic = None  # shards taken over later must see what was sent until then
        self.router.forget({tp.partition for tp in revoked if tp.topic == TICKS})
        gone = {tp.partition for tp in revoked if tp.topic == SHARD_TICKS and tp.partition in self._owned}
        self.pacer.forget(gone)
        wrote = False
        for n in gone:
            sh = self._owned[n]
            async with sh.lock:
                wrote = await self.checkpoint.write_shard(sh) or wrote
                self._owned.pop(n, None)
        if wrote:
            await self.app.producer.flush()

    async def _on_shutdown(self, sender: Any, **_: Any) -> None:
        await self.checkpoint.write(self._owned_list())  # faust flushes the producer right after

    async def _write_timer(self) -> None:
        if self.checkpoint.write_due():
            await self.checkpoint.write(self._owned_list(), owned=lambda n: n in self._owned)

    async def _status_timer(self) -> None:
        # A shard's state may only be loaded once the table has recovered it from the changelog
        # (records reach _evaluate only after that; this timer runs regardless).
        if not self._recovered or self.app.in_recovery:
            return
        for n, sid in self.pacer.due(time.monotonic()):
            if n in self._owned or self._assigned(n):
                sh = self._shard(n)
                e = sh.engine.engines.get(sid)
                if e is None:
                    continue  # removed since it was due
                st = sh.states.get(sid) or e.new_state()
                # The page shows every time in the scenarios' session zone, and the data's age
                # from updated_ms (the event time of simulated or replayed ticks is not now).
                status = {**e.status(st), "origin": self.origin, "tz": self.config.settings.session_timezone,
                          "updated_ms": _now_ms(), "scenario_version": e.scenario.version,
                          "restarted": self.restarts.get(sid)}
                await self._send(SCENARIO_STATUS, sid.encode(), orjson.dumps(status), None)
                self.counters["statuses_sent"] += 1

    def _assigned(self, n: int) -> bool:
        return any(tp.topic == SHARD_TICKS and tp.partition == n for tp in self.app.consumer.assignment())

    # --- queries ------------------------------------------------------------------------------

    def idle(self) -> bool:
        """Every tick routed so far has been applied (nothing in flight inside the pipeline)."""
        c = self.counters
        return c["shard_copies_in"] >= c["shard_copies_sent"] and not any(sh.gate.pending for sh in self._owned.values())

    def engine_for(self, scenario_id: str) -> tuple[ScenarioEngine, ScenarioState | None]:
        for sh in self._owned.values():
            if scenario_id in sh.engine.engines:
                return sh.engine.engines[scenario_id], sh.states.get(scenario_id)
        raise KeyError(scenario_id)
