"""One phase of the benchmark, seen from the bench's own process: spawn the worker
(:mod:`ratiowatch.bench.workers`), feed it (:mod:`ratiowatch.bench.feed`) and check that it
processed every tick it was sent. An engine phase also gets a fresh embedded broker, so no state,
topic or warm cache carries over from the phase before, and checks that every routed tick was
applied and, when latency is measured, every event read back. A count that does not add up raises
:class:`BenchError`.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any, Callable

from ratiowatch.streams import topics
from ratiowatch.streams.broker import EmbeddedBroker

from .feed import EventTimer, feed, percentiles, prefill_count
from .market import BenchMarket, Record

__all__ = ["BenchError", "WINDOW_BYTES_PER_PARTITION", "run_phase", "engine_phase"]

WINDOW_BYTES_PER_PARTITION = 2 * 1024 * 1024  # unread ticks the feeder allows: well inside the broker's 5 MB


class BenchError(RuntimeError):
    """A phase did not process every tick it was sent, or its worker failed: the message says which."""


def _spawn(kind: str, spec: dict[str, Any]) -> tuple[Any, Any, Any]:
    from . import workers

    ctx = mp.get_context("spawn")  # a fresh interpreter: nothing of this process (its broker threads) leaks in
    progress = ctx.Value("q", 0, lock=False)
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=workers.child_main, args=(kind, spec, child, progress), daemon=True)
    proc.start()
    child.close()
    return proc, parent, progress


def _expect(conn: Any, proc: Any, what: str, timeout: float = 600.0) -> Any:
    deadline = time.monotonic() + timeout
    while not conn.poll(0.05):
        if not proc.is_alive() and not conn.poll(0):
            raise BenchError(f"the {what} worker exited with code {proc.exitcode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise BenchError(f"the {what} worker did not answer within {timeout:g}s")
    try:
        kind, payload = conn.recv()
    except EOFError:
        raise BenchError(f"the {what} worker exited with code {proc.exitcode}") from None
    if kind == "error":
        raise BenchError(f"the {what} worker failed: {payload}")
    return payload


def run_phase(kind: str, what: str, spec: dict[str, Any], bootstrap: str, topic: str, records: list[Record],
              partitions: int, rate: float | None = None, timer: EventTimer | None = None,
              burst: int = 1, spawn: Callable[[str, dict[str, Any]], tuple[Any, Any, Any]] | None = None,
              prefill: bool | None = None) -> dict[str, Any]:
    """Run one phase of ``kind`` (limit, baseline, engine: :data:`ratiowatch.bench.workers.PHASES`)
    over ``records`` on ``topic``; its result with what was sent and the rates. ``rate`` (ticks/s)
    paces the feed, ``timer`` times events back from the broker. ``spawn(kind, spec)`` starts the
    worker (default: a spawned process running :mod:`.workers`; the peers bring their own);
    ``prefill``: what fits goes on the broker before the worker starts (default: the limit's)."""
    window = WINDOW_BYTES_PER_PARTITION * partitions
    # The bare consumer reads faster than any feed: what fits is on the broker before it starts, so
    # it measures reading, not producing (its clock starts at its first record; so do the peers').
    # The others start their clock when they are ready, the feed starts then and stays well ahead
    # of them (see workers._Clock).
    prefill = kind == "limit" if prefill is None else prefill
    ahead = prefill_count(records, window) if prefill and rate is None else 0
    sent_ahead = feed(bootstrap, topic, records, lambda: 0, window_bytes=window, last=ahead)["ticks"] if ahead else 0
    proc, conn, progress = (spawn or _spawn)(kind, spec)
    try:
        info = _expect(conn, proc, what)
        sent = feed(bootstrap, topic, records, lambda: progress.value, window_bytes=window, first=ahead, rate=rate,
                    burst=burst, on_sent=timer.on_sent if timer is not None else None,
                    abort=lambda: conn.poll(0) or not proc.is_alive())
        result = _expect(conn, proc, what)
    finally:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
    sent["ticks"] += sent_ahead
    sent["records"] += ahead
    if result["ticks"] != sent["ticks"]:
        raise BenchError(f"{what}: the worker processed {result['ticks']} ticks of the {sent['ticks']} sent")
    result.update(info)
    result["sent"] = sent["ticks"]
    result["records"] = sent["records"]
    result["seconds"] = round(result["seconds"], 3)
    result["ticks_per_s"] = round(result["ticks"] / result["seconds"]) if result["seconds"] > 0 else None
    # Per CPU-second of the worker process: what the numbers would be on a core of its own (the
    # broker and the feed run beside it; on a shared machine the wall-clock figure moves with load).
    result["ticks_per_cpu_s"] = round(result["ticks"] / result["cpu_s"]) if result.get("cpu_s") else None
    return result


def engine_phase(what: str, market: BenchMarket, stream: list[Any], records: list[Record], partitions: int, *,
                 rate: float | None = None, latency: bool = False, warmup_ticks: int = 0, burst: int = 1,
                 profile: str | None = None, broker_factory: Callable[[], Any] = EmbeddedBroker) -> dict[str, Any]:
    """An engine phase on a fresh broker, checked: nothing dead-lettered, every routed tick applied
    and, with ``latency``, every event read back and timed. ``broker_factory``: a context manager
    with the embedded broker's ``url``, ``bootstrap`` and ``create_topic`` (another broker)."""
    with broker_factory() as broker:
        for spec in topics.all_topics(partitions, topics.APP_ID):
            broker.create_topic(spec.name, spec.partitions)
        spec = {"url": broker.url, "partitions": partitions, "ticks": sum(r[3] for r in records),
                "market": market.spec(), "profile": profile,
                "trace": latency, "warmup_ticks": warmup_ticks}
        timer = EventTimer(broker.bootstrap, topics.EVENTS, partitions, warmup_ticks) if latency else None
        try:
            r = run_phase("engine", what, spec, broker.bootstrap, topics.TICKS, records, partitions, rate, timer,
                          burst)
        except BaseException:
            if timer is not None:
                timer.stop()
            raise
        if timer is not None:  # once it has read every event the worker sent (compared below)
            timer.stop(expected=r["counters"].get("events", 0))
    c = r["counters"]
    if c.get("dead_lettered", 0):
        reasons = {k[4:]: v for k, v in c.items() if k.startswith("dlq.")}
        raise BenchError(f"{what}: {c['dead_lettered']} generated ticks were dead-lettered ({reasons}); "
                         f"the stream is valid, so the feed or the pipeline is at fault")
    copies = c.get("shard_copies_sent", 0)
    if not c.get("shard_copies_in", 0) == c.get("shard_ticks_applied", 0) == copies:
        raise BenchError(f"{what}: {c.get('shard_ticks_applied', 0)} of {copies} routed ticks were applied")
    if c.get("ticks_routed", 0) != r["ticks"]:
        raise BenchError(f"{what}: {r['ticks']} ticks in, {c.get('ticks_routed', 0)} routed")
    r["events"] = c.get("events", 0)
    r["corrections"] = c.get("corrections", 0)  # ticks applied behind their shard's frontier (event time)
    r["scenario_uses_per_tick"] = market.uses_per_tick(stream)
    if timer is not None:
        if timer.events != r["events"]:
            raise BenchError(f"{what}: {timer.events} events read back of the {r['events']} sent")
        r["events_read"] = timer.events
        r["latency_ms"] = percentiles(timer.latencies_ms)
        r["latency_samples"] = len(timer.latencies_ms)
        r["worker_latency_ms"] = percentiles(timer.worker_ms)  # to the event record's creation
        r["warmup_latency_ms"] = percentiles(timer.warmup_ms)
        r["warmup_ticks"] = warmup_ticks
        r["offered_ticks_per_s"] = rate
        r["offered_burst_ticks"] = burst
    return r

