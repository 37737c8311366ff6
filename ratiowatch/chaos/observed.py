"""What the chaos run records, from outside the worker: what it sent and the broker acknowledged,
what it read back from the topics, what its HTTP endpoint answered 200 to, and the faults it
injected. Plain data: the run fills it in as it goes, the verdict reads it
(:mod:`ratiowatch.chaos.verify`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .plan import Garbage

__all__ = ["FaultRecord", "Observed"]


@dataclass
class FaultRecord:
    kind: str
    start: float      # monotonic seconds in the chaos process
    end: float        # when it was healed (for a kill: when the new worker was started)
    info: str = ""


@dataclass
class Observed:
    """Everything the run recorded. Times are the chaos process's monotonic seconds."""

    expected_events: list[dict[str, Any]]
    notify: dict[str, tuple[tuple[str, ...], bool]]  # scenario -> (channels, notify_resolved)
    valid_ticks: list[tuple[str, float, int]]           # (symbol, price, ts_ms) in acked records
    date_acks: list[tuple[float, int]]                  # (ack time, ts_ms of the date record)
    valid_records: set[tuple[int, int]]                 # (partition, offset) of records with valid ticks
    route_garbage: list[tuple[int, int, Garbage]]       # bad items in acked ticks records
    late: list[tuple[tuple[str, float, int], int]]      # late tick, dlq copies expected (one per shard)
    feed_garbage: list[Garbage]                         # messages the feed client received
    events: list[tuple[float, bytes]] = field(default_factory=list)
    event_places: list[tuple[int, int, int]] = field(default_factory=list)  # (partition, offset, record ts ms) per event
    ticks_dlq: list[tuple[float, bytes]] = field(default_factory=list)
    notifications_dlq: list[tuple[float, bytes]] = field(default_factory=list)
    receipts: list[tuple[float, list[str]]] = field(default_factory=list)  # 200 answers: event ids
    faults: list[FaultRecord] = field(default_factory=list)
    feed_connected: list[float] = field(default_factory=list)
    worker_exits: list[str] = field(default_factory=list)  # exits the run did not cause
