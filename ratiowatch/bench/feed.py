"""The benchmark's feed side: a producer that stays within the broker's retention, and the reader
that times events. Both run in the bench's own process, never in the worker being measured.

The embedded broker keeps only the newest 5 MB of a partition, so the feeder keeps at most
``window_bytes`` of ``ticks`` unread: it watches the worker's progress (ticks consumed, a shared
counter the worker updates) and produces ahead of it. Before the first record of a new session
it waits until the worker has read everything sent: a session roll is an overnight gap in event
time, and without that pause a record of the old day read after one of the new day (from another
partition) would be a late tick. Produced with librdkafka (confluent-kafka, already required by the
embedded broker) so that the feed costs the machine as little as possible.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from typing import Any, Callable, Sequence

import orjson

from .market import Record

__all__ = ["feed", "prefill_count", "EventTimer", "percentiles"]


def _producer(bootstrap: str, linger_ms: float) -> Any:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "acks": "1",
                     "queue.buffering.max.kbytes": 256 * 1024, "queue.buffering.max.messages": 2_000_000,
                     "batch.size": 1_000_000, "batch.num.messages": 10_000, "log_level": 3})


def prefill_count(records: Sequence[Record], window_bytes: int) -> int:
    """How many leading records can be produced before the worker starts: as many as fit in the
    window, within the first session."""
    total = 0
    for i, r in enumerate(records):
        total += len(r[2])
        if total > window_bytes or r[4] != records[0][4]:
            return i
    return len(records)


def feed(bootstrap: str, topic: str, records: Sequence[Record], progress: Callable[[], int], *,
         window_bytes: int, first: int = 0, last: int | None = None, rate: float | None = None,
         burst: int = 1, on_sent: Callable[[Record, float], None] | None = None,
         abort: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Produce ``records[first:last]`` to ``topic``. ``progress()`` is the worker's count of ticks
    consumed (of all ``records``). ``rate`` (ticks/s) paces the feed; None sends as fast as the
    window allows. Paced, the records are due ``burst`` ticks at a time: the records cut from one
    vendor message of ``burst`` ticks (one per symbol, one per tick) are handed over together, as
    the message arrives, whatever their keys. ``on_sent(record, t)`` is told the wall-clock time
    each record was handed to the producer. While it waits on the worker, ``abort()`` true (the
    worker failed) ends the feed early: what it returns then counts what was sent."""
    last = len(records) if last is None else last
    # Paced, each record goes out at once (its produce time is the latency's start); flat out, the
    # producer batches as a feed under load would (librdkafka's default linger). That matters on
    # the embedded broker, which answers a fetch with at most one produced batch per partition.
    p = _producer(bootstrap, linger_ms=1 if rate is not None else 5)
    p.list_topics(topic, timeout=30)  # connected and metadata known before the clock starts
    ticks_before = [0]
    bytes_before = [0]
    for r in records:
        ticks_before.append(ticks_before[-1] + r[3])
        bytes_before.append(bytes_before[-1] + len(r[2]))
    t0 = time.monotonic()
    session = records[first - 1][4] if first else records[0][4] if records else 0  # (a roll at `first` waits too)
    end = last
    aborted = False
    for i in range(first, last):
        r = records[i]
        if r[4] != session:
            session = r[4]
            p.flush()
            while progress() < ticks_before[i]:
                if abort():
                    aborted = True
                    break
                time.sleep(0.0005)
        if rate is not None:
            due = (ticks_before[i] - ticks_before[first]) // burst * burst
            wait = t0 + due / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        else:
            while True:
                done = bisect.bisect_right(ticks_before, progress()) - 1
                if bytes_before[i] - bytes_before[done] < window_bytes:
                    break
                if abort():
                    aborted = True
                    break
                p.poll(0.001)
        if aborted:
            end = i
            break
        while True:
            try:
                p.produce(topic, value=r[2], key=r[1], partition=r[0])
                break
            except BufferError:
                p.poll(0.005)
        if on_sent is not None:
            on_sent(r, time.time())  # wall clock: comparable with Kafka record timestamps
        p.poll(0)
    left = p.flush(30)
    if left:
        raise RuntimeError(f"{left} tick records were not delivered to the broker")
    return {"records": end - first, "ticks": ticks_before[end] - ticks_before[first],
            "bytes": bytes_before[end] - bytes_before[first], "seconds": time.monotonic() - t0}


