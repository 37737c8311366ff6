"""The faust app: one factory for the embedded broker and real Kafka alike.

The embedded broker refuses CreateTopics, so faust never declares topics
(``topic_allow_declare=False``): :func:`ensure_topics` creates them through the mock API, and
:func:`ensure_topics_exist` through the admin API of a real cluster. The only other difference
is that the embedded broker forgets everything when its process ends.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import faust

from .broker import EmbeddedBroker
from .topics import APP_ID, all_topics, topic_configs

__all__ = ["create_app", "ensure_topics", "ensure_topics_exist"]

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
        producer_acks=-1,             # an event or a state write counts once every replica has it
    )
    settings.update(extra)
    app = faust.App(app_id, **settings)
    return app
