"""Every Kafka client ratiowatch builds comes from here, so every one of them gets the cluster's
security settings (TLS/SASL from the environment, see :mod:`streams.kafka_settings`) and the
version pin the embedded broker needs.

- :func:`aio_producer` / :func:`aio_consumer`: aiokafka clients for the roles' own reads and
  writes outside faust (source, web, notify read-back, dlq retry).
- :func:`kafka_python_kwargs_for`: keyword arguments for kafka-python clients (admin, probes,
  read-back, the examples).
- faust apps get theirs through :func:`streams.kafka_settings.faust_app_kwargs` in
  :func:`streams.app.create_app`.
"""

from __future__ import annotations

from typing import Any

from .kafka_settings import KafkaSecurity, aiokafka_kwargs, kafka_python_kwargs, load_kafka_security

__all__ = ["security", "topic_partitions", "aio_producer", "aio_consumer", "kafka_python_kwargs_for", "check_reachable",
           "BrokerUnreachable"]

# kafka-python 2.3's newest ApiVersions probe gets an answer from the embedded broker that it
# cannot decode (it falls back after logging an ERROR); Kafka >= 3.0 speaks what (3, 0) selects.
KAFKA_PYTHON_API_VERSION = (3, 0)


def security(sec: KafkaSecurity | None = None) -> KafkaSecurity:
    """The given settings, or those of the environment (PLAINTEXT when nothing is set)."""
    return sec if sec is not None else load_kafka_security()


def aio_producer(bootstrap: str, *, client_id: str, sec: KafkaSecurity | None = None,
                 idempotent: bool = False, **kw: Any) -> Any:
    """An (unstarted) aiokafka producer. ``idempotent`` asks the broker for a producer id, so a
    retried request is never written twice (a broker that refuses InitProducerId fails at start)."""
    from aiokafka import AIOKafkaProducer

    settings: dict[str, Any] = {"acks": "all", "linger_ms": 2}
    if idempotent:
        settings["enable_idempotence"] = True
    settings.update(kw)
    return AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=client_id,
                            **aiokafka_kwargs(security(sec)), **settings)


def aio_consumer(bootstrap: str, *, client_id: str, group_id: str | None = None,
                 sec: KafkaSecurity | None = None, **kw: Any) -> Any:
    """An (unstarted) aiokafka consumer; ``group_id`` None: no group, partitions are assigned by
    hand (readers that must see every partition, such as the web role)."""
    from aiokafka import AIOKafkaConsumer

    settings: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest"}
    settings.update(kw)
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id, group_id=group_id,
                            **aiokafka_kwargs(security(sec)), **settings)


async def topic_partitions(consumer: Any, topic: str) -> set[int]:
    """The partitions of ``topic`` as a started aiokafka consumer knows them, its metadata refreshed
    once when it holds none yet (a client that has not asked about the topic); empty when the
    cluster has no such topic."""
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
    return set(parts or ())


class BrokerUnreachable(ConnectionError):
    """No bootstrap server of the cluster accepts a connection."""


def check_reachable(bootstrap: str, timeout_s: float = 10.0) -> None:
    """Raise :class:`BrokerUnreachable` unless some bootstrap server accepts a TCP connection
    within ``timeout_s``. kafka-python's clients retry an unreachable cluster for minutes; a role
    must rather fail at start, saying so (its restart policy tries again)."""
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    errors = []
    while True:
        for hostport in bootstrap.split(","):
            host, _, port = hostport.rpartition(":")
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=2.0).close()
                return
            except OSError as e:
                errors.append(f"{hostport}: {e.strerror or e}")
        if time.monotonic() >= deadline:
            raise BrokerUnreachable(f"cannot reach the broker at {bootstrap} within {timeout_s:g}s "
                                    f"({'; '.join(errors[-len(bootstrap.split(',')):])})")
        time.sleep(0.5)


def kafka_python_kwargs_for(sec: KafkaSecurity | None = None) -> dict[str, Any]:
    """Keyword arguments for kafka-python's consumer, producer and admin client."""
    return {"api_version": KAFKA_PYTHON_API_VERSION, **kafka_python_kwargs(security(sec))}
