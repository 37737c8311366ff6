"""The faust app: one factory for the embedded broker and real Kafka alike.

The embedded broker refuses CreateTopics, so faust never declares topics
(``topic_allow_declare=False``): :func:`ensure_topics` creates them through the mock API, and
:func:`ensure_topics_exist` through the admin API of a real cluster. The only other difference
is that the embedded broker forgets everything when its process ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from time import monotonic
from typing import Any, Awaitable, Callable

import faust
from faust.exceptions import ProducerSendError
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from .broker import EmbeddedBroker
from .topics import APP_ID, all_topics, topic_configs

__all__ = ["create_app", "ensure_topics", "ensure_topics_exist", "RatiowatchApp", "BatchConsumer", "BatchHandler"]

log = logging.getLogger(__name__)


def ensure_topics(broker: EmbeddedBroker, partitions: int, app_id: str = APP_ID) -> None:
    """Create every topic ratiowatch uses on the embedded broker (it refuses CreateTopics)."""
    for spec in all_topics(partitions, app_id):
        broker.create_topic(spec.name, spec.partitions)


def ensure_topics_exist(bootstrap: str, partitions: int, app_id: str = APP_ID, **client: object) -> list[str]:
    """On an external cluster, create the topics that are missing, with their retention and
    compaction settings (replication factor: env RATIOWATCH_REPLICATION_FACTOR, default the
    smaller of 3 and the number of brokers). Returns the names created. A ``ratiowatch broker``
    (the mock cluster) already has them all, so nothing is asked of it."""
    from kafka import KafkaConsumer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    # kafka-python 2.3's newest ApiVersions probe gets an answer from the embedded broker it cannot
    # decode (it falls back, after logging an error); Kafka >= 3.0 speaks what (3, 0) selects.
    client.setdefault("api_version", (3, 0))
    # A plain consumer's metadata tells which topics exist: the admin client's list_topics parses
    # fields the embedded broker fills differently and fails on it.
    probe = KafkaConsumer(bootstrap_servers=bootstrap, client_id="ratiowatch-probe", **client)
    try:
        existing = probe.topics()
        brokers = len(probe._client.cluster.brokers()) or 1
    finally:
        probe.close()
    missing = [s for s in all_topics(partitions, app_id) if s.name not in existing]
    if not missing:
        return []
    rf = int(os.environ.get("RATIOWATCH_REPLICATION_FACTOR") or min(3, brokers))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ratiowatch-admin", **client)
    try:
        for s in missing:
            try:
                admin.create_topics([NewTopic(s.name, s.partitions, rf, topic_configs=topic_configs(s, rf))])
            except TopicAlreadyExistsError:
                pass  # another worker starting at the same time made it
        log.info("created topics: %s", ", ".join(s.name for s in missing))
        return [s.name for s in missing]
    finally:
        admin.close()


def create_app(broker_url: str, *, partitions: int, app_id: str = APP_ID,
               datadir: str | os.PathLike[str] | None = None, **extra: object) -> faust.App:
    """A faust app wired for ratiowatch. ``extra`` goes to faust.App (e.g. broker_credentials)."""
    datadir = Path(datadir or os.environ.get("RATIOWATCH_DATADIR", "ratiowatch-data"))
    (datadir / app_id).mkdir(parents=True, exist_ok=True)
    settings: dict[str, object] = dict(
        broker=broker_url,
        store="memory://",            # state is rebuilt from the changelog topics at start
        topic_partitions=partitions,
        # Topics are created by ratiowatch itself (ensure_topics / ensure_topics_exist) with their
        # settings, on the embedded broker (which refuses CreateTopics) and real Kafka alike.
        topic_allow_declare=False,
        topic_disable_leader=True,    # no leader-election topic: one less topic to create
        web_enabled=False,
        datadir=str(datadir / app_id),
        # Commit often: the window of ticks that a killed worker re-reads stays small.
        broker_commit_interval=1.0,
        producer_linger_ms=2,
        producer_max_batch_size=1_000_000,
        stream_buffer_maxsize=16_384,
        consumer_max_fetch_size=4 * 1024 * 1024,
        table_standby_replicas=0,
        # How long the group waits before it gives a silent (killed) worker's shards to the others:
        # alerts should not stall for faust's default minute. RATIOWATCH_SESSION_TIMEOUT_S overrides.
        broker_session_timeout=float(os.environ.get("RATIOWATCH_SESSION_TIMEOUT_S") or 15.0),
        broker_heartbeat_interval=1.0,
        producer_acks=-1,             # an event or a state write counts once every replica has it
    )
    settings.update(extra)
    app = RatiowatchApp(app_id, **settings)
    return app


# --- batch delivery ---------------------------------------------------------------------------
#
# faust hands every record to a stream as its own event: the consumer waits on it with three
# futures (``wait_first``), the conductor decodes it into an Event, queues it, the stream and its
# ``take`` buffer pass it on and ack it. That costs ~50-80 µs a record, so one worker tops out
# near 12,000 records/s however little the agent does with them. For the tick topics the pipeline
# needs a record's bytes, partition and offset, nothing more, so the consumer below hands each
# fetched batch of a partition to one call and acks it in one step. Everything else stays faust's:
# the group, rebalances, flow control, offset commits, table recovery, and every other topic
# (the notifier's agent on ``events``, for one) goes through the usual per-record path.

BatchHandler = Callable[[int, list[Any]], Awaitable[None]]  # (partition, aiokafka ConsumerRecords)


FETCH_MAX_WAIT_MS = 10


class BatchConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with whole-batch delivery for the topics in
    ``app.batch_handlers``, and ``app.before_commit`` hooks that run after the offsets to commit
    are chosen and before they are committed (the pipeline writes its state there)."""

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
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    await self.perform_seek()  # as faust's getmany: re-read from the committed offsets
                    continue
                generation = app.consumer_generation_id
                for tp, recs in records.items():
                    if not self.flow_active or app.consumer_generation_id != generation:
                        break  # a rebalance started: what was fetched is read again by the new owner
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    handler = handlers.get(tp.topic)
                    if handler is None:
                        await self._deliver_each(tp, recs)
                    else:
                        await acquire_flow_control()
                        await self._deliver_batch(tp, recs, handler)
                    await asyncio.sleep(0)
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

    async def _deliver_batch(self, tp: Any, recs: list[Any], handler: BatchHandler) -> None:
        r_offset = self._read_offset[tp]
        fresh = recs if r_offset is None else [r for r in recs if r.offset >= r_offset]
        if not fresh:
            return
        acks_enabled = self.app.topics.acks_enabled_for(tp.topic)
        if acks_enabled:
            # Offsets that will never arrive (a compacted or transactional topic) must not hold
            # the commit back: faust records them as gaps, per record; here per batch.
            prev = r_offset
            for r in fresh:
                if prev and r.offset - prev > 1:
                    await self._add_gap(tp, prev + 1, r.offset)
                prev = r.offset
        await handler(tp.partition, fresh)
        if acks_enabled:
            self._ack_offsets(tp, fresh)
        self._read_offset[tp] = fresh[-1].offset
        self.app.monitor.stream_inbound_time[tp] = monotonic()  # the livelock check's "still moving"

    def _ack_offsets(self, tp: Any, recs: list[Any]) -> None:
        """Consumer.ack for a whole batch: the offsets become committable."""
        committed = self._committed_offset[tp]
        with ack_lock:
            index = self._acked_index[tp]
            acked = self._acked[tp]
            n = 0
            for r in recs:
                offset = r.offset
                if (committed is None or offset >= committed) and offset not in index:
                    index.add(offset)
                    acked.append(offset)
                    n += 1
            self._n_acked += n
        notify(self._waiting_for_ack)

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


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # faust asks the broker to hold an empty fetch for 1.5 s. Kafka answers as soon as data
        # arrives, but the embedded broker (librdkafka's mock) always waits the full time, which
        # would hold a tick arriving at a quiet partition for over a second. A short wait costs
        # only a few empty fetches a second when idle.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Transport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


class RatiowatchApp(faust.App):
    """faust.App with :class:`BatchConsumer`: ``consume_batches(topic, handler)`` subscribes a
    topic whose records are handed over a fetched batch at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}
        self.before_commit: list[Callable[[], Awaitable[None]]] = []

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def consume_batches(self, topic: Any, handler: BatchHandler) -> None:
        """Subscribe ``topic``; ``handler(partition, records)`` gets each fetched batch, in offset
        order, and the batch is acknowledged when it returns. An exception crashes the worker
        (nothing is acknowledged, so the batch is read again after a restart)."""
        for name in topic.topics:
            self.batch_handlers[name] = handler
        self.topics.add(topic)
