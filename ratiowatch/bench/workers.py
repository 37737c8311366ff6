"""The benchmark's workers: each phase runs in a fresh process (spawned), so no number bleeds into
another, and reports back through a pipe. The feed comes from the parent process.

- limit: a bare aiokafka consumer that reads and JSON-decodes the ticks, nothing else;
- baseline: the faust idiom: a Record stream, a table write per tick, the ratio per tick;
- engine: ratiowatch itself (EngineRole + Pipeline, ``ticks`` -> ``events``, state kept).

Protocol: the child sets up, sends ("ready", info), counts ticks consumed into the shared
``progress`` counter (the feeder paces itself on it), and sends ("result", dict) once every
expected tick has been processed. The bare consumer's ticks are on the broker before it starts and
its clock starts at its first fetch; the others' clocks start at "ready" (the feed starts then).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import tempfile
import time
from typing import Any

import orjson

__all__ = ["child_main"]

POLL_S = 0.001


def _rss_mb() -> float:
    """Peak resident memory of this process. VmHWM, not getrusage's ru_maxrss: a spawned child
    starts as a fork of the parent, and Linux carries that copy's peak into ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_main(kind: str, spec: dict[str, Any], conn: Any, progress: Any) -> None:
    """Process entry point (multiprocessing spawn target)."""
    logging.basicConfig(level=logging.ERROR)
    for name in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        result = asyncio.run(PHASES[kind](spec, conn, progress))
    except BaseException as e:  # the parent must hear about it rather than wait forever
        conn.send(("error", f"{type(e).__name__}: {e}"))
        raise
    conn.send(("result", result))


class _Clock:
    """Started when the worker says it is ready: the feed only begins then, so the worker is idle
    until its first tick arrives a few milliseconds later. (Starting at the first tick seen would
    miss the first fetch's work: a fetch can bring a hundred thousand ticks, and the counters move
    only once they are handled.)"""

    def __init__(self) -> None:
        self.t0 = self.cpu0 = 0.0

    def start(self) -> None:
        self.t0, self.cpu0 = time.perf_counter(), _cpu_s()


async def _measure(counter: Any, expected: int, progress: Any, clock: _Clock,
                   done: Any = None, app: Any = None) -> tuple[float, float]:
    """(seconds, CPU seconds) from ``clock`` start until ``counter()`` reaches ``expected`` (and
    ``done()``), keeping ``progress`` up to date for the feeder. If the faust ``app`` or its
    consumer crashes meanwhile, it raises at once with the reason (the ticks would never come)."""
    while True:
        n = counter()
        progress.value = n
        if n >= expected and (done is None or done()):
            return time.perf_counter() - clock.t0, _cpu_s() - clock.cpu0
        if app is not None:
            _check_alive(app)
        await asyncio.sleep(POLL_S)


def _check_alive(app: Any) -> None:
    for service in (app, getattr(app, "_consumer", None)):
        if service is not None and service.crashed:
            reason = service.crash_reason
            raise RuntimeError(f"{service.label} crashed: {type(reason).__name__}: {reason}")


async def _stop(app_or_role: Any, failed: bool) -> None:
    """Stops the worker; after a crash, within a bound (a crashed faust app may not stop cleanly)."""
    if not failed:
        await app_or_role.stop()
        return
    try:
        await asyncio.wait_for(app_or_role.stop(), 30)
    except Exception:  # the crash is what is reported
        pass


def _profiler(spec: dict[str, Any]) -> Any:
    if not spec.get("profile"):
        return None
    from pyinstrument import Profiler

    p = Profiler(interval=0.0005, async_mode="disabled")
    p.start()
    return p


def _save_profile(profiler: Any, spec: dict[str, Any]) -> None:
    if profiler is None:
        return
    profiler.stop()
    path = spec["profile"]
    with open(path + ".txt", "w") as f:
        f.write(profiler.output_text(unicode=False, color=False, show_all=False))
    with open(path + ".html", "w") as f:
        f.write(profiler.output_html())


# --- limit ------------------------------------------------------------------------------------

