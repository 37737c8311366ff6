"""The faust agents: ticks -> (route) -> shard topic -> (evaluate) -> events.

    ticks ──route──► ratiowatch-ticks-by-shard ──evaluate──► events ──► notifiers / live stream
      │                                         (state table: scenario-state)
      └─► ticks.dlq (malformed, unknown symbol, too late)

The agents are thin: parse, call the pure engine (agents/engine.py), write state, emit. Network
I/O to people (email, Slack) never happens here: a separate consumer of ``events`` does it, so a
slow channel cannot hold up crossings.

Order of work for one batch of shard records (what makes a restart safe):
 1. skip records this shard already applied (source offsets kept in the shard's state);
 2. apply ticks in event-time groups; the newest group waits for a newer tick or the grace
    period, so ticks sharing a timestamp are applied together;
 3. send the events;
 4. write the changed scenario states and the shard's state (applied offsets, waiting ticks)
    to the table's changelog;
 5. faust flushes the producer before it commits the consumed offsets.
A worker killed between 3 and 4 re-sends the same events (same event_id) after restart;
consumers and the notifiers deduplicate by event_id. Nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, Awaitable, Callable

import faust
import orjson

from ratiowatch.config import Config
from ratiowatch.streams import topics as T
from ratiowatch.streams.ticks import Rejected, Tick, dlq_record, parse_ticks

from .engine import ScenarioEngine, ScenarioState, ShardEngine, group_by_ts
from .shards import ShardMap, decode_shard_record, encode_shard_record

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

SHARD_KEY_PREFIX = "~shard/"  # table key of a shard's own state; '~' sorts after scenario ids
REWRITE_AFTER_BYTES = 2 * 1024 * 1024


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Shard:
    """In-memory state of one shard this worker owns; the table holds its durable copy."""

    __slots__ = ("n", "engine", "states", "applied", "pending", "watermark", "last_arrival", "lock",
                 "written", "last_written")

    def __init__(self, n: int, engine: ShardEngine) -> None:
        self.n = n
        self.engine = engine
        self.states: dict[str, ScenarioState] = {}
        self.applied: dict[str, int] = {}     # ticks partition -> last offset applied (str keys: JSON)
        self.pending: list[Tick] = []          # the newest timestamp's ticks, waiting for their peers
        self.watermark = -1                    # newest event time evaluated
        self.last_arrival = 0.0
        self.lock = asyncio.Lock()
        self.written = 0                       # changelog bytes this worker wrote for the shard
        self.last_written: dict[str, int] = {} # scenario id -> ``written`` when it was last written

    def to_dict(self) -> dict[str, Any]:
        return {"v": 1, "applied": self.applied, "pending": [[t.symbol, t.price, t.ts_ms] for t in self.pending],
                "watermark": self.watermark}


class Pipeline:
    """Registers the agents on ``app`` for ``config``. Hooks ``on_event(event)`` and
    ``on_status(status)`` see every event and throttled status updates (the live stream)."""

    def __init__(self, app: faust.App, config: Config, *, shards: int, batch: int = 10_000,
                 on_event: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
                 on_status: Callable[[dict[str, Any]], None] | None = None,
                 status_interval_s: float = 0.25, seed: dict[str, ScenarioState] | None = None) -> None:
        self.app = app
        self.config = config
        self.shards = shards
        self.batch = batch
        self.grace_s = config.settings.grace_ms / 1000.0
        self.lateness_ms = int(config.settings.allowed_lateness_s * 1000)
        self.map = ShardMap(config.scenarios, shards)
        self.known = self.map.symbols
        self.on_event = on_event
        self.on_status = on_status
        self.seed = seed or {}  # warm-start states, used for scenarios the table has no state for
        self.counters: Counter[str] = Counter()
        self._owned: dict[int, _Shard] = {}
        self._dirty_status: set[tuple[int, str]] = set()

        self.ticks_topic = app.topic(T.TICKS, key_type=bytes, value_type=bytes, value_serializer="raw",
                                     key_serializer="raw", partitions=shards)
        self.shard_topic = app.topic(T.SHARD_TICKS, key_type=bytes, value_type=bytes, value_serializer="raw",
                                     key_serializer="raw", partitions=shards)
        self.dlq_topic = app.topic(T.TICKS_DLQ, value_serializer="raw", key_serializer="raw", partitions=1)
        self.events_topic = app.topic(T.EVENTS, value_serializer="raw", key_serializer="raw", partitions=shards)
        self.table = app.Table(T.STATE_TABLE, partitions=shards, key_type=bytes, value_type=bytes,
                               help="scenario id -> state; ~shard/N -> the shard's offsets and waiting ticks")

        app.agent(self.ticks_topic, name="ratiowatch.route")(self._route)
        app.agent(self.shard_topic, name="ratiowatch.evaluate")(self._evaluate)
        app.timer(max(self.grace_s, 0.005), name="ratiowatch.grace")(self._grace_timer)
        if on_status is not None:
            app.timer(status_interval_s, name="ratiowatch.status")(self._status_timer)
        app.on_partitions_revoked.connect(self._on_revoked)

    # --- ticks -> shard topic -----------------------------------------------------------------

    async def _route(self, stream: faust.StreamT) -> None:
        async for events in stream.take_events(self.batch, within=0.002):
            routed: dict[tuple[int, int], list[Tick]] = {}
            last_offset: dict[int, int] = {}
            now = _now_ms()
            for ev in events:
                msg = ev.message
                self.counters["records_in"] += 1
                good, bad = parse_ticks(ev.value, self.known, self.config.settings.signed_symbols)
                self.counters["ticks_in"] += len(good) + len(bad)
                for rej in bad:
                    await self._dead_letter(rej, msg.partition, msg.offset, now)
                last_offset[msg.partition] = msg.offset
                for n, ticks in self.map.route(good).items():
                    routed.setdefault((msg.partition, n), []).extend(ticks)
                self.counters["ticks_routed"] += len(good)
            for (p, n), ticks in routed.items():
                self.counters["shard_copies_sent"] += len(ticks)
                await self.shard_topic.send(key=b"%d" % n, value=encode_shard_record(p, last_offset[p], ticks),
                                            partition=n)

    async def _dead_letter(self, rej: Rejected, partition: int | None, offset: int | None, now: int) -> None:
        self.counters["dead_lettered"] += 1
        self.counters["dlq." + rej.reason] += 1
        await self.dlq_topic.send(key=rej.reason.encode(),
                                  value=dlq_record(rej, source=T.TICKS, at_ms=now, partition=partition, offset=offset))

    # --- shard topic -> state + events --------------------------------------------------------

    def _shard(self, n: int) -> _Shard:
        sh = self._owned.get(n)
        if sh is None:
            sh = _Shard(n, ShardEngine(self.map.scenarios[n], self.config.settings))
            saved = self._get(f"{SHARD_KEY_PREFIX}{n}".encode())
            if saved:
                sh.applied = dict(saved["applied"])
                sh.pending = [Tick(s, p, ts) for s, p, ts in saved["pending"]]
                sh.watermark = saved["watermark"]
            for sc in self.map.scenarios[n]:
                e = sh.engine.engines[sc.id]
                d = self._get(sc.id.encode())
                if d:
                    sh.states[sc.id] = ScenarioState.from_dict(d, e.keep)
                elif sc.id in self.seed:
                    sh.states[sc.id] = ScenarioState.from_dict(self.seed[sc.id].to_dict(), e.keep)
                    sh.last_written[sc.id] = -REWRITE_AFTER_BYTES - 1  # persist it with the next write
            self._owned[n] = sh
        return sh

    async def _on_revoked(self, sender: Any, revoked: set[Any], **_: Any) -> None:
        # Another worker takes these shards over from the changelog; forget our copy.
        for tp in revoked:
            if tp.topic == T.SHARD_TICKS:
                self._owned.pop(tp.partition, None)

    async def _evaluate(self, stream: faust.StreamT) -> None:
        async for events in stream.take_events(self.batch, within=0.002):
            by_shard: dict[int, list[Any]] = {}
            for ev in events:
                by_shard.setdefault(ev.message.partition, []).append(ev.value)
            for n, values in by_shard.items():
                sh = self._shard(n)
                async with sh.lock:
                    for raw in values:
                        p, o, ticks, _ = decode_shard_record(raw)
                        key = str(p)
                        self.counters["shard_copies_in"] += len(ticks)
                        if o <= sh.applied.get(key, -1):
                            self.counters["duplicates_skipped"] += len(ticks)
                            continue
                        sh.applied[key] = o
                        await self._admit(sh, ticks)
                    sh.last_arrival = time.monotonic()
                    await self._flush(sh, final=False)

    async def _admit(self, sh: _Shard, ticks: list[Tick]) -> None:
        now = _now_ms()
        for t in ticks:
            if sh.watermark >= 0 and t.ts_ms < sh.watermark - self.lateness_ms:
                await self._dead_letter(Rejected("late", f"event time {t.ts_ms} is more than "
                                                 f"{self.lateness_ms} ms behind {sh.watermark}",
                                                 {"symbol": t.symbol, "price": t.price, "ts_ms": t.ts_ms}),
                                        None, None, now)
                continue
            sh.pending.append(t)

    async def _flush(self, sh: _Shard, *, final: bool) -> None:
        """Apply the waiting ticks: every timestamp older than the newest (or all, if ``final``)."""
        if not sh.pending:
            await self._persist(sh, ())
            return
        groups = group_by_ts(sh.pending)
        ready = groups if final else groups[:-1]
        sh.pending = [] if final else groups[-1][1]
        out: list[dict[str, Any]] = []
        touched: set[str] = set()
        for ts, ticks in ready:
            events, changed = sh.engine.apply(sh.states, ts, ticks)
            out.extend(events)
            touched |= changed
            self.counters["shard_ticks_applied"] += len(ticks)
            if ts > sh.watermark:
                sh.watermark = ts
        for ev in out:
            await self.events_topic.send(key=ev["scenario"].encode(), value=orjson.dumps(ev))
            self.counters["events"] += 1
            if self.on_event is not None:
                r = self.on_event(ev)
                if asyncio.iscoroutine(r):
                    await r
        await self._persist(sh, touched)
        if self.on_status is not None:
            self._dirty_status.update((sh.n, sid) for sid in touched)

    async def _persist(self, sh: _Shard, touched: Any) -> None:
        # The embedded broker keeps only the newest 5 MB of a partition and cannot compact, so a
        # state written long ago would vanish from the changelog: re-write any state whose last
        # copy is older than half that window.
        stale = [sid for sid, at in sh.last_written.items() if sh.written - at > REWRITE_AFTER_BYTES]
        for sid in set(touched).union(stale):
            sh.written += await self._put(sh.n, sid.encode(), sh.states[sid].to_dict())
            sh.last_written[sid] = sh.written
        sh.written += await self._put(sh.n, f"{SHARD_KEY_PREFIX}{sh.n}".encode(), sh.to_dict())

    async def _put(self, partition: int, key: bytes, value: dict[str, Any]) -> int:
        # Written with the shard's partition explicitly: the table is co-partitioned with the shard
        # topic, and this also runs from the grace timer, outside any stream event. Sent (awaited)
        # rather than through the table's synchronous buffer, so a burst of state writes applies
        # back-pressure here instead of overflowing faust's buffer.
        raw = orjson.dumps(value)
        self.table.data[key] = raw
        await self.table.changelog_topic.send(key=key, value=raw, partition=partition)
        return len(raw) + len(key)

    def _get(self, key: bytes) -> dict[str, Any] | None:
        raw = self.table.get(key)
        return orjson.loads(raw) if raw else None

    async def _grace_timer(self) -> None:
        # The newest timestamp's ticks are applied once nothing newer came for the grace period.
        idle_since = time.monotonic() - self.grace_s
        for sh in list(self._owned.values()):
            if sh.pending and sh.last_arrival <= idle_since and not sh.lock.locked():
                async with sh.lock:
                    await self._flush(sh, final=True)

    async def _status_timer(self) -> None:
        dirty, self._dirty_status = self._dirty_status, set()
        for n, sid in dirty:
            sh = self._owned.get(n)
            if sh is not None and sid in sh.states:
                self.on_status(sh.engine.engines[sid].status(sh.states[sid]))

    # --- queries ------------------------------------------------------------------------------

    def idle(self) -> bool:
        """Every tick routed so far has been applied (nothing in flight inside the pipeline)."""
        c = self.counters
        return c["shard_copies_in"] >= c["shard_copies_sent"] and not any(sh.pending for sh in self._owned.values())

    def statuses(self) -> list[dict[str, Any]]:
        """Current status of every scenario this worker owns (for /status and the page)."""
        out = []
        for sh in self._owned.values():
            for sid, e in sh.engine.engines.items():
                out.append(e.status(sh.states.get(sid) or e.new_state()))
        return out

    def trigger_history(self, event: dict[str, Any]) -> tuple[list[Any], list[float]] | None:
        """The event's series closes as (dates, values) from the live state, for alert charts."""
        from datetime import date, timedelta

        try:
            _, st = self.engine_for(event["scenario"])
        except KeyError:
            return None
        closes = st.series.get(event["series"]) if st else None
        if closes is None or not closes.values:
            return None
        epoch = date(1970, 1, 1)
        return [epoch + timedelta(days=s) for s in closes.sessions], list(closes.values)

    def engine_for(self, scenario_id: str) -> tuple[ScenarioEngine, ScenarioState | None]:
        for sh in self._owned.values():
            if scenario_id in sh.engine.engines:
                return sh.engine.engines[scenario_id], sh.states.get(scenario_id)
        raise KeyError(scenario_id)
