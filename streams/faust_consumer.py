"""faust's aiokafka consumer, extended: whole-batch delivery, commit hooks, a fetch-round hook.

Everything here leans on faust's private methods, so they are listed in one place
(:data:`OVERRIDDEN`) and the versions they were read from in another (:data:`TESTED_FAUST`):
:func:`check_faust_version` refuses to start on any other version, with a message saying what
to do, rather than letting a changed internal corrupt offsets silently.

Why this module is long (~430 lines): every override of faust's and aiokafka's internals is here,
together with the list of them; split, a reader checking them against a new faust version would
have to find them across files.
"""

from __future__ import annotations

import asyncio
import logging
import os
from importlib.metadata import version
from time import monotonic
from typing import Any, Awaitable, Callable

from faust.exceptions import ProducerSendError
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ack_lock
from mode import Service
from mode.utils.futures import notify

__all__ = ["BatchConsumer", "BatchHandler", "RoundHook", "Transport", "IdempotentProducer", "OVERRIDDEN",
           "TESTED_FAUST", "check_faust_version", "fetch_position", "IDEMPOTENCE_ENV", "IDEMPOTENCE_OFF_COST",
           "IdempotenceUnsupported", "idempotence_enabled"]

log = logging.getLogger(__name__)

# The faust-streaming and aiokafka versions whose source the overrides below were written against.
TESTED_FAUST = {"faust-streaming": ("0.15.3",), "aiokafka": ("0.14.0",)}

# Every private method of faust (and aiokafka attribute) this module overrides or reads.
OVERRIDDEN = (
    "faust.transport.consumer.Consumer._drain_messages",
    "faust.transport.consumer.Consumer._wait_next_records (called)",
    "faust.transport.consumer.Consumer._new_offset (capped by app.commit_cap)",
    "faust.transport.consumer.Consumer._commit_handler",
    "faust.transport.consumer.Consumer._commit_tps",
    "faust.transport.consumer.Consumer._filter_committable_offsets / _handle_attached / _commit_offsets (called)",
    "faust.transport.consumer.Consumer._acked, _n_acked, _read_offset, _waiting_for_ack (used)",
    "faust.transport.drivers.aiokafka.Consumer._new_consumer_thread",
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer",
    "faust.transport.drivers.aiokafka.Producer._settings_extra",
    "faust.transport.drivers.aiokafka.Producer.on_start (wrapped), _producer (read, stopped on a refused producer id)",
    "aiokafka.producer.sender.Sender._maybe_wait_for_pid (its name, looked for in a failed start's traceback)",
    "aiokafka.AIOKafkaConsumer._fetch_max_wait_ms, _subscription (read in fetch_position)",
    "aiokafka.consumer.group_coordinator.CoordinatorGroupRebalance._send_sync_group_request (wrapped)",
)


def check_faust_version() -> None:
    """Fail at start on a faust-streaming or aiokafka version these overrides were not tested with."""
    for dist, tested in TESTED_FAUST.items():
        found = version(dist)
        if found not in tested:
            raise RuntimeError(
                f"ratiowatch needs {dist} {' or '.join(tested)}, found {found}: its consumer overrides private "
                f"methods of faust ({len(OVERRIDDEN)} listed in ratiowatch.streams.faust_consumer.OVERRIDDEN) "
                f"that may differ in this version. Install the pinned versions (pip install ratiowatch "
                f"re-installs them), or re-read those methods in the new version and add it to TESTED_FAUST.")


# --- batch delivery ---------------------------------------------------------------------------
#
# faust hands every record to a stream as its own event: the consumer waits on it with three
# futures (``wait_first``), the conductor decodes it into an Event, queues it, the stream and its
# ``take`` buffer pass it on and ack it. That costs ~50-80 µs a record, so one worker tops out
# near 12,000 records/s however little the agent does with them. For the tick topics the pipeline
# needs a record's bytes, partition and offset, nothing more, so the consumer below hands what
# each fetch brought from a topic to one call and acks it in one step. Everything else stays faust's:
# the group, rebalances, flow control, offset commits, table recovery, and every other topic
# (the notifier's agent on ``events``, for one) goes through the usual per-record path.

# Called with [(partition, aiokafka ConsumerRecords in offset order, the partition's high watermark
# as of the fetch), ...]: what one fetch brought from a topic.
BatchHandler = Callable[[list[tuple[int, list[Any], int | None]]], Awaitable[None]]
# Called after each fetch round, once everything it brought has been handled (also when it brought
# nothing): the route stage reports there which partitions are caught up.
RoundHook = Callable[[], Awaitable[None]]


