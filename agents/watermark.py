"""Event time across source partitions: which waiting ticks a shard may apply now. Pure.

A shard is fed from every ``ticks`` partition (the route stage re-keys ticks by the scenarios
using them), and each partition arrives at its own pace: a backlog keyed by symbol is read
partition by partition, a restarted worker reads its partitions from where it left them. Judging
lateness against whichever tick arrived first would throw away the partitions read second. So,
as Flink does with per-partition watermarks and Kafka Streams with its stream time:

- **Progress.** For every source partition the route stage reports how far it has come in event
  time: the newest valid tick it has routed from it, to any shard. Each segment of a shard record
  carries it, and partitions with nothing for this shard send it alone.
- **Watermark.** The shard's watermark is the smallest progress over the source partitions.
  Waiting ticks older than the watermark are applied, in event-time order: no partition can still
  bring an older tick, unless it breaks its own order. Ticks at the watermark wait, so a
  same-timestamp group is always applied whole.
- **Idle partitions** (in the manner of Kafka Streams' ``max.task.idle.ms``). A partition whose
  router says it is *caught up* (it has routed everything up to the partition's end offset) holds
  a waiting tick back only for ``idle_ms``, counted from the later of the tick's arrival and the
  partition's own last new tick: the time another partition's older record, produced before it,
  may take to arrive. Counting from the tick's arrival matters after a pause (a feed that starts,
  the market's open): every partition is quiet then, and the first record to arrive must still
  wait for the others' records of the same moment, or theirs would be applied behind it. A
  partition with a backlog is never caught up, so it holds the watermark however long it takes
  to arrive. A caught-up claim is only believed while it is fresh (``claim_ttl_s``): a router
  that died stops renewing it, and its partitions hold the watermark until another router takes
  them over. Nor is it believed while the shard has not read its own input to the end (``idle``
  False: a shard catching up on the shard topic after a restart, or slower than its routers):
  the claims it has read are older than the records still waiting there, so every partition
  holds the watermark at its progress. When no partition holds a tick, it is applied.
- **Late ticks.** The *frontier* is the newest event time the shard has applied. A tick older than
  ``frontier - allowed_lateness`` is late (dead-lettered by the caller); one within it is applied
  as a correction (see agents/engine.py: it re-evaluates at the scenario's last evaluation time).
- **What is kept.** The waiting ticks are not stored (a backlog's can run to many megabytes):
  each carries the offset of the shard record it came in (and the time it arrived), the caller
  holds that topic's commit back to the oldest of them (:meth:`EventTimeGate.oldest_record`),
  and after a restart the re-read ticks newer than the stored frontier are exactly the ones that
  were waiting (a tick is only applied once the watermark has passed it, and the frontier is the
  newest applied).

Time ``now`` is a monotonic clock in seconds, passed in.
"""

from __future__ import annotations

from bisect import bisect_left
from operator import itemgetter
from typing import Any, Iterable, Sequence

__all__ = ["EventTimeGate", "NO_TIME"]

NO_TIME = -1  # no event time seen yet
_EVENT_TIME = itemgetter(2)  # of a tick row (symbol, price, ts_ms); admitted: + (record, arrived)
_ARRIVED = 4


class _Source:
    """What the shard knows of one ``ticks`` partition."""

    __slots__ = ("progress", "caught_up", "claimed_at", "quiet_since")

    def __init__(self, progress: int = NO_TIME) -> None:
        self.progress = progress      # newest event time routed from the partition
        self.caught_up = False        # its router's latest word: routed up to the end offset
        self.claimed_at = -1.0        # when that word arrived
        self.quiet_since = -1.0       # since when the partition brought nothing new


