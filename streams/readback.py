"""Read a topic back with a plain kafka-python consumer, as a downstream service would.

Used by ``replay`` and the tests: no consumer group (manual assignment from the beginning), so
it never disturbs the workers' offsets, and it stops at the end offsets it saw when it started.
"""

from __future__ import annotations

import time
from typing import Iterator

from kafka import KafkaConsumer, TopicPartition

__all__ = ["read_topic"]


def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 30.0,
               **client: object) -> Iterator[tuple[bytes | None, bytes, int, int]]:
    """Yield ``(key, value, partition, offset)`` of every record from the beginning to the end
    offsets current at the call. Raises TimeoutError if they cannot be read within ``timeout_s``.
    ``client``: extra kafka-python settings (security)."""
    # api_version pinned: kafka-python 2.3's newest ApiVersions probe is one the embedded broker
    # answers in a form it cannot decode (it falls back, but logs an error first).
    client.setdefault("api_version", (3, 0))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=1000, client_id="ratiowatch-readback", **client)
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