# How long the broker may hold a fetch that finds no data. Kafka answers as soon as data arrives,
# so this only sets how often an idle worker polls; the embedded broker (librdkafka's mock) always
# holds an empty fetch this long, so there it bounds the latency of each hop. faust's 1.5 s would
# hold a tick arriving at a quiet partition for over a second.
FETCH_MAX_WAIT_MS = int(os.environ.get("RATIOWATCH_FETCH_MAX_WAIT_MS") or 5)


class BatchConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with whole-batch delivery for the topics in
    ``app.batch_handlers``, and ``app.before_commit`` hooks that run after the offsets to commit
    are chosen and before they are committed (the pipeline writes its state there)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_acked: dict[Any, int] = {}  # batch partition -> last offset handled
        self._changelogs_paused: set[Any] = set()  # see _sync_changelog_fetching

    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # the fetcher service's loop
        app: Any = self.app
        handlers: dict[str, BatchHandler] = getattr(app, "batch_handlers", {})
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        acquire_flow_control = app.flow_control.acquire
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                if not records:
                    await self._after_round(app)
                    continue
                if not self.flow_active:
                    await self.perform_seek()  # as faust's getmany: re-read from the committed offsets
                    continue
                generation = app.consumer_generation_id
                batches: dict[str, list[tuple[Any, list[Any]]]] = {}  # batch topic -> its partitions' records
                for tp, recs in records.items():
                    if not self.flow_active or app.consumer_generation_id != generation:
                        break  # a rebalance started: what was fetched is read again by the new owner
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    if tp.topic not in handlers:
                        await self._deliver_each(tp, recs)
                        await asyncio.sleep(0)
                        continue
                    r_offset = self._read_offset[tp]
                    # In offset order: only a batch overlapping what was read (a seek) needs sorting out.
                    if r_offset is not None and recs[0].offset < r_offset:
                        recs = [r for r in recs if r.offset >= r_offset]
                    if recs:
                        batches.setdefault(tp.topic, []).append((tp, recs))
                for topic, parts in batches.items():
                    if not self.flow_active or app.consumer_generation_id != generation:
                        break
                    await acquire_flow_control()
                    await self._deliver_batches(topic, parts, handlers[topic])
                await self._after_round(app)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _after_round(self, app: Any) -> None:
        if self.flow_active and not app.rebalancing:
            for hook in getattr(app, "after_fetch_round", ()):
                await hook()

    async def _deliver_each(self, tp: Any, recs: list[Any]) -> None:
        """faust's own per-record path (as in Consumer._drain_messages)."""
        acks_enabled = self.app.topics.acks_enabled_for(tp.topic)
        for rec in recs:
            message = self._to_message(tp, rec)
            r_offset = self._read_offset[tp]
            if r_offset is None or message.offset >= r_offset:
                if acks_enabled and r_offset and message.offset - r_offset > 1:
                    await self._add_gap(tp, r_offset + 1, message.offset)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
                self._read_offset[tp] = message.offset

    async def _deliver_batches(self, topic: str, parts: list[tuple[Any, list[Any]]], handler: BatchHandler) -> None:
        """One call for everything fetched from ``topic`` this round (a fetch may bring a little
        from each of many partitions: one call each would multiply the per-call work)."""
        await handler([(tp.partition, recs, self.highwater(tp)) for tp, recs in parts])
        acks = self.app.topics.acks_enabled_for(topic)
        now = monotonic()
        for tp, recs in parts:
            if acks:
                self._ack_offsets(tp, recs)
            self._read_offset[tp] = recs[-1].offset
            self.app.monitor.stream_inbound_time[tp] = now  # the livelock check's "still moving"

    def _ack_offsets(self, tp: Any, recs: list[Any]) -> None:
        """Consumer.ack for a whole batch: everything up to its last offset becomes committable.
        A batch partition is handled in offset order, a whole batch at a time, so its commit point
        is simply the last offset handled + 1 (see _new_offset): faust's per-offset bookkeeping
        (a set, a list sorted and scanned at each commit) costs ~1 µs a record."""
        with ack_lock:
            self._batch_acked[tp] = recs[-1].offset
            self._acked[tp]  # marks the partition as having acks to commit
            self._n_acked += len(recs)
        notify(self._waiting_for_ack)

    def _new_offset(self, tp: Any) -> Any:
        last = self._batch_acked.get(tp)
        offset = last + 1 if last is not None else super()._new_offset(tp)
        # The app may hold a partition's commit back (the evaluate stage: to the oldest shard
        # record whose ticks still wait for the watermark, which it does not store elsewhere).
        cap = getattr(self.app, "commit_cap", None)
        held = cap(tp) if cap is not None and offset is not None else None
        return offset if held is None else min(offset, held)

    # faust pauses and resumes partitions around every recovery (after each assignment).
    def pause_partitions(self, tps: Any) -> None:
        super().pause_partitions(tps)
        self._sync_changelog_fetching()

    def resume_partitions(self, tps: Any) -> None:
        super().resume_partitions(tps)
        self._sync_changelog_fetching()

    def _sync_changelog_fetching(self) -> None:
        # After recovery faust reads a table's changelog partitions no more, but only in its own
        # bookkeeping (its "active" partitions): aiokafka goes on prefetching them -- every state
        # write this worker makes -- and, as nobody takes those records, holds every fetch from
        # the broker back until they expire (100 ms): a stall after each state write. So aiokafka
        # fetches a changelog partition only while faust reads it (recovery).
        consumer = self._thread._consumer
        if consumer is None:
            return
        active = self._active_partitions or set()
        assigned = [tp for tp in self.assignment() if self._is_changelog_tp(tp)]
        pause = {tp for tp in assigned if tp not in active} - self._changelogs_paused
        resume = {tp for tp in assigned if tp in active} & self._changelogs_paused
        if pause:
            self._thread.thread_loop.call_soon_threadsafe(consumer.pause, *_aiokafka_tps(pause))
        if resume:
            self._thread.thread_loop.call_soon_threadsafe(consumer.resume, *_aiokafka_tps(resume))
        self._changelogs_paused = (self._changelogs_paused | pause) - resume

    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self._batch_acked.pop(tp, None)
        self._changelogs_paused -= set(revoked)  # aiokafka forgets a revoked partition's pause
        await super().on_partitions_revoked(revoked)

    async def perform_seek(self) -> None:
        self._batch_acked.clear()  # reading restarts at the committed offsets
        await super().perform_seek()

    @Service.task
    async def _commit_handler(self) -> None:
        # faust's periodic commit, asking the app first (``app.commit_due``): the pipeline writes
        # its state before each commit and spaces those writes out under load. Commits on
        # revocation and shutdown do not ask.
        interval = self.commit_interval
        await self.sleep(interval)
        async for _ in self.itertimer(interval, name="commit"):
            due = getattr(self.app, "commit_due", None)
            if due is None or due():
                await self.commit()

    async def _commit_tps(self, tps: Any, start_new_transaction: bool) -> bool:
        # As faust's, with the before_commit hooks between choosing the offsets and committing
        # them: whatever a hook writes covers at least every record those offsets acknowledge.
        commit_offsets = self._filter_committable_offsets(tps)
        if commit_offsets:
            for hook in getattr(self.app, "before_commit", ()):
                await hook()
            try:
                await self._handle_attached(commit_offsets)
            except ProducerSendError as exc:
                await self.crash(exc)
            else:
                return await self._commit_offsets(commit_offsets, start_new_transaction=start_new_transaction)
        return False