class EventTimer:
    """Reads ``events`` in a thread and times each event from the produce time of the ticks it
    came from: the record that carried the last tick stamped with the event's time. Read with
    aiokafka (its own event loop in the thread): on the embedded broker librdkafka's consumer adds
    ~10 ms of its own to every read, which is not the worker's latency."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, warmup_ticks: int = 0) -> None:
        """Events from the first ``warmup_ticks`` ticks sent are timed apart (``warmup_ms``): a
        worker does one-off work when it gets its partitions (reading back the events it may have
        sent before, its first state writes) that is not the steady state being measured."""
        self.sent_at: dict[int, float] = {}     # tick event time -> when its record was produced
        self.latencies_ms: list[float] = []     # produced -> event read back
        self.worker_ms: list[float] = []        # produced -> event record created (its Kafka timestamp)
        self.warmup_ms: list[float] = []
        self._warmup_left = warmup_ticks
        self._warm_ts: set[int] = set()         # event times of the warm-up ticks
        self.unmatched = 0
        self.events = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._expected: int | None = None       # stop() waits for this many events
        self._all_read = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(bootstrap, topic, partitions),
                                        name="bench-event-timer", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error

    def on_sent(self, record: Record, t: float) -> None:
        sent_at = self.sent_at
        warm = self._warmup_left > 0
        self._warmup_left -= record[3]
        for tick in orjson.loads(record[2]) if record[2][:1] == b"[" else [orjson.loads(record[2])]:
            sent_at[tick["ts_ms"]] = t
            if warm:
                self._warm_ts.add(tick["ts_ms"])

    def _run(self, bootstrap: str, topic: str, partitions: int) -> None:
        try:
            asyncio.run(self._read(bootstrap, topic, partitions))
        except BaseException as e:  # reported by __init__ or stop()
            self._error = e
            self._ready.set()

    async def _read(self, bootstrap: str, topic: str, partitions: int) -> None:
        from aiokafka import TopicPartition

        from ratiowatch.streams.clients import aio_consumer

        consumer = aio_consumer(bootstrap, client_id="ratiowatch-bench-events", fetch_max_wait_ms=2)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._ready.set()
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=20)
                now = time.time()
                for records in batches.values():
                    for m in records:
                        self._time(m.value, m.timestamp, now)
        finally:
            await consumer.stop()

    def _time(self, value: bytes, created_ms: int, now: float) -> None:
        self.events += 1
        if self._expected is not None and self.events >= self._expected:
            self._all_read.set()
        ts = orjson.loads(value)["ts_ms"]
        sent = self.sent_at.get(ts)
        if sent is None:
            self.unmatched += 1
        elif ts in self._warm_ts:
            self.warmup_ms.append((now - sent) * 1000.0)
        else:
            self.latencies_ms.append((now - sent) * 1000.0)
            self.worker_ms.append(created_ms - sent * 1000.0)

    def stop(self, expected: int | None = None, timeout_s: float = 10.0) -> None:
        """Stops reading; with ``expected``, once that many events have been read (at most
        ``timeout_s``: the caller compares :attr:`events` with what the worker sent)."""
        if expected is not None:
            self._expected = expected
            if self.events >= expected:  # read before ``_expected`` was set (the GIL orders the two)
                self._all_read.set()
            self._all_read.wait(timeout_s)
        self._stop.set()
        self._thread.join(30)
        if self._error is not None:
            raise self._error


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p99 and max (nearest rank)."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    v = sorted(values)

    def rank(q: float) -> float:
        return v[min(len(v) - 1, max(0, int(round(q * len(v) + 0.5)) - 1))]

    return {"p50": round(rank(0.50), 2), "p99": round(rank(0.99), 2), "max": round(v[-1], 2)}
