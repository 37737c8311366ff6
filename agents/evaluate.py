"""The evaluate stage: shard records -> event-time order -> engine -> ``events``.

Per shard, for what one fetch brought:
 1. skip the segments this shard already applied (source offsets kept in the shard's state);
 2. take each segment's progress report, and queue its ticks in the shard's event-time gate
    (agents/watermark.py); ticks past the allowed lateness go to ``ticks.dlq`` as ``late``;
 3. apply what the gate releases (everything older than the shard's watermark), in event-time
    groups, through the pure engine (agents/engine.py);
 4. send the events, except those a restarted shard finds already on the topic.
A timer (:meth:`Evaluator.release_idle`) does 3 and 4 when no record arrives: a partition going
quiet releases the ticks it was holding.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, Awaitable, Callable

from ratiowatch.model import Config, Scenario
from ratiowatch.streams.ticks import Rejected

from .engine import ScenarioState, ShardEngine
from ratiowatch.model.sessions import iso_utc
from .shards import decode_shard_record
from .watermark import EventTimeGate

__all__ = ["Evaluator", "ShardState", "SHARD_STATE_VERSION"]

SHARD_STATE_VERSION = 2


class ShardState:
    """In-memory state of one shard this worker owns; the table holds its durable copy."""

    __slots__ = ("n", "engine", "states", "applied", "gate", "lock", "emitted", "dirty", "deleted", "meta_dirty",
                 "written", "last_written", "waiting_since_ms", "handled", "input_behind")

    def __init__(self, n: int, engine: ShardEngine, gate: EventTimeGate) -> None:
        self.n = n
        self.engine = engine
        self.gate = gate
        self.states: dict[str, ScenarioState] = {}
        self.applied: dict[str, int] = {}     # ticks partition -> last offset admitted (str keys: JSON)
        self.lock = asyncio.Lock()
        self.dirty: set[str] = set()           # scenarios changed since their state was last written
        self.deleted: set[str] = set()         # scenarios whose stored state is to be deleted (tombstoned)
        self.meta_dirty = False                # offsets, waiting ticks or progress changed since then
        self.written = 0                       # changelog bytes this worker wrote for the shard
        self.last_written: dict[tuple[str, bool], int] = {}  # (scenario id, history?) -> ``written`` then
        self.emitted: set[str] | None = None   # ids already on ``events`` that re-applied ticks may repeat
        self.waiting_since_ms = 0              # when the oldest record with waiting ticks was produced
        self.handled = -1                      # the newest shard-topic offset this copy has handled
        self.input_behind = False              # records wait on the shard topic past those handed out

    def to_dict(self) -> dict[str, Any]:
        return {"v": SHARD_STATE_VERSION, "applied": self.applied, **self.gate.to_dict()}

    def restore(self, d: dict[str, Any]) -> None:
        if d.get("v") != SHARD_STATE_VERSION:
            raise ValueError(f"shard {self.n}: stored state version {d.get('v')!r} is not {SHARD_STATE_VERSION}")
        self.applied = dict(d["applied"])
        self.gate.restore(d)


Emit = Callable[[dict[str, Any]], Awaitable[None]]
DeadLetter = Callable[[Rejected, int, int], Awaitable[None]]  # (rejection, source partition, shard)


class Evaluator:
    """Applies shard records to the shards' states. ``emit(event)`` sends an event; ``on_applied
    (shard, touched scenario ids, events)`` hears of every application (status publishing)."""

    def __init__(self, config: Config, shards: dict[int, list[Scenario]], *, sources: int, emit: Emit,
                 dead_letter: DeadLetter, now: Callable[[], float], counters: Counter[str],
                 on_applied: Callable[[int, set[str], list[dict[str, Any]]], None] | None = None) -> None:
        self.config = config
        self.scenarios = shards
        self.sources = sources
        self.emit = emit
        self.dead_letter = dead_letter
        self.now = now
        self.counters = counters
        self.on_applied = on_applied
        self.track_records: dict[str, Any] | None = None  # scenario id -> its trigger's record (status)
        # wall seconds from a shard record's production (by the route stage) to an event it caused
        self.on_latency: Callable[[float], None] | None = None
        self.idle_ms = config.settings.grace_ms
        self.lateness_ms = int(config.settings.allowed_lateness_s * 1000)

    def new_shard(self, n: int) -> ShardState:
        engine = ShardEngine(self.scenarios[n], self.config.settings)
        engine.set_track_records(self.track_records)
        return ShardState(n, engine, EventTimeGate(self.sources, idle_ms=self.idle_ms, lateness_ms=self.lateness_ms))

    async def handle(self, sh: ShardState, records: list[Any], behind: bool = False) -> None:
        """Steps 1-4 for the records one fetch brought to shard ``sh`` (its lock held); ``behind``:
        more records of the shard's partition wait on the topic. Until they are read, the routers'
        caught-up words read so far are older than them (agents/watermark.py)."""
        now = self.now()
        sh.input_behind = behind
        gate, applied = sh.gate, sh.applied
        copies = skipped = 0
        changed = False  # anything the durable form keeps (heartbeats alone change nothing there)
        if not gate.pending and records:
            sh.waiting_since_ms = records[0].timestamp or 0
        for rec in records:
            if rec.offset <= sh.handled:
                continue  # handed over again (faust seeks back after a rebalance): in memory already
            sh.handled = rec.offset
            for p, o, ticks, progress, caught_up in decode_shard_record(rec.value):
                if ticks:
                    key = str(p)
                    copies += len(ticks)
                    if o <= applied.get(key, -1):
                        # Admitted before the state this shard was loaded from was written: the
                        # ticks that were still waiting then wait again, the others were applied.
                        skipped += len(ticks) - gate.readmit(ticks, rec.offset, now)
                    else:
                        applied[key] = o
                        changed = True
                        for t in gate.admit(ticks, rec.offset, now):
                            await self._late(sh, p, t)
                changed = gate.observe(p, progress, caught_up, now) or changed
        c = self.counters
        c["shard_copies_in"] += copies
        if skipped:
            c["duplicates_skipped"] += skipped
            c["shard_copies_in"] -= skipped  # counted in once, when they were first admitted
        sh.meta_dirty = sh.meta_dirty or changed
        if len(gate.pending) > c["pending_max"]:
            c["pending_max"] = len(gate.pending)  # how far the partitions drift apart (bench, docs)
        await self.release(sh, now)

    async def _late(self, sh: ShardState, partition: int, t: Any) -> None:
        # Judged per shard (each has its own frontier): a tick used by scenarios of two shards that
        # are both past it is dead-lettered by each, and the detail says which shard.
        gate = sh.gate
        await self.dead_letter(Rejected(
            "late", f"shard {sh.n}: event time {iso_utc(t[2])} is more than {gate.lateness_ms / 1000:g} s behind "
                    f"{iso_utc(gate.frontier)}, the newest event time this shard has applied",
            {"symbol": t[0], "price": t[1], "ts_ms": t[2]}), partition, sh.n)

    async def release(self, sh: ShardState, now: float) -> None:
        """Steps 3-4: apply what the gate releases and send the events."""
        ready = sh.gate.take_ready(now, idle=not sh.input_behind)
        if not ready:
            return
        sh.meta_dirty = True
        touched: set[str] = set()
        out = sh.engine.apply_sorted(sh.states, ready, touched)
        self.counters["shard_ticks_applied"] += len(ready)
        corrections, sh.gate.corrections = sh.gate.corrections, 0
        if corrections:
            self.counters["corrections"] += corrections
        sh.dirty |= touched
        sent = []
        latency = (time.time() - sh.waiting_since_ms / 1000) if sh.waiting_since_ms and out else None
        if not sh.gate.pending:
            sh.waiting_since_ms = 0
        for ev in out:
            if sh.emitted and ev["event_id"] in sh.emitted:  # re-applied after a restart, and sent then
                sh.emitted.discard(ev["event_id"])
                self.counters["events_not_repeated"] += 1
                continue
            await self.emit(ev)
            self.counters["events"] += 1
            self.counters["events." + ev["kind"]] += 1
            if latency is not None and self.on_latency is not None:
                self.on_latency(latency)
            sent.append(ev)
        if self.on_applied is not None:
            self.on_applied(sh.n, touched, sent)

    async def release_idle(self, shards: list[ShardState]) -> None:
        """The timer's part: apply what quiet partitions no longer hold back."""
        now = self.now()
        for sh in shards:
            if sh.gate.pending and not sh.lock.locked():
                async with sh.lock:
                    await self.release(sh, now)
