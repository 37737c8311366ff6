"""Where a latency phase's time goes, inside the engine worker: each event's path from the tick
record that caused it to the event's send, cut at the stage boundaries.

For an event at event time ``ts`` (the timer in :mod:`ratiowatch.bench.feed` matches on it too):

- **ticks hop**: the ``ticks`` record carrying the last tick at ``ts`` was created (its Kafka
  timestamp: the feed's produce call, same machine clock) -> the route stage got it (feed linger,
  broker, fetch wait, consumer hand-over);
- **shard hop**: the route stage got it -> the evaluate stage got the shard record carrying the
  tick (routing, the producer's linger, broker, fetch wait);
- **watermark wait**: the evaluate stage got it -> the release that applied it began (waiting for
  the other partitions to pass ``ts`` or go idle: ``grace_ms``, and the release timer's period);
- **evaluation**: that release began -> the event was handed to the producer;
- **events hop** (in the bench's process): the producer -> the event read back, the rest of the
  total.

Beside them, ``commit_writes``: how long each commit's state writes held the event loop (the
commit cadence's share: whatever arrives meanwhile waits that long).

The wrappers only watch: they take the stages' own records and times, and change nothing that is
handed on. Only latency phases are traced (paced at a rate where the extra decoding is cheap).
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

import orjson

__all__ = ["LatencyTrace"]

PARTS = ("ticks_hop", "shard_hop", "watermark_wait", "evaluation", "produce_to_send")


class LatencyTrace:
    """Wraps a running :class:`ratiowatch.agents.pipeline.Pipeline`'s stages (see the module
    docstring); :meth:`result` gives the milliseconds of each part, per event."""

    def __init__(self, pipeline: Any, ticks_topic: str, shard_topic: str, warmup_ticks: int = 0) -> None:
        """Events of the first ``warmup_ticks`` ticks are left out, as the bench's timer times
        them apart."""
        from ratiowatch.agents.shards import decode_shard_record, shard_of

        self._decode_shard = decode_shard_record
        self._shard_of = shard_of
        self.shards = pipeline.shards
        self.created: dict[int, float] = {}            # ts -> the ticks record's creation (s)
        self.routed: dict[int, float] = {}             # ts -> when the route stage got that record
        self.shard_in: dict[tuple[int, int], float] = {}  # (shard, ts) -> when evaluate got the tick
        self.release_at: dict[int, float] = {}         # shard -> when its current release began
        self.by_timer = 0                              # events released by the idle timer
        self.by_arrival = 0                            # events released by a record's arrival
        self._in_timer = False
        self.parts: dict[str, list[float]] = {p: [] for p in PARTS}
        self._warmup_left = warmup_ticks
        self._warm_ts: set[int] = set()
        app, ev = pipeline.app, pipeline.evaluator
        handlers = app.batch_handlers
        handlers[ticks_topic] = self._wrap_ticks(handlers[ticks_topic])
        handlers[shard_topic] = self._wrap_shard(handlers[shard_topic])
        release, release_idle, emit = ev.release, ev.release_idle, ev.emit

        async def traced_release(sh: Any, now: float) -> None:
            self.release_at[sh.n] = time.time()
            await release(sh, now)

        async def traced_release_idle(shards: list[Any]) -> None:
            self._in_timer = True
            try:
                await release_idle(shards)
            finally:
                self._in_timer = False

        async def traced_emit(event: dict[str, Any]) -> None:
            self._on_emit(event)
            await emit(event)

        ev.release, ev.release_idle, ev.emit = traced_release, traced_release_idle, traced_emit
        # The state writes before each commit (agents/checkpoint.py) hold the event loop: how long.
        self.commit_ms: list[float] = []
        self.commit_flush_ms: list[float] = []  # of which waiting for the producer's flushes
        self._flushed = 0.0
        app.before_commit[:] = [self._timed(hook) for hook in app.before_commit]
        cp = pipeline.checkpoint
        flush = cp.flush

        async def timed_flush() -> None:
            t0 = time.perf_counter()
            try:
                await flush()
            finally:
                self._flushed += time.perf_counter() - t0

        cp.flush = timed_flush

    def _timed(self, hook: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def timed() -> None:
            t0, self._flushed = time.perf_counter(), 0.0
            try:
                await hook()
            finally:
                self.commit_ms.append((time.perf_counter() - t0) * 1000.0)
                self.commit_flush_ms.append(self._flushed * 1000.0)
        return timed

    def _wrap_ticks(self, handler: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def traced(batches: list[tuple[int, list[Any], int | None]]) -> None:
            now = time.time()
            for _, records, _ in batches:
                for r in records:
                    doc = orjson.loads(r.value)
                    ticks = doc if type(doc) is list else (doc,)
                    warm = self._warmup_left > 0
                    self._warmup_left -= len(ticks)
                    for t in ticks:
                        if warm:
                            self._warm_ts.add(t["ts_ms"])
                        self.created[t["ts_ms"]] = r.timestamp / 1000.0
                        self.routed[t["ts_ms"]] = now
            await handler(batches)
        return traced

    def _wrap_shard(self, handler: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def traced(batches: list[tuple[int, list[Any], int | None]]) -> None:
            now = time.time()
            for n, records, _ in batches:
                for r in records:
                    for seg in self._decode_shard(r.value):
                        for t in seg[2]:
                            self.shard_in[(n, t[2])] = now
            await handler(batches)
        return traced

    def _on_emit(self, event: dict[str, Any]) -> None:
        now, ts = time.time(), event["ts_ms"]
        n = self._shard_of(event["scenario"], self.shards)
        created, routed, arrived = self.created.get(ts), self.routed.get(ts), self.shard_in.get((n, ts))
        released = self.release_at.get(n)
        if created is None or routed is None or arrived is None or released is None or ts in self._warm_ts:
            return  # a correction or an event of a tick this trace did not see arrive
        if self._in_timer:
            self.by_timer += 1
        else:
            self.by_arrival += 1
        for part, ms in zip(PARTS, (routed - created, arrived - routed, released - arrived, now - released,
                                    now - created)):
            self.parts[part].append(ms * 1000.0)

    def result(self, percentiles: Callable[[list[float]], dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {p: percentiles(v) for p, v in self.parts.items()}
        out["events_traced"] = len(self.parts["evaluation"])
        out["released_by_timer"] = self.by_timer
        out["released_by_arrival"] = self.by_arrival
        out["commit_writes"] = {"count": len(self.commit_ms), **percentiles(self.commit_ms),
                                "flush_ms": percentiles(self.commit_flush_ms)}
        return out
