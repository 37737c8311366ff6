"""Events on ``events`` more than once: the engine's duplicates, or the embedded broker's copies of
a retried produce batch. Pure.

The embedded broker (librdkafka's mock cluster, ``streams/broker.py``) checks producer ids and
sequence numbers only for transactional producers. When the answer to a produce request it had
already appended is lost (a broker outage, a timeout), the engine's idempotent producer retries
that batch and the mock appends it a second time. Kafka (>= 0.11) recognises the retry by its producer id and
sequence number, stores nothing and answers with the original offsets: one copy.

Such a copy is recognisable from outside: in one partition, the N records of the batch at offsets
``[s, s+N)`` come again, value for value and with the same record timestamps (set by the producer
when it built the batch), at ``[s+N, s+2N)``, right after the original. It is classified as a
*broker retry copy*. Anything else is a *duplicate* that fails the run: an engine that sends an
event again builds a new batch (a later record timestamp), and a copy in another partition, not
right after its original, or with another value is not a retried batch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

__all__ = ["Placed", "Repeats", "classify_repeats", "is_batch_copy", "blocks_evidence", "duplicates_where",
           "BROKER_RETRY_WHY"]

BROKER_RETRY_WHY = (
    "written twice by the embedded broker, not the engine: librdkafka's mock cluster checks producer "
    "sequence numbers only for transactional producers, so when the answer to a produce request it had "
    "appended was lost (the broker went down, or the request timed out), the idempotent producer's retry "
    "of that batch was appended again, right after the original. Kafka drops such a retry by its "
    "producer id and sequence number and stores the batch once (docs/faults.md, finding 6)")


@dataclass(frozen=True)
class Placed:
    """One record read from ``events``: where it is on the topic, and what it holds."""

    partition: int
    offset: int
    record_ts_ms: int
    value: bytes


@dataclass
class Repeats:
    """Records beyond the first per event id, split by where they come from."""

    duplicated: dict[str, int] = field(default_factory=dict)    # event id -> extra records not explained
    broker_copies: dict[str, int] = field(default_factory=dict)  # event id -> broker retry copies
    blocks: set[tuple[int, int, int]] = field(default_factory=set)  # (partition, first offset, batch length)


Log = Mapping[int, tuple[int, bytes]]  # one partition: offset -> (record timestamp, value)


def _block_start(log: Log, first: int, second: int) -> int | None:
    """The start ``s`` of a block ``[s, s+n)`` holding ``first`` that is repeated exactly at
    ``[s+n, s+2n)``, where ``n = second - first``; None if there is none."""
    n = second - first
    if n <= 0:
        return None

    def same(x: int) -> bool:
        a = log.get(x)
        return a is not None and a == log.get(x + n)

    if not same(first):
        return None
    lo = first
    while lo > first - n + 1 and same(lo - 1):
        lo -= 1
    hi = first
    while hi < first + n - 1 and same(hi + 1):
        hi += 1
    # A run of n offsets around ``first`` whose records equal those n further on: the block and its copy.
    return lo if hi - lo + 1 >= n else None


def is_batch_copy(log: Log, first: int, second: int) -> bool:
    """Whether the record at offset ``second`` is the broker's copy of the one at ``first``: the
    block of the original batch repeated value for value, timestamp for timestamp, right after it."""
    return _block_start(log, first, second) is not None


def classify_repeats(records: Sequence[Placed | None], ids: Sequence[str | None]) -> Repeats:
    """``records[i]`` is where record i of ``events`` is (None if unknown) and ``ids[i]`` its event id
    (None if unreadable). Each event's records in (partition, offset) order: a record is a broker
    retry copy of the one before it when :func:`is_batch_copy` says so, otherwise a duplicate. A
    record whose place is unknown is always a duplicate."""
    logs: dict[int, dict[int, tuple[int, bytes]]] = defaultdict(dict)
    by_id: dict[str, list[int]] = defaultdict(list)
    for i, eid in enumerate(ids):
        if eid is None:
            continue
        by_id[eid].append(i)
        r = records[i] if i < len(records) else None
        if r is not None:
            logs[r.partition][r.offset] = (r.record_ts_ms, r.value)
    out = Repeats()
    for eid, idx in by_id.items():
        if len(idx) < 2:
            continue
        placed = sorted((records[i] if i < len(records) else None for i in idx),
                        key=lambda r: (1, 0, 0) if r is None else (0, r.partition, r.offset))
        dup = copies = 0
        for a, b in zip(placed, placed[1:]):
            s = None
            if a is not None and b is not None and a.partition == b.partition:
                s = _block_start(logs[a.partition], a.offset, b.offset)
            if s is None:
                dup += 1
            else:
                copies += 1
                out.blocks.add((a.partition, s, b.offset - a.offset))
        if dup:
            out.duplicated[eid] = dup
        if copies:
            out.broker_copies[eid] = copies
    return out


def _faults_before(faults: Sequence[Any], t: float) -> list[str]:
    """The faults that began in the 10 s before ``t`` (kind, start and end in the run's seconds)."""
    return [f"{f.kind}@{f.start:.1f}-{f.end:.1f}s" for f in faults if t - 10 <= f.start <= t]


def blocks_evidence(blocks: set[tuple[int, int, int]], read_at: Mapping[tuple[int, int], float],
                    records: Mapping[tuple[int, int], Placed], faults: Sequence[Any]) -> list[dict[str, Any]]:
    """Each broker retry block (first 20 by the time its copy was read): the original's offsets, the
    copy's, the record timestamps they share, when the copy was read and the faults just before."""
    out = []
    for p, s, n in blocks:
        t = read_at.get((p, s + n), float("nan"))
        ts = [records[(p, o)].record_ts_ms for o in range(s, s + n) if (p, o) in records]
        out.append({"partition": p, "offsets": [s, s + n - 1], "copy_offsets": [s + n, s + 2 * n - 1],
                    "record_ts_ms": [min(ts), max(ts)] if ts else None, "copy_read_at_s": round(t, 2),
                    "faults_before": _faults_before(faults, t)})
    out.sort(key=lambda b: b["copy_read_at_s"])
    return out[:20]


def duplicates_where(copies: Mapping[str, Sequence[int]], read_at: Sequence[float],
                     records: Sequence[Placed | None], faults: Sequence[Any],
                     broker_only: set[str]) -> list[dict[str, Any]]:
    """For each event on the topic more than once (first 20; the duplicates before the events
    whose repeats are all broker retry copies, ``broker_only``): where each copy is (partition,
    offset, the record's timestamp), when the reader got it, and the faults that began in the 10 s
    before it arrived -- the evidence to tell a producer retry from a worker re-applying ticks."""
    order = sorted(copies, key=lambda e: (e in broker_only, read_at[copies[e][0]]))
    out = []
    for eid in order[:20]:
        rows = []
        for i in copies[eid]:
            r = records[i] if i < len(records) else None
            p, o, ts = (r.partition, r.offset, r.record_ts_ms) if r is not None else (-1, -1, -1)
            rows.append({"partition": p, "offset": o, "record_ts_ms": ts, "read_at_s": round(read_at[i], 2),
                         "faults_before": _faults_before(faults, read_at[i])})
        out.append({"event_id": eid, "broker_retry_copy": eid in broker_only, "copies": rows})
    return out