async def limit(spec: dict[str, Any], conn: Any, progress: Any) -> dict[str, Any]:
    from aiokafka import TopicPartition

    from ratiowatch.streams.clients import aio_consumer

    consumer = aio_consumer(spec["bootstrap"], client_id="ratiowatch-bench-limit",
                            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    tps = [TopicPartition(spec["topic"], p) for p in range(spec["partitions"])]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    count = 0
    conn.send(("ready", {}))
    expected = spec["ticks"]
    first = cpu0 = None
    try:
        while count < expected:
            batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
            for records in batches.values():
                if first is None:
                    first, cpu0 = time.perf_counter(), _cpu_s()
                for r in records:
                    doc = orjson.loads(r.value)
                    count += len(doc) if isinstance(doc, list) else 1
            progress.value = count
        end = time.perf_counter()
    finally:
        await consumer.stop()
    return {"ticks": count, "seconds": end - (first or end), "cpu_s": round(_cpu_s() - (cpu0 or _cpu_s()), 2),
            "peak_rss_mb": round(_rss_mb(), 1)}


# --- baseline: the faust idiom ----------------------------------------------------------------

async def baseline(spec: dict[str, Any], conn: Any, progress: Any) -> dict[str, Any]:
    import faust

    from ratiowatch.streams.app import create_app

    class TickRecord(faust.Record, serializer="json"):
        symbol: str
        price: float
        ts_ms: int

    datadir = tempfile.mkdtemp(prefix="rw-bench-")
    app = create_app(spec["url"], partitions=spec["partitions"], app_id=spec["app_id"], datadir=datadir)
    batch = spec["shape"] == "batch"
    topic = app.topic(spec["topic"], key_type=bytes, value_type=bytes if batch else TickRecord,
                      key_serializer="raw", value_serializer="raw" if batch else "json",
                      partitions=spec["partitions"])
    prices = app.Table("prices", default=float, partitions=spec["partitions"])
    partner: dict[str, str] = spec["partner"]
    state: dict[str, Any] = {"ticks": 0, "ratios": 0, "ratio": None}

    def on_tick(tick: TickRecord) -> None:
        prices[tick.symbol] = tick.price  # the table write (changelogged) per tick
        other = partner.get(tick.symbol)
        if other is not None:
            q = prices.get(other)
            if q:
                state["ratio"] = tick.price / q  # the job: the ratio, on every tick
                state["ratios"] += 1
        state["ticks"] += 1

    async def agent(stream: Any) -> None:
        async for value in stream:
            if batch:
                for d in orjson.loads(value):
                    on_tick(TickRecord.from_data(d))
            else:
                on_tick(value)

    app.agent(topic, name="bench.baseline")(agent)
    await app.start()
    while not (app.consumer.assignment() and not app.rebalancing and app.tables.recovery.completed.is_set()):
        await asyncio.sleep(0.05)
    clock = _Clock()
    measure = asyncio.ensure_future(_measure(lambda: state["ticks"], spec["ticks"], progress, clock, app=app))
    clock.start()
    conn.send(("ready", {}))
    failed = True
    try:
        seconds, cpu = await measure
        failed = False
    finally:
        await _stop(app, failed)
    return {"ticks": state["ticks"], "seconds": seconds, "cpu_s": round(cpu, 2), "ratios": state["ratios"],
            "peak_rss_mb": round(_rss_mb(), 1)}


# --- engine: ratiowatch -----------------------------------------------------------------------

async def engine(spec: dict[str, Any], conn: Any, progress: Any) -> dict[str, Any]:
    from ratiowatch.bench.market import BenchMarket
    from ratiowatch.roles.engine import EngineRole

    market = BenchMarket(**spec["market"])
    seed = market.seed_states()
    datadir = tempfile.mkdtemp(prefix="rw-bench-")
    rt = EngineRole(market.config, broker_url=spec["url"], partitions=spec["partitions"], seed=seed, datadir=datadir)
    rss_ready = _rss_mb()
    pipe = rt.pipeline
    c = pipe.counters
    trace = None
    if spec.get("trace"):
        from ratiowatch.streams import topics

        from .trace import LatencyTrace

        trace = LatencyTrace(pipe, topics.TICKS, topics.SHARD_TICKS, spec.get("warmup_ticks", 0))

    def done() -> bool:  # every routed copy applied (or dead-lettered: the parent fails the run then)
        return (c["shard_copies_in"] >= c["shard_copies_sent"]
                and c["shard_ticks_applied"] + c["dlq.late"] >= c["shard_copies_sent"] and pipe.idle())

    await rt.start()
    profiler = _profiler(spec)
    clock = _Clock()
    measure = asyncio.ensure_future(_measure(lambda: c["ticks_in"], spec["ticks"], progress, clock, done, rt.app))
    clock.start()
    conn.send(("ready", {"scenarios": len(market.config.scenarios), "symbols": len(market.symbols)}))
    failed = True
    try:
        seconds, cpu = await measure
        failed = False
    finally:
        _save_profile(profiler, spec)
        await _stop(rt, failed)
    out = {"ticks": c["ticks_in"], "seconds": seconds, "cpu_s": round(cpu, 2),
           "peak_rss_mb": round(_rss_mb(), 1), "rss_ready_mb": round(rss_ready, 1),
           "counters": {k: v for k, v in sorted(c.items())}, "pid": os.getpid()}
    if trace is not None:
        from .feed import percentiles

        out["latency_breakdown_ms"] = trace.result(percentiles)
    return out


PHASES = {"limit": limit, "baseline": baseline, "engine": engine}
