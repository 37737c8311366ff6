"""The route stage: ``ticks`` -> ``ratiowatch-ticks-by-shard``, with each partition's event-time
progress for the shards' watermarks (agents/watermark.py).

What one fetch brought from ``ticks`` is parsed (bad input to ``ticks.dlq``), cut into chunks and
sent as one shard record per shard, with a segment per source partition. Every segment carries
how far its partition has come in event time, so a shard can tell which ticks can no longer be
overtaken. Shards that get no ticks from a partition still hear of its progress (throttled, see
PROGRESS_EVERY_S), and after each fetch round every shard hears which partitions are caught up
(HEARTBEAT_S): a quiet or empty partition then stops holding their watermarks back.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from operator import itemgetter
from typing import Any, Awaitable, Callable

from ratiowatch.streams.origin import HEADER, LIVE, origin_of
from ratiowatch.streams.ticks import Rejected, parse_records

from ratiowatch.model.sessions import iso_utc
from .shards import Segment, ShardMap, encode_shard_segments

__all__ = ["Router"]

# The route stage cuts what it fetched into chunks of this many ticks (plus the rest of the record
# that reaches it) and sends a shard's record once it holds SHARD_RECORD_TICKS: a shard record
# stays under the producer's 1 MB request limit (~32 bytes a tick; one input record of at most
# 1 MB adds ~600 KB at worst), and small documents decode faster per tick (orjson: ~200 ns a tick
# at a few thousand, ~480 ns at 20,000) while each record costs ~100 µs to send, fetch and hand over.
ROUTE_CHUNK_TICKS = 8_000
SHARD_RECORD_TICKS = 2_000
# A shard that gets no ticks from a partition hears of its progress at most this often: often
# enough that its watermark follows the feed, rarely enough to cost nothing against the ticks.
PROGRESS_EVERY_S = 0.02
# How often every shard hears, for every partition, whether it is caught up: the shards believe a
# word for agents.watermark's claim_ttl_s (10x this), so a router that dies is noticed.
HEARTBEAT_S = 0.5

_EVENT_TIME = itemgetter(2)  # of a tick row (symbol, price, ts_ms)

SendShard = Callable[[int, bytes], Awaitable[None]]
DeadLetter = Callable[[Rejected, int | None, int | None], Awaitable[None]]


class Router:
    """Routes ticks to shards. ``send_shard(n, value)`` writes a shard record, ``dead_letter``
    a rejected tick; ``positions()`` gives, for the ``ticks`` partitions this worker owns,
    (next offset, high watermark) as the consumer knows them; ``now`` is a monotonic clock."""

    def __init__(self, shard_map: ShardMap, *, signed: frozenset[str], lateness_ms: int, send_shard: SendShard,
                 dead_letter: DeadLetter, positions: Callable[[], dict[int, tuple[int | None, int | None]]],
                 now: Callable[[], float], counters: Counter[str], origin: str = LIVE) -> None:
        self.set_map(shard_map)
        self.origin = origin  # the engine's: records whose header says another are dead-lettered
        self.lateness_ms = lateness_ms
        self.signed = signed
        self.send_shard = send_shard
        self.dead_letter = dead_letter
        self.positions = positions
        self.now = now
        self.counters = counters
        self.progress: dict[int, int] = {}                        # partition -> newest valid event time
        self._told: dict[tuple[int, int], tuple[int, bool, float]] = {}  # (shard, partition) -> last word
        self._claims: dict[int, bool] = {}                        # partition -> caught up, last heartbeat
        # A shard skips the segments it has applied by their last source offset, so a segment must
        # never straddle an offset a shard stopped at. Those are segment ends of this partition's
        # previous router (before a restart or a rebalance), somewhere below the end offset this
        # router found on taking the partition over: up to there, each record is its own segment.
        self._exact_until: dict[int, int] = {}                    # partition -> first offset chunked freely
        self._routed: dict[int, int] = {}                         # partition -> last offset routed
        self._heartbeat_at = float("-inf")

    def set_map(self, shard_map: ShardMap) -> None:
        """Route by ``shard_map`` from the next fetch on (the scenarios changed)."""
        self.map = shard_map
        self.known = shard_map.symbols

    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: their next owner speaks for them."""
        for p in partitions:
            self.progress.pop(p, None)
            self._claims.pop(p, None)
            self._exact_until.pop(p, None)
            self._routed.pop(p, None)
        self._told = {k: v for k, v in self._told.items() if k[1] not in partitions}

    async def handle(self, batches: list[tuple[int, list[Any], int | None]]) -> None:
        """What one fetch brought from ``ticks``: [(partition, records, high watermark)]."""
        out: dict[int, list[Segment]] = {}  # shard -> segments not sent yet
        size: dict[int, int] = {}
        now = self.now()
        for partition, records, highwater in batches:
            if any(r.headers for r in records):
                records = await self._drop_foreign(partition, records)
                if not records:
                    continue
            rows, bad, ends = parse_records([r.value for r in records], self.known, self.signed)
            for i, rej in bad:
                await self.dead_letter(rej, partition, records[i].offset)
            routed = self._routed.get(partition)
            if routed is not None and records[0].offset <= routed:
                # Read again from an earlier offset (faust seeks back to the committed offsets
                # after a rebalance that kept the partition here): what follows was routed before,
                # so it is not "behind" anything, and the shards must be able to skip it exactly.
                self.progress.pop(partition, None)
                self._exact_until[partition] = max(self._exact_until.get(partition, 0), routed + 1)
            self._routed[partition] = records[-1].offset
            progress = self.progress.get(partition, -1)
            late = self._late_in_partition(rows, progress)
            if late:
                rows, ends = await self._drop_late(partition, records, rows, ends, late)
            if partition not in self._exact_until:  # a new incarnation of this partition's router
                self._exact_until[partition] = highwater if highwater is not None else records[-1].offset + 1
            exact = records[0].offset < self._exact_until[partition]
            first = 0  # chunks of about ROUTE_CHUNK_TICKS ticks, cut at a record boundary
            while first < len(records):
                start = ends[first - 1] if first else 0
                if exact and records[first].offset < self._exact_until[partition]:
                    last = first  # one record a chunk: see _exact_until
                else:
                    last = min(bisect_left(ends, start + ROUTE_CHUNK_TICKS, first), len(records) - 1)
                chunk = rows[start:ends[last]] if first or last < len(records) - 1 else rows
                if chunk:
                    newest = max(map(_EVENT_TIME, chunk))
                    if newest > progress:
                        progress = newest
                # Caught up only with the partition's last record: a shard may then let the
                # partition go idle; a chunk with more behind it must still hold the watermark.
                caught_up = last == len(records) - 1 and highwater is not None and records[last].offset + 1 >= highwater
                for n, shard_rows in self.map.route(chunk).items():
                    # (partition, offset) is the last ticks record the rows come from: segments of
                    # one partition carry increasing offsets, so "already applied" stays exact.
                    out.setdefault(n, []).append((partition, records[last].offset, shard_rows, progress, caught_up))
                    self._told[(n, partition)] = (progress, caught_up, now)
                    size[n] = size.get(n, 0) + len(shard_rows)
                    if size[n] >= SHARD_RECORD_TICKS:
                        await self._send(n, out.pop(n), size.pop(n))
                first = last + 1
            self.progress[partition] = progress
            caught_up = highwater is not None and records[-1].offset + 1 >= highwater
            self._tell_others(out, partition, progress, caught_up, now)
            c = self.counters
            c["records_in"] += len(records)
            c["ticks_in"] += len(rows) + len(bad) + len(late)
            c["ticks_routed"] += len(rows)
        for n, segments in out.items():
            await self._send(n, segments, size.get(n, 0))

    async def _drop_foreign(self, partition: int, records: list[Any]) -> list[Any]:
        """Dead-letter the records whose origin header is not this engine's; returns the others.
        What is dropped is never routed, so it moves no progress: the partition's heartbeat
        (after_round) still says when it is caught up."""
        kept = []
        for r in records:
            said = origin_of(r.headers)
            if said is None or said == self.origin:
                kept.append(r)
                continue
            self.counters["records_in"] += 1
            await self.dead_letter(Rejected(
                "origin", f"partition {partition}: a record of {said} ticks (header {HEADER}) reached an engine "
                          f"running for {self.origin} ticks; start an engine with --origin {said} on a cluster of "
                          f"its own to evaluate them", r.value.decode("utf-8", "replace")[:2000]),
                partition, r.offset)
        return kept

    def _late_in_partition(self, rows: list[Any], progress: int) -> list[int]:
        """Indices of the ticks more than the allowed lateness behind a tick before them in their
        own partition. Judged here, in partition order with every symbol, it does not depend on
        how records are batched on their way to the shards; a shard judges what crosses
        partitions (agents/watermark.py)."""
        late, lateness = [], self.lateness_ms
        if not rows:
            return late
        # Most fetches span less than the allowed lateness and start past it: nothing can be late.
        times = list(map(_EVENT_TIME, rows))
        if min(times) >= max(max(times), progress) - lateness:
            return late
        for i, t in enumerate(rows):
            ts = t[2]
            if ts > progress:
                progress = ts
            elif ts < progress - lateness:
                late.append(i)
        return late

    async def _drop_late(self, partition: int, records: list[Any], rows: list[Any], ends: list[int],
                         late: list[int]) -> tuple[list[Any], list[int]]:
        """Dead-letter the ``late`` rows; returns the rows and record ends without them."""
        gone = set(late)
        progress = self.progress.get(partition, -1)
        for i, t in enumerate(rows):
            if i in gone:
                rec = records[bisect_right(ends, i)]
                await self.dead_letter(Rejected(
                    "late", f"partition {partition}: event time {iso_utc(t[2])} is more than {self.lateness_ms / 1000:g} s "
                            f"behind {iso_utc(progress)}, a tick before it in the same partition",
                    {"symbol": t[0], "price": t[1], "ts_ms": t[2]}), partition, rec.offset)
            elif t[2] > progress:
                progress = t[2]
        kept = [t for i, t in enumerate(rows) if i not in gone]
        new_ends = [e - sum(1 for i in late if i < e) for e in ends]
        return kept, new_ends

    def _tell_others(self, out: dict[int, list[Segment]], partition: int, progress: int, caught_up: bool,
                     now: float) -> None:
        """A progress-only segment for the shards that got nothing from ``partition`` this time and
        have not heard of it for PROGRESS_EVERY_S (or heard another caught-up state)."""
        for n in range(self.map.shards):
            told = self._told.get((n, partition))
            if told is not None and (told[0] == progress or now - told[2] < PROGRESS_EVERY_S) and told[1] == caught_up:
                continue
            out.setdefault(n, []).append((partition, -1, (), progress, caught_up))
            self._told[(n, partition)] = (progress, caught_up, now)

    async def after_round(self) -> None:
        """After each fetch round: tell every shard which of this worker's partitions are caught up,
        every HEARTBEAT_S, and at once when one has just become so (an empty partition at start,
        a backlog read to its end)."""
        claims = {}
        for p, (position, highwater) in self.positions().items():
            claims[p] = position is not None and highwater is not None and position >= highwater
        now = self.now()
        news = any(up and not self._claims.get(p, False) for p, up in claims.items())
        if not claims or not (news or now - self._heartbeat_at >= HEARTBEAT_S):
            return
        self._claims, self._heartbeat_at = claims, now
        segments: list[Segment] = [(p, -1, (), self.progress.get(p, -1), up) for p, up in sorted(claims.items())]
        for n in range(self.map.shards):
            for p, _, _, w, up in segments:
                self._told[(n, p)] = (w, up, now)
            await self._send(n, segments, 0)
        self.counters["heartbeats_sent"] += 1

    async def _send(self, n: int, segments: list[Segment], ticks: int) -> None:
        self.counters["shard_copies_sent"] += ticks
        self.counters["shard_records_sent"] += 1
        await self.send_shard(n, encode_shard_segments(segments))
