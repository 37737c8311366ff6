"""The faust app: one factory for the embedded broker and real Kafka alike.

The embedded broker refuses CreateTopics, so faust never declares topics
(``topic_allow_declare=False``): :func:`ensure_topics` creates them through the mock API, and
:func:`ensure_topics_exist` through the admin API of a real cluster. The only other difference
is that the embedded broker forgets everything when its process ends.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import Any, Awaitable, Callable

import faust

from .broker import EmbeddedBroker
from .clients import check_reachable
from .faust_consumer import (IDEMPOTENCE_ENV, IDEMPOTENCE_OFF_COST, BatchHandler, RoundHook, Transport,
                             check_faust_version, idempotence_enabled)
from .topic_admin import create_topics, existing_partitions, partition_problems
from .topics import APP_ID, all_topics

__all__ = ["create_app", "ensure_topics", "ensure_topics_exist", "RatiowatchApp"]

log = logging.getLogger(__name__)

GC_THRESHOLD = (100_000, 50, 100)  # see _tune_gc


def ensure_topics(broker: EmbeddedBroker, partitions: int, app_id: str = APP_ID) -> None:
    """Create every topic ratiowatch uses on the embedded broker (it refuses CreateTopics)."""
    for spec in all_topics(partitions, app_id):
        broker.create_topic(spec.name, spec.partitions)


def ensure_topics_exist(bootstrap: str, partitions: int, app_id: str = APP_ID, **client: object) -> list[str]:
    """On an external cluster, create the topics that are missing, with their retention and
    compaction settings (replication factor: env RATIOWATCH_REPLICATION_FACTOR, default the
    smaller of 3 and the number of brokers), and check every topic's partition count. Returns the
    names created. A ``ratiowatch broker`` (the mock cluster) has them all from its start.
    RuntimeError names a topic that cannot be used as it is (another partition count, or not
    created): a role must not start on it."""
    from kafka import KafkaConsumer

    # kafka-python 2.3's newest ApiVersions probe gets an answer from the embedded broker it cannot
    # decode (it falls back, after logging an error); Kafka >= 3.0 speaks what (3, 0) selects.
    client.setdefault("api_version", (3, 0))
    check_reachable(bootstrap)
    specs = all_topics(partitions, app_id)
    probe = KafkaConsumer(bootstrap_servers=bootstrap, client_id="ratiowatch-probe", enable_auto_commit=False, **client)
    try:
        brokers = len(probe._client.cluster.brokers()) or 1
    finally:
        probe.close()
    have = existing_partitions(bootstrap, client)
    missing = [s for s in specs if s.name not in have]
    created: list[str] = []
    if missing:
        rf = int(os.environ.get("RATIOWATCH_REPLICATION_FACTOR") or min(3, brokers))
        outcome = create_topics(bootstrap, missing, rf, client)
        created = [n for n, o in outcome.items() if o.startswith("created")]
        log.info("created topics: %s", ", ".join(created) or "none")
        have = existing_partitions(bootstrap, client)
    problems = partition_problems(specs, have)
    if problems:
        raise RuntimeError("topics not as ratiowatch needs them for --partitions/settings.partitions "
                           f"{partitions}: " + "; ".join(f"{n} {why}" for n, why in problems.items())
                           + " (see docs/deployment.md, \"Adding partitions\")")
    return created


def create_app(broker_url: str, *, partitions: int, app_id: str = APP_ID,
               datadir: str | os.PathLike[str] | None = None, **extra: object) -> faust.App:
    """A faust app wired for ratiowatch. ``extra`` goes to faust.App (e.g. broker_credentials).
    Its producer is idempotent unless RATIOWATCH_IDEMPOTENCE=off (see streams/faust_consumer.py)."""
    check_faust_version()
    idempotent = idempotence_enabled()  # a bad value is a ConfigError naming the variable (exit 2)
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
    app.idempotent = idempotent
    if not idempotent:
        log.warning("%s=off: the %s producer is not idempotent (for brokers that refuse producer ids): %s",
                    IDEMPOTENCE_ENV, app_id, IDEMPOTENCE_OFF_COST)
    _tune_gc()
    return app


def _tune_gc() -> None:
    # A worker allocates a few container objects per tick (decoded rows, groups) and frees them
    # within the batch: with Python's default threshold (700 allocations) the collector runs
    # thousands of times a second and its generation-2 passes rescan every scenario's state,
    # ~17% of the work at 100,000 ticks/s. Collect far less often; reference counting frees
    # the per-tick objects anyway, the collector is only needed for the odd cycle.
    if gc.get_threshold()[0] < GC_THRESHOLD[0]:
        gc.set_threshold(*GC_THRESHOLD)


class RatiowatchApp(faust.App):
    """faust.App with :class:`BatchConsumer`: ``consume_batches(topic, handler)`` subscribes a
    topic whose records are handed over a fetched batch at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}
        self.before_commit: list[Callable[[], Awaitable[None]]] = []
        self.commit_due: Callable[[], bool] | None = None  # None: every commit interval
        self.after_fetch_round: list[RoundHook] = []
        self.idempotent = True  # the producer asks for a producer id (create_app: RATIOWATCH_IDEMPOTENCE)

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)

    def consume_batches(self, topic: Any, handler: BatchHandler) -> None:
        """Subscribe ``topic``; ``handler([(partition, records, high watermark), ...])`` gets what each fetch brought
        from it, each partition's records in offset order, acknowledged when it returns. An
        exception crashes the worker (nothing is acknowledged, so it is read again after a restart)."""
        for name in topic.topics:
            self.batch_handlers[name] = handler
        self.topics.add(topic)
