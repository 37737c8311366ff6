"""Read a topic back with a plain kafka-python consumer, as a downstream service would.

Used by ``replay``, ``dlq retry`` and the tests: no consumer group (manual assignment from the
beginning), so it never disturbs the workers' offsets, and it stops at the end offsets it saw when
it started. The consumer comes with the settings of :func:`ratiowatch.streams.clients.kafka_python_kwargs_for`
(the version pin and the cluster's TLS/SASL settings), like every other Kafka client of ratiowatch.
"""

from __future__ import annotations

import time
from typing import Iterator

from kafka import KafkaConsumer, TopicPartition

from .clients import kafka_python_kwargs_for
from .kafka_settings import KafkaSecurity

__all__ = ["read_topic"]


def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 30.0, sec: KafkaSecurity | None = None,
               **client: object) -> Iterator[tuple[bytes | None, bytes, int, int]]:
    """Yield ``(key, value, partition, offset)`` of every record from the beginning to the end
    offsets current at the call. Raises TimeoutError if they cannot be read within ``timeout_s``.
    ``sec``: the cluster's security settings (default: those of the environment, see
    :func:`ratiowatch.streams.kafka_settings.load_kafka_security`); ``client``: further kafka-python
    settings, which win over the defaults (e.g. a role's ``client_kwargs``)."""
    settings = {**kafka_python_kwargs_for(sec), "client_id": "ratiowatch-readback", **client}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=1000, **settings)
    try:
        parts = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout_s
        while parts is None and time.monotonic() < deadline:
            time.sleep(0.1)
            parts = consumer.partitions_for_topic(topic)
        if parts is None:
            raise TimeoutError(f"topic {topic!r} not found at {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > consumer.position(tp)}
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic!r}: partitions {sorted(tp.partition for tp in remaining)} "
                                   f"not read to their end within {timeout_s:g}s")
            for tp, records in consumer.poll(timeout_ms=200).items():
                for r in records:
                    if r.offset < end[tp]:
                        yield r.key, r.value, r.partition, r.offset
                if consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()
