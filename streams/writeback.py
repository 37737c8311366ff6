"""Write a few records to a topic and wait until the cluster has them: the control commands
(``scenarios apply``, ``silence``) publish what the running roles follow."""

from __future__ import annotations

from typing import Iterable

from .clients import kafka_python_kwargs_for
from .kafka_settings import KafkaSecurity

__all__ = ["write_records"]


def write_records(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes | None]], *, client_id: str,
                  sec: KafkaSecurity | None = None, timeout_s: float = 30.0) -> int:
    """Write ``(key, value)`` records in order (value None: a tombstone), acks=all; returns how many.
    Raises the first delivery error: a command must not say it published what the cluster refused."""
    from kafka import KafkaProducer

    # One request in flight at a time keeps the given order on the topic, retries included.
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, acks="all",
                             max_in_flight_requests_per_connection=1, **kafka_python_kwargs_for(sec))
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in records]
        for f in futures:
            f.get(timeout=timeout_s)
        return len(futures)
    finally:
        producer.close()
