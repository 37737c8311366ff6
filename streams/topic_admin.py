"""Creating ratiowatch's topics on a real cluster, and checking their partition counts: one place
for ``ratiowatch topics --create`` and for a role starting against a cluster.

A topic with another partition count than ratiowatch expects is an error, not a detail: the shard
topic and the state changelog must have one partition per shard (they are co-partitioned), and a
scenario's events and status are keyed to a partition by the same count.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from .topics import TopicSpec, topic_configs

__all__ = ["EmbeddedBrokerRefuses", "existing_partitions", "create_topics", "partition_problems", "parts"]


class EmbeddedBrokerRefuses(RuntimeError):
    """The broker has no CreateTopics (librdkafka's mock cluster): its topics are made at its start."""


def parts(n: int) -> str:
    return f"{n} partition" + ("" if n == 1 else "s")


def existing_partitions(bootstrap: str, client_kw: dict[str, Any]) -> dict[str, int]:
    """topic -> partitions, from a plain consumer's metadata (the admin client's list_topics parses
    fields the embedded broker fills differently, and fails on it)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="ratiowatch-topics", enable_auto_commit=False,
                             **client_kw)
    try:
        return {t: len(consumer.partitions_for_topic(t) or ()) for t in consumer.topics()}
    finally:
        consumer.close()


def partition_problems(specs: Iterable[TopicSpec], have: dict[str, int]) -> dict[str, str]:
    """topic -> what is wrong with it (missing, or another partition count). Pure."""
    out = {}
    for s in specs:
        if s.name not in have:
            out[s.name] = "missing"
        elif have[s.name] != s.partitions:
            out[s.name] = f"has {parts(have[s.name])}, not {s.partitions}"
    return out


def create_topics(bootstrap: str, specs: list[TopicSpec], rf: int, client_kw: dict[str, Any],
                  wait_s: float = 0.0) -> dict[str, str]:
    """Create each topic with its retention and compaction; topic -> "created (...)", "exists" or
    "FAILED: why". Waits up to ``wait_s`` for brokers to answer and for enough of them to hold
    ``rf`` replicas (a starting cluster). Raises EmbeddedBrokerRefuses on a mock cluster."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import (IncompatibleBrokerVersion, InvalidReplicationFactorError, KafkaError,
                              NoBrokersAvailable, TopicAlreadyExistsError)

    # The admin client alone probes the broker's API versions instead of taking the pin: the probe is
    # how an embedded broker, which has no CreateTopics, is recognised (IncompatibleBrokerVersion);
    # with the pin it would be sent CreateTopics and fail obscurely. Its security settings are the same.
    admin_kw = {k: v for k, v in client_kw.items() if k != "api_version"}
    deadline = time.monotonic() + wait_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ratiowatch-admin", **admin_kw)
            break
        except NoBrokersAvailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(2.0)
    outcome: dict[str, str] = {}
    try:
        for s in specs:
            topic = NewTopic(s.name, s.partitions, rf, topic_configs=topic_configs(s, rf))
            while s.name not in outcome:
                try:
                    admin.create_topics([topic])
                    outcome[s.name] = f"created ({parts(s.partitions)}, replication factor {rf})"
                except TopicAlreadyExistsError:
                    outcome[s.name] = "exists"  # another process starting at the same time made it
                except IncompatibleBrokerVersion:
                    raise EmbeddedBrokerRefuses(bootstrap) from None
                except InvalidReplicationFactorError as e:
                    # A starting cluster has fewer registered brokers than the replication factor.
                    if time.monotonic() >= deadline:
                        outcome[s.name] = f"FAILED: fewer live brokers than replication factor {rf}: {e}"
                    else:
                        time.sleep(2.0)
                except KafkaError as e:
                    outcome[s.name] = f"FAILED: {type(e).__name__}: {e}"
    finally:
        admin.close()
    return outcome
