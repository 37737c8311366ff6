"""Every Kafka topic ratiowatch uses, in one place, with its partitioning and retention.

The embedded broker refuses CreateTopics, so this list is what it is created from (faust's
changelog topics included); on real Kafka, ``ratiowatch topics --create`` or faust itself
declares them with the settings below.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["APP_ID", "TopicSpec", "topic_configs", "TICKS", "TICKS_DLQ", "SHARD_TICKS", "EVENTS", "DELIVERIES",
           "NOTIFICATIONS_DLQ", "SCENARIO_STATUS", "SILENCES", "SCENARIOS", "CONTROL_DLQ", "STATE_TABLE", "changelog", "all_topics"]

APP_ID = "ratiowatch"

TICKS = "ticks"                     # key: symbol (one tick) or source id (a batch); value: tick JSON or array
TICKS_DLQ = "ticks.dlq"             # rejected ticks and feed messages, each with its reason
SHARD_TICKS = "ratiowatch-ticks-by-shard"  # ticks re-keyed to the shard that owns the scenarios using them
EVENTS = "events"                   # key: scenario id; value: event JSON (schemas/event.v1.json)
DELIVERIES = "deliveries"           # one record per notification attempt and outcome
NOTIFICATIONS_DLQ = "notifications.dlq"  # notifications that exhausted their retries
SCENARIO_STATUS = "scenario-status"  # key: scenario id; value: its latest status JSON (compacted)
SILENCES = "silences"               # key: silence id; value: the silence JSON (compacted; notifiers/silences.py)
SCENARIOS = "scenarios"             # key: scenario id; value: the scenario and its version (compacted; model/spec.py)
CONTROL_DLQ = "control.dlq"         # records on scenarios or silences that are not what those topics hold

STATE_TABLE = "scenario-state"      # scenario id -> its series, closes, armed flags, applied offset


def changelog(table: str, app_id: str = APP_ID) -> str:
    """faust's changelog topic name for ``table``."""
    return f"{app_id}-{table}-changelog"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    retention_ms: int | None = None  # None: the cluster default
    doc: str = ""


def all_topics(partitions: int = 8, app_id: str = APP_ID) -> list[TopicSpec]:
    """The topic list for ``partitions`` engine partitions (changelog names depend on the app id)."""
    week = 7 * 24 * 3600 * 1000
    return [
        TopicSpec(TICKS, partitions, retention_ms=24 * 3600 * 1000, doc="ticks in, keyed by symbol or source"),
        TopicSpec(TICKS_DLQ, 1, retention_ms=4 * week, doc="rejected ticks with reasons"),
        TopicSpec(SHARD_TICKS, partitions, retention_ms=24 * 3600 * 1000,
                  doc="repartition: ticks routed to the shard owning the scenarios that use them"),
        TopicSpec(EVENTS, partitions, retention_ms=52 * week, doc="crossing events, the downstream contract"),
        TopicSpec(DELIVERIES, 1, retention_ms=4 * week, doc="notification attempts and outcomes (audit)"),
        TopicSpec(NOTIFICATIONS_DLQ, 1, retention_ms=4 * week, doc="notifications that exhausted retries"),
        TopicSpec(SCENARIO_STATUS, partitions, compacted=True,
                  doc="each scenario's latest status, read whole by every web process"),
        # One partition: every notify and web process reads all of it, and one partition keeps
        # an add and its expire in order.
        TopicSpec(SILENCES, 1, compacted=True, doc="silences (mutes) by id, read whole by notify and web"),
        # The scenarios in force, the source of truth for engine, notify and web (one partition,
        # for the same reasons); written by `ratiowatch scenarios apply`, a tombstone removes one.
        TopicSpec(SCENARIOS, 1, compacted=True, doc="scenarios by id with their versions, read whole by every role"),
        TopicSpec(CONTROL_DLQ, 1, retention_ms=4 * week, doc="bad records found on scenarios or silences, with reasons"),
        TopicSpec(changelog(STATE_TABLE, app_id), partitions, compacted=True, doc="scenario state changelog"),
    ]


def topic_configs(spec: TopicSpec, replication_factor: int) -> dict[str, str]:
    """The topic-level Kafka settings for ``spec``."""
    cfg = {"cleanup.policy": "compact" if spec.compacted else "delete"}
    if spec.retention_ms is not None:
        cfg["retention.ms"] = str(spec.retention_ms)
    if replication_factor >= 3:
        # With acks=all a write then needs two live copies: one broker can fail without losing an
        # acknowledged event or state change, and producers keep going while it is down.
        cfg["min.insync.replicas"] = "2"
    return cfg
