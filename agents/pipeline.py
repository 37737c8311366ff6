"""The faust agents: ticks -> (route) -> shard topic -> (evaluate) -> events.

    ticks ──route──► ratiowatch-ticks-by-shard ──evaluate──► events ──► notifiers / live stream
      │                                         (state table: scenario-state)
      └─► ticks.dlq (malformed, unknown symbol, too late)

The agents are thin: parse, call the pure engine (agents/engine.py), write state, emit. Network
I/O to people (email, Slack) never happens here: a separate consumer of ``events`` does it, so a
slow channel cannot hold up crossings.

Both stages take a fetched batch of records at a time from faust's consumer
(``RatiowatchApp.consume_batches``): faust's one-event-per-record streams cost more than the
whole work on a tick.

Order of work (what makes a restart safe):
 1. skip shard records this shard already applied (source offsets kept in the shard's state);
 2. apply ticks in event-time groups; the newest group waits for a newer tick or the grace
    period, so ticks sharing a timestamp are applied together;
 3. send the events; the batch is acknowledged;
 4. before faust commits offsets, after it has chosen them (``before_commit``; on revocation,
    on shutdown, and periodically when ``commit_due``: every second, or less often when a
    state write takes long, so that writing stays ~10% of the work): write the changed scenario
    states and each shard's state (applied offsets, waiting ticks) to the table's changelog,
    once per scenario however many ticks touched it;
 5. faust flushes the producer, then commits the offsets chosen before 4.
So a committed offset is always covered by a written state. A worker killed before 5 re-reads
from its last commit, skips what its state had applied and re-applies the rest. The events that
re-applying produces again were sent before the kill: a shard taken over reads back the events
already on the topic and does not send those event_ids twice (``_load_emitted``). Nothing is lost
or repeated; a write the producer gives up on stops the worker (``_StopOnLostWrite``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from bisect import bisect_left
from collections import Counter
from operator import itemgetter
from typing import Any, Awaitable, Callable

import faust
import orjson
from faust.sensors import Sensor

from ratiowatch.config import Config
from ratiowatch.streams import topics as T
from ratiowatch.streams.ticks import Rejected, dlq_record, parse_records

from .engine import ScenarioEngine, ScenarioState, ShardEngine, TickRow
from .shards import ShardMap, decode_shard_record, encode_shard_segments

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

_EVENT_TIME = itemgetter(2)   # of a tick row (symbol, price, ts_ms)
SHARD_KEY_PREFIX = "~shard/"  # table key of a shard's own state; '~' sorts after scenario ids
HISTORY_SUFFIX = "/history"   # table key of a scenario's past closes (ids cannot contain '/')
REWRITE_AFTER_BYTES = 2 * 1024 * 1024
# The route stage cuts what it fetched into chunks of this many ticks (plus the rest of the record
# that reaches it) and sends a shard's record once it holds SHARD_RECORD_TICKS: a shard record
# stays under the producer's 1 MB request limit (~32 bytes a tick; one input record of at most
# 1 MB adds ~600 KB at worst), and small documents decode faster per tick (orjson: ~200 ns a tick
# at a few thousand, ~480 ns at 20,000) while each record costs ~100 µs to send, fetch and hand over.
ROUTE_CHUNK_TICKS = 8_000
SHARD_RECORD_TICKS = 2_000
PERSIST_INTERVAL_S = 1.0        # state writes (and periodic commits) at most this often...
PERSIST_SHARE = 0.1             # ...or less often, so that writing takes at most this share of the time
PERSIST_INTERVAL_MAX_S = 30.0   # ...but at least this often (how much a killed worker re-reads)


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


async def _events_on_topic(app: faust.App, partitions: int) -> dict[str, list[tuple[int, str]]]:
    """scenario id -> (ts_ms, event_id) of every event on the ``events`` topic now."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list

    conf = app.conf
    consumer = AIOKafkaConsumer(bootstrap_servers=server_list(conf.broker, 9092), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                client_id=f"{conf.id}-events-reader",
                                **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context))
    await consumer.start()
    try:
        tps = [TopicPartition(T.EVENTS, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: dict[str, list[tuple[int, str]]] = {}
        todo = {tp for tp in tps if end[tp] > 0}
        while todo:
            for tp, records in (await consumer.getmany(*todo, timeout_ms=500)).items():
                for r in records:
                    if r.offset < end[tp]:
                        try:
                            ev = orjson.loads(r.value)
                            out.setdefault(ev["scenario"], []).append((ev["ts_ms"], ev["event_id"]))
                        except (orjson.JSONDecodeError, KeyError, TypeError):
                            pass  # not an event of ours: nothing we could repeat
            todo = {tp for tp in todo if await consumer.position(tp) < end[tp]}
        log.info("read %d events back from %s", sum(map(len, out.values())), T.EVENTS)
        return out
    finally:
        await consumer.stop()


class _Shard:
    """In-memory state of one shard this worker owns; the table holds its durable copy."""

    __slots__ = ("n", "engine", "states", "applied", "pending", "watermark", "last_arrival", "lock", "emitted",
                 "newest", "second", "dirty", "meta_dirty", "written", "last_written")

    def __init__(self, n: int, engine: ShardEngine) -> None:
        self.n = n
        self.engine = engine
        self.states: dict[str, ScenarioState] = {}
        self.applied: dict[str, int] = {}     # ticks partition -> last offset applied (str keys: JSON)
        self.pending: list[TickRow] = []       # the newest timestamp's ticks, waiting for their peers
        self.watermark = -1                    # newest event time evaluated
        self.last_arrival = 0.0
        self.lock = asyncio.Lock()
        self.dirty: set[str] = set()           # scenarios changed since their state was last written
        self.meta_dirty = False                # applied offsets or waiting ticks changed since then
        self.written = 0                       # changelog bytes this worker wrote for the shard
        self.last_written: dict[tuple[str, bool], int] = {}  # (scenario id, history?) -> ``written`` then
        self.emitted: set[str] | None = None   # ids already on ``events`` that re-applied ticks may repeat
        self.newest = self.second = -1         # the two newest event times admitted (see _admit)

    def to_dict(self) -> dict[str, Any]:
        return {"v": 1, "applied": self.applied, "pending": self.pending, "watermark": self.watermark}


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
        self._persisted_at = 0.0            # monotonic time the last state write ended (commit_due)
        self._persist_took = 0.0            # and how long it took
        self._on_topic: asyncio.Future[dict[str, list[tuple[int, str]]]] | None = None  # see _load_emitted
        self._dirty_status: set[tuple[int, str]] = set()

        self.ticks_topic = app.topic(T.TICKS, key_type=bytes, value_type=bytes, value_serializer="raw",
                                     key_serializer="raw", partitions=shards)
        self.shard_topic = app.topic(T.SHARD_TICKS, key_type=bytes, value_type=bytes, value_serializer="raw",
                                     key_serializer="raw", partitions=shards)
        self.dlq_topic = app.topic(T.TICKS_DLQ, value_serializer="raw", key_serializer="raw", partitions=1)
        self.events_topic = app.topic(T.EVENTS, value_serializer="raw", key_serializer="raw", partitions=shards)
        self.table = app.Table(T.STATE_TABLE, partitions=shards, key_type=bytes, value_type=bytes,
                               help="scenario id -> state; ~shard/N -> the shard's offsets and waiting ticks")

        if not hasattr(app, "consume_batches"):
            raise TypeError("Pipeline needs an app from ratiowatch.streams.app.create_app (batch delivery)")
        app.consume_batches(self.ticks_topic, self._route)
        app.consume_batches(self.shard_topic, self._evaluate)
        app.before_commit.append(self.persist)
        app.commit_due = self.commit_due
        app.timer(max(self.grace_s, 0.005), name="ratiowatch.grace")(self._grace_timer)
        # Also without commits (the grace timer applied the last ticks of a quiet feed).
        app.timer(PERSIST_INTERVAL_S, name="ratiowatch.persist")(self._persist_timer)
        app.on_before_shutdown.connect(self._on_shutdown)
        if on_status is not None:
            app.timer(status_interval_s, name="ratiowatch.status")(self._status_timer)
        app.on_partitions_revoked.connect(self._on_revoked)
        self.on_lost_write: Callable[[BaseException], None] = _exit_now  # tests may replace it
        app.sensors.add(_StopOnLostWrite(self))
        app.on_partitions_assigned.connect(self._on_assigned)

    # --- ticks -> shard topic -----------------------------------------------------------------

    async def _route(self, batches: list[tuple[int, list[Any]]]) -> None:
        """What one fetch brought from ``ticks`` (records of one or more partitions) -> shard
        records (see SHARD_RECORD_TICKS), a segment per source partition in each."""
        out: dict[int, list[tuple[int, int, list[TickRow]]]] = {}  # shard -> segments not sent yet
        size: dict[int, int] = {}
        for partition, records in batches:
            rows, bad, ends = parse_records([r.value for r in records], self.known,
                                            self.config.settings.signed_symbols)
            if bad:
                now = _now_ms()
                for i, rej in bad:
                    await self._dead_letter(rej, partition, records[i].offset, now)
            first = 0  # chunks of about ROUTE_CHUNK_TICKS ticks, cut at a record boundary
            while first < len(records):
                start = ends[first - 1] if first else 0
                last = min(bisect_left(ends, start + ROUTE_CHUNK_TICKS, first), len(records) - 1)
                routed = self.map.route(rows[start:ends[last]] if first or last < len(records) - 1 else rows)
                for n, shard_rows in routed.items():
                    # (partition, offset) is the last ticks record the rows come from: segments of
                    # one partition carry increasing offsets, so "already applied" stays exact.
                    out.setdefault(n, []).append((partition, records[last].offset, shard_rows))
                    size[n] = size.get(n, 0) + len(shard_rows)
                    if size[n] >= SHARD_RECORD_TICKS:
                        await self._send_shard(n, out.pop(n), size.pop(n))
                first = last + 1
            c = self.counters
            c["records_in"] += len(records)
            c["ticks_in"] += len(rows) + len(bad)
            c["ticks_routed"] += len(rows)
        for n, segments in out.items():
            await self._send_shard(n, segments, size[n])

    async def _send_shard(self, n: int, segments: list[tuple[int, int, list[TickRow]]], ticks: int) -> None:
        self.counters["shard_copies_sent"] += ticks
        self.counters["shard_records_sent"] += 1
        await self._send(T.SHARD_TICKS, b"%d" % n, encode_shard_segments(segments), n)

    async def _send(self, topic: str, key: bytes, value: bytes, partition: int) -> None:
        # Straight to the producer: faust's Topic.send builds a FutureMessage, a PendingMessage and
        # sensor callbacks around each record (~40 µs); these records need none of it. A failed
        # delivery still stops the worker, as the sensor does for faust's sends.
        fut = await self.app.producer.send(topic, key, value, partition, None, None)
        fut.add_done_callback(self._check_delivery)

    def _check_delivery(self, fut: Any) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self.on_lost_write(fut.exception())

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
                sh.pending = list(saved["pending"])
                sh.watermark = saved["watermark"]
                sh.newest = max((t[2] for t in sh.pending), default=sh.watermark)
            for sc in self.map.scenarios[n]:
                e = sh.engine.engines[sc.id]
                d = self._get(sc.id.encode())
                if d and d.get("v") == 1:  # written whole, by an earlier version
                    sh.states[sc.id] = ScenarioState.from_dict(d, e.keep)
                    sh.dirty.add(sc.id)
                elif d:
                    history = self._get((sc.id + HISTORY_SUFFIX).encode())
                    sh.states[sc.id] = st = ScenarioState.from_parts(d, history, e.keep)
                    # Their copies are somewhere in the changelog: count them as written at its
                    # start, so they are re-written before the broker's retention can drop them.
                    sh.last_written[(sc.id, False)] = 0
                    if not st.history_changed:
                        sh.last_written[(sc.id, True)] = 0
                    else:
                        sh.dirty.add(sc.id)
                elif sc.id in self.seed:
                    sh.states[sc.id] = ScenarioState.from_dict(self.seed[sc.id].to_dict(), e.keep)
                    sh.dirty.add(sc.id)  # written with the next state write
            self._owned[n] = sh
        return sh

    async def _on_revoked(self, sender: Any, revoked: set[Any], **_: Any) -> None:
        # Another worker takes these shards over from the changelog: write what is not written
        # yet (faust has usually just done so through its commit), then forget our copy.
        wrote = False
        self._on_topic = None  # shards taken over later must see what was sent until then
        for tp in revoked:
            if tp.topic == T.SHARD_TICKS and tp.partition in self._owned:
                sh = self._owned[tp.partition]
                async with sh.lock:
                    wrote = await self._persist(sh) or wrote
                    self._owned.pop(tp.partition, None)
        if wrote:
            await self.app.producer.flush()

    async def _on_shutdown(self, sender: Any, **_: Any) -> None:
        await self.persist()  # faust flushes the producer right after this signal

    async def _on_assigned(self, sender: Any, assigned: set[Any], **_: Any) -> None:
        shards = sorted(tp.partition for tp in assigned if tp.topic == T.SHARD_TICKS)
        log.info("this worker owns shards %s of %d", ",".join(map(str, shards)) or "none", self.shards)
        if shards and self._on_topic is None:
            # Read `events` back while faust recovers the tables, rather than holding up the
            # first ticks for it (~0.5 s): see _load_emitted.
            self._on_topic = asyncio.ensure_future(_events_on_topic(self.app, self.shards))
        # The live page shows every scenario from the start (warm-started ones with their readings),
        # not only those a tick has touched since.
        self._dirty_status.update((n, sc.id) for n in shards for sc in self.map.scenarios[n])

    async def _evaluate(self, batches: list[tuple[int, list[Any]]]) -> None:
        """What one fetch brought from the shard topic: per shard, admit, apply, emit (state is
        written later, see the module docstring)."""
        for n, records in batches:
            sh = self._shard(n)
            async with sh.lock:
                if sh.emitted is None:
                    await self._load_emitted(sh)
                copies = skipped = 0
                for rec in records:
                    for p, o, ticks in decode_shard_record(rec.value):
                        key = str(p)
                        copies += len(ticks)
                        if o <= sh.applied.get(key, -1):
                            skipped += len(ticks)
                            continue
                        sh.applied[key] = o
                        await self._admit(sh, ticks)
                self.counters["shard_copies_in"] += copies
                if skipped:
                    self.counters["duplicates_skipped"] += skipped
                sh.meta_dirty = True
                sh.last_arrival = time.monotonic()
                await self._flush(sh, final=False)

    async def _load_emitted(self, sh: _Shard) -> None:
        """The events of the shard's scenarios that are on the topic and that ticks re-applied
        after a restart could produce again: a worker killed after sending events and before its
        state write re-applies those ticks. Their event time is at least the written watermark
        minus the allowed lateness (older ticks are dead-lettered as late), so those are the ones
        kept. The topic is read once per assignment, by the first shard that needs it; events are
        crossings, few enough to read whole."""
        if self._on_topic is None:
            self._on_topic = asyncio.ensure_future(_events_on_topic(self.app, self.shards))
        by_scenario = await asyncio.shield(self._on_topic)
        since = sh.watermark - self.lateness_ms if sh.watermark >= 0 else -1
        sh.emitted = {eid for sid in sh.engine.engines for ts, eid in by_scenario.get(sid, ()) if ts >= since}

    async def _admit(self, sh: _Shard, ticks: list[TickRow]) -> None:
        # Each tick is judged against the watermark it would meet had every tick before it been
        # flushed at once: the second-newest event time admitted so far (a flush applies all but
        # the newest). Judged against the last flush instead, a shard record carrying many days
        # (the route stage batches what it fetched, e.g. a worker catching up) would admit ticks
        # that the same days sent one by one dead-letter: the outcome would depend on batching.
        wm, newest, second = sh.watermark, sh.newest, sh.second
        lateness, pending, now = self.lateness_ms, sh.pending, 0
        for t in ticks:
            ts = t[2]
            floor = wm if wm > second else second
            if floor >= 0 and ts < floor - lateness:
                now = now or _now_ms()
                await self._dead_letter(Rejected("late", f"event time {ts} is more than {lateness} ms behind "
                                                 f"{floor}", {"symbol": t[0], "price": t[1], "ts_ms": ts}),
                                        None, None, now)
                continue
            pending.append(t)
            if ts > newest:
                newest, second = ts, newest
            elif second < ts < newest:
                second = ts
        sh.newest, sh.second = newest, second

    async def _flush(self, sh: _Shard, *, final: bool) -> None:
        """Apply the waiting ticks: every timestamp older than the newest (or all, if ``final``)."""
        if not sh.pending:
            return
        pending = sh.pending
        pending.sort(key=_EVENT_TIME)  # stable: arrival order is kept within a timestamp
        cut = len(pending) if final else bisect_left(pending, pending[-1][2], key=_EVENT_TIME)
        if not cut:
            return
        ready, sh.pending = pending[:cut], pending[cut:]
        sh.meta_dirty = True
        touched: set[str] = set()
        out = sh.engine.apply_sorted(sh.states, ready, touched)
        if ready[-1][2] > sh.watermark:
            sh.watermark = ready[-1][2]
        self.counters["shard_ticks_applied"] += cut
        sh.dirty |= touched
        for ev in out:
            if ev["event_id"] in sh.emitted:  # re-applied after a restart, and already sent then
                sh.emitted.discard(ev["event_id"])
                self.counters["events_not_repeated"] += 1
                continue
            await self.events_topic.send(key=ev["scenario"].encode(), value=orjson.dumps(ev))
            self.counters["events"] += 1
            if self.on_event is not None:
                r = self.on_event(ev)
                if asyncio.iscoroutine(r):
                    await r
        if self.on_status is not None:
            self._dirty_status.update((sh.n, sid) for sid in touched)

    async def persist(self) -> None:
        """Write every owned shard's changed state to the changelog (see the module docstring)."""
        started = time.monotonic()
        for sh in list(self._owned.values()):
            async with sh.lock:
                if self._owned.get(sh.n) is sh:  # not revoked while we waited: the new owner writes it now
                    await self._persist(sh)
        self._persisted_at = time.monotonic()
        self._persist_took = self._persisted_at - started

    def commit_due(self) -> bool:
        """Whether the periodic commit (and so a state write) should happen now: every
        PERSIST_INTERVAL_S, stretched under load so that writing stays within PERSIST_SHARE of the
        time (10,000 busy scenarios take ~0.5 s to write), up to PERSIST_INTERVAL_MAX_S."""
        wait = min(PERSIST_INTERVAL_MAX_S, max(PERSIST_INTERVAL_S, self._persist_took / PERSIST_SHARE))
        return time.monotonic() - self._persisted_at >= wait * 0.95  # the commit timer ticks each second

    async def _persist_timer(self) -> None:
        if self.commit_due():
            await self.persist()

    async def _persist(self, sh: _Shard) -> bool:
        """Write the shard's changed scenarios (the live part; the history part when it changed)
        and its own state. Returns whether anything was written."""
        # The embedded broker keeps only the newest 5 MB of a partition and cannot compact, so a
        # state written long ago would vanish from the changelog: re-write any part whose last
        # copy is older than half that window.
        stale = [k for k, at in sh.last_written.items() if sh.written - at > REWRITE_AFTER_BYTES]
        if not (sh.dirty or sh.meta_dirty or stale):
            return False
        dirty, sh.dirty = sh.dirty, set()
        for sid in dirty:
            st = sh.states[sid]
            if st.history_changed:
                await self._put_part(sh, sid, True, st.history_dict())
                st.history_changed = False
            await self._put_part(sh, sid, False, st.live_dict())
        for sid, history in stale:
            if sid not in dirty:
                st = sh.states[sid]
                await self._put_part(sh, sid, history, st.history_dict() if history else st.live_dict())
        sh.written += await self._put(sh.n, f"{SHARD_KEY_PREFIX}{sh.n}".encode(), sh.to_dict())
        sh.meta_dirty = False
        return True

    async def _put_part(self, sh: _Shard, sid: str, history: bool, value: dict[str, Any]) -> None:
        key = (sid + HISTORY_SUFFIX) if history else sid
        sh.written += await self._put(sh.n, key.encode(), value)
        sh.last_written[(sid, history)] = sh.written

    async def _put(self, partition: int, key: bytes, value: dict[str, Any]) -> int:
        # Written with the shard's partition explicitly: the table is co-partitioned with the shard
        # topic, and this also runs from the grace timer, outside any stream event. Sent (awaited)
        # rather than through the table's synchronous buffer, so a burst of state writes applies
        # back-pressure here instead of overflowing faust's buffer.
        raw = orjson.dumps(value)
        # The table keeps a right-sized copy: orjson's output holds on to its ~4 KB working buffer,
        # which over 10,000 scenarios' states costs ~100 MB of memory for nothing.
        self.table.data[key] = memoryview(raw).tobytes()
        self.counters["state_writes"] += 1
        await self._send(self.table.changelog_topic.get_topic_name(), key, raw, partition)
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
        # A shard's state may only be loaded once the table has recovered it from the changelog.
        if not self.app.tables.recovery.completed.is_set():
            return
        dirty, self._dirty_status = self._dirty_status, set()
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == T.SHARD_TICKS}
        for n, sid in dirty:
            if n in assigned:
                sh = self._shard(n)
                e = sh.engine.engines[sid]
                self.on_status(e.status(sh.states.get(sid) or e.new_state()))

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