class EventTimeGate:
    """The waiting ticks of one shard and the watermark that releases them."""

    __slots__ = ("sources", "pending", "frontier", "idle_s", "lateness_ms", "claim_ttl_s", "corrections", "_sorted")

    def __init__(self, partitions: int, *, idle_ms: float, lateness_ms: int, claim_ttl_s: float = 5.0) -> None:
        self.sources: dict[int, _Source] = {p: _Source() for p in range(partitions)}
        self.pending: list[Sequence[Any]] = []   # admitted, not applied yet
        self.frontier = NO_TIME                  # newest event time applied
        self.idle_s = idle_ms / 1000.0
        self.lateness_ms = lateness_ms
        self.claim_ttl_s = claim_ttl_s
        self.corrections = 0                     # ticks applied behind the frontier (allowed lateness)
        self._sorted = True

    # --- what arrives ---------------------------------------------------------------------------

    def observe(self, partition: int, progress: int, caught_up: bool, now: float) -> bool:
        """A router's report on ``partition``: its progress and whether it is caught up. Returns
        whether the progress moved (what the durable form keeps)."""
        src = self.sources.get(partition)
        if src is None:  # a partition beyond the expected count (the topic grew): it counts too
            src = self.sources[partition] = _Source()
        moved = progress > src.progress
        if moved:
            src.progress = progress
            src.quiet_since = now
        elif src.quiet_since < 0 or (caught_up and not src.caught_up):
            src.quiet_since = now  # idle time counts from when it was first known caught up
        src.caught_up = caught_up
        src.claimed_at = now
        return moved

    def is_late(self, ts_ms: int) -> bool:
        """Whether a tick at ``ts_ms`` is past the allowed lateness (the boundary is kept: a tick
        exactly ``allowed_lateness`` behind the frontier is still applied)."""
        return self.frontier != NO_TIME and ts_ms < self.frontier - self.lateness_ms

    def admit(self, ticks: Iterable[list[Any]], record: int, now: float) -> list[list[Any]]:
        """Queue the ticks that are not late, each marked with ``record`` (the offset of the shard
        record they came in: ``tick[3]``) and ``now`` (their arrival: ``tick[4]``); returns the
        late ones (to dead-letter)."""
        late: list[list[Any]] = []
        floor = self.frontier - self.lateness_ms if self.frontier != NO_TIME else None
        pending = self.pending
        for t in ticks:
            if floor is not None and t[2] < floor:
                late.append(t)
                continue
            if self._sorted and pending and t[2] < pending[-1][2]:
                self._sorted = False
            t.append(record)
            t.append(now)
            pending.append(t)
        return late

    def readmit(self, ticks: Iterable[list[Any]], record: int, now: float) -> int:
        """Ticks read again after a restart from a segment already admitted before it: those newer
        than the frontier were waiting then (see the module docstring) and wait again; the rest
        were applied. Returns how many wait again."""
        waiting = [t for t in ticks if t[2] > self.frontier]
        if waiting:
            self.admit(waiting, record, now)
        return len(waiting)

    def oldest_record(self) -> int | None:
        """The offset of the oldest shard record with a tick still waiting (None: none waits)."""
        return min((t[3] for t in self.pending), default=None)

    # --- what is released -----------------------------------------------------------------------

    def believed(self, src: _Source, now: float) -> bool:
        """Whether a partition's caught-up word counts: given, and fresh."""
        return src.caught_up and now - src.claimed_at <= self.claim_ttl_s

    def watermark(self, now: float, idle: bool = True) -> int | None:
        """The smallest progress over the partitions that are not (believed) caught up: nothing
        older can still come from them. None: every partition is caught up. Without ``idle``, over
        every partition."""
        wm: int | None = None
        for src in self.sources.values():
            if (not idle or not self.believed(src, now)) and (wm is None or src.progress < wm):
                wm = src.progress
        return wm

    def take_ready(self, now: float, idle: bool = True) -> list[Sequence[Any]]:
        """The waiting ticks no partition holds back, in event-time order (arrival order within a
        timestamp); the frontier moves to the newest. ``idle``: whether caught-up claims count
        (False while the shard's own input has records it has not read: the module docstring)."""
        if not self.pending:
            return []
        if not self._sorted:
            self.pending.sort(key=_EVENT_TIME)  # stable: arrival order kept within a timestamp
            self._sorted = True
        wm = self.watermark(now, idle)
        pending = self.pending
        cut = len(pending) if wm is None else bisect_left(pending, wm, key=_EVENT_TIME)
        if cut and idle:
            cut = self._idle_cut(cut, now)
        if not cut:
            return []
        ready, self.pending = pending[:cut], pending[cut:]
        self.corrections += bisect_left(ready, self.frontier, key=_EVENT_TIME) if ready[0][2] < self.frontier else 0
        if ready[-1][2] > self.frontier:
            self.frontier = ready[-1][2]
        return ready

    def _idle_cut(self, cut: int, now: float) -> int:
        """Where, below ``cut``, the caught-up partitions start holding: at the first waiting tick
        at or past one's progress that has not waited ``idle_s`` since the later of its arrival and
        that partition's last new tick (the module docstring)."""
        pending, recent = self.pending, now - self.idle_s
        quiet_floor: int | None = None  # the lowest progress of the caught-up partitions quiet for idle_s
        for src in self.sources.values():
            if not self.believed(src, now):
                continue
            if src.quiet_since > recent:  # it spoke within idle_s: it holds all at or past its progress
                cut = bisect_left(pending, src.progress, 0, cut, key=_EVENT_TIME)
            elif quiet_floor is None or src.progress < quiet_floor:
                quiet_floor = src.progress
        if quiet_floor is not None:
            # Ticks at or past quiet_floor are held by that partition while they are recent. In
            # event-time order, the first recent one ends what is released (the ones before it
            # have waited out the grace: this scan is paid once per released tick).
            for j in range(bisect_left(pending, quiet_floor, 0, cut, key=_EVENT_TIME), cut):
                if pending[j][_ARRIVED] > recent:  # held with the rest of its timestamp group
                    return bisect_left(pending, pending[j][2], 0, j, key=_EVENT_TIME)
        return cut

    # --- durable form -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        # Claims are not kept: after a restart every partition holds the watermark until its router
        # speaks again, so nothing is applied on the strength of an old word. Waiting ticks are
        # not kept either: they are read again (see the module docstring).
        return {"frontier": self.frontier,
                "progress": {str(p): s.progress for p, s in self.sources.items() if s.progress != NO_TIME}}

    def restore(self, d: dict[str, Any]) -> None:
        self.frontier = int(d["frontier"])
        for p, ts in d["progress"].items():
            src = self.sources.setdefault(int(p), _Source())
            src.progress = max(src.progress, int(ts))