def _aiokafka_tps(tps: Any) -> list[Any]:
    from aiokafka import TopicPartition

    return [TopicPartition(tp.topic, tp.partition) for tp in tps]


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # faust hard-codes 1500: see FETCH_MAX_WAIT_MS
        return consumer


# --- idempotent writes, and the setting that turns them off -----------------------------------
#
# RATIOWATCH_IDEMPOTENCE   on (default) | off: every faust app of the process (engine, notify).
#
# ``on``: the producer asks the broker for a producer id (InitProducerId) and numbers its batches,
# so a produce request retried after its answer was lost is not written twice (on Kafka; the
# embedded broker checks the numbers only for transactional producers and stores such a retry
# twice, see streams/broker.py). A broker that does
# not grant producer ids (Tansu 0.6.0 answers UnknownError) stops the role at start with
# :class:`IdempotenceUnsupported`, naming the capability and this setting: never a silent downgrade.
# ``off``: for such brokers only. Said at start (a WARNING naming what is given up, see
# :data:`IDEMPOTENCE_OFF_COST`); docs/faults.md, "Brokers this is proven on".

IDEMPOTENCE_ENV = "RATIOWATCH_IDEMPOTENCE"

IDEMPOTENCE_OFF_COST = (
    "a produce request that aiokafka retries after its answer was lost (a dropped connection, a timeout) "
    "may be written twice: an event on `events` twice (same event_id; the engine's read-back of `events` "
    "only runs when a shard is taken over, so this copy stays: the notify role's dedup record and "
    "consumers that de-duplicate by event_id absorb it), a shard record on the shard topic twice (a copy of "
    "applied ticks is skipped by source offset, ticks still waiting for the watermark are queued again), "
    "a changelog write, a dead letter or a delivery record twice")


def idempotence_enabled(env: Any = None) -> bool:
    """RATIOWATCH_IDEMPOTENCE read and checked: True unless it is ``off``. Raises ConfigError naming
    the variable for any value but on/off (unset or empty: on)."""
    from ratiowatch.errors import ConfigError

    raw = (os.environ if env is None else env).get(IDEMPOTENCE_ENV) or "on"
    value = raw.strip().lower()
    if value not in ("on", "off"):
        raise ConfigError("environment", IDEMPOTENCE_ENV, f"must be on or off, got {raw!r}")
    return value == "on"


class IdempotenceUnsupported(RuntimeError):
    """The broker refused to give the producer a producer id (InitProducerId): it cannot take
    idempotent writes. The message names the capability and RATIOWATCH_IDEMPOTENCE."""


class IdempotentProducer(faust_aiokafka.Producer):
    """faust's producer with Kafka's idempotence on (faust turns it on only for exactly-once).
    aiokafka retries a produce request when the connection drops before the answer, and the
    broker may have written the batch already: without producer ids and sequence numbers it
    would be written twice (Kafka drops the retry by them; the embedded broker does not, see
    streams/broker.py and docs/faults.md, finding 6). ``app.idempotent`` False
    (RATIOWATCH_IDEMPOTENCE=off, set by create_app) leaves it off, with ``acks=all`` still."""

    def _idempotent(self) -> bool:
        return bool(getattr(self.app, "idempotent", True))

    def _settings_extra(self) -> Any:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": self._idempotent()}

    async def on_start(self) -> None:
        try:
            await super().on_start()
        except Exception as e:
            txn = getattr(self._producer, "_txn_manager", None)
            if not self._idempotent() or txn is None or txn.has_pid() or not _raised_in(e, "_maybe_wait_for_pid"):
                raise  # not the broker's answer to InitProducerId (e.g. no broker reachable)
            # aiokafka's start waits for the producer id and raises the broker's answer as is
            # (Tansu 0.6.0: UnknownError, "[Error -1] UnknownError"): say what it means.
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None
            raise IdempotenceUnsupported(
                f"the broker at {', '.join(str(u) for u in self.app.conf.broker)} refused a producer id "
                f"(InitProducerId answered {type(e).__name__}: {e}): it does not support idempotent producers, "
                f"which ratiowatch uses so that a retried write is never stored twice. Use a broker that does "
                f"(Kafka >= 0.11), or set {IDEMPOTENCE_ENV}=off to run without them, accepting that "
                f"{IDEMPOTENCE_OFF_COST}") from e


def _raised_in(exc: BaseException, function: str) -> bool:
    """Whether ``exc`` was raised inside a function of that name (aiokafka's
    Sender._maybe_wait_for_pid raises the broker's answer to InitProducerId)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == function:
            return True
        tb = tb.tb_next
    return False


def _rejoin_on_invalid_sync() -> None:
    """aiokafka treats any SyncGroup error it does not know as fatal: it raises out of its
    coordination task, which dies, and the member never rejoins (it keeps its process alive with
    no partitions). librdkafka's mock coordinator (the embedded broker) answers INVALID_REQUEST to a
    follower whose SyncGroup arrives after the leader's has completed the generation, which
    happens whenever the follower is slower than the leader (a process still starting, a busy
    machine). Real Kafka answers such a follower with its assignment. So INVALID_REQUEST there is
    taken as "rejoin", the way aiokafka takes REBALANCE_IN_PROGRESS: the member joins the next
    generation instead of hanging."""
    from aiokafka import errors
    from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance

    original = CoordinatorGroupRebalance._send_sync_group_request
    if getattr(original, "_ratiowatch", False):
        return

    async def send_sync_group_request(self: Any, request: Any) -> Any:
        try:
            return await original(self, request)
        except errors.KafkaError as e:
            if "InvalidRequestError" not in str(e):
                raise
            log.warning("SyncGroup for group %s was refused (INVALID_REQUEST, as the embedded broker answers a "
                        "late follower): joining the group again", self.group_id)
            self._coordinator.request_rejoin()
            return None

    send_sync_group_request._ratiowatch = True  # type: ignore[attr-defined]
    CoordinatorGroupRebalance._send_sync_group_request = send_sync_group_request


_rejoin_on_invalid_sync()


def fetch_position(consumer: Any, tp: Any) -> tuple[int | None, int | None]:
    """(next offset to hand out, high watermark) of a partition as aiokafka knows them now; None
    where not known yet. Read from aiokafka's subscription state: it belongs to the consumer
    thread, but these are plain ints, read whole."""
    thread = getattr(consumer, "_thread", None)
    inner = getattr(thread, "_consumer", None)
    if inner is None:
        return None, None
    from aiokafka import TopicPartition

    atp = TopicPartition(tp.topic, tp.partition)
    assignment = inner._subscription.subscription.assignment if inner._subscription.subscription else None
    if assignment is None or atp not in assignment.tps:
        return None, None
    state = assignment.state_value(atp)
    position = state.position if state.has_valid_position else None
    return position, state.highwater


class Transport(faust_aiokafka.Transport):
    Consumer = BatchConsumer
    Producer = IdempotentProducer


