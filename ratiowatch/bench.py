"""``ratiowatch bench``: ratiowatch against the bare-consumer limit and the faust idiom, on the same
broker and the same generated ticks, plus latency, memory and scaling with the scenario count.

Each phase runs in a fresh worker process (:mod:`ratiowatch.bench_phases`) fed by this process
(:mod:`ratiowatch.bench_feed`); the engine phases each get a fresh embedded broker too, so no
state, topic or warm cache carries over. Every phase checks its count: the ticks the worker
processed must equal the ticks sent, or the bench fails.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any, Callable

from ratiowatch.streams import topics as T
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker

from .bench_feed import EventTimer, feed, percentiles
from .bench_market import BenchMarket, Record, batch_records, single_records

__all__ = ["BenchError", "run_bench", "format_table", "DEFAULTS"]

DEFAULTS: dict[str, Any] = {
    "ticks": 320_000,
    "scenarios": (10, 1_000, 10_000),
    "main_scenarios": 500,     # shipped + generated, over main_symbols
    "main_symbols": 500,
    "scaling_symbols": 2_000,
    "batch": 200,              # ticks per vendor record
    "partitions": 8,
    "baseline_ticks": 40_000,  # the faust idiom is slow: a smaller fixed count keeps the run short
    "latency_rate": 10_000,    # ticks/s offered in the latency phase
    "latency_seconds": 8.0,
    "seed": 7,
}
WINDOW_BYTES_PER_PARTITION = 2 * 1024 * 1024  # well inside the embedded broker's 5 MB


class BenchError(RuntimeError):
    """A phase did not process every tick it was sent, or its worker failed: the message says which."""


def _spawn(kind: str, spec: dict[str, Any]) -> tuple[Any, Any, Any]:
    from . import bench_phases

    ctx = mp.get_context("spawn")
    progress = ctx.Value("q", 0, lock=False)
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=bench_phases.child_main, args=(kind, spec, child, progress), daemon=True)
    proc.start()
    return proc, parent, progress


def _expect(conn: Any, proc: Any, what: str, timeout: float = 300.0) -> Any:
    deadline = time.monotonic() + timeout
    while not conn.poll(0.05):
        if not proc.is_alive():
            raise BenchError(f"the {what} worker exited with code {proc.exitcode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise BenchError(f"the {what} worker did not answer within {timeout:g}s")
    kind, payload = conn.recv()
    if kind == "error":
        raise BenchError(f"the {what} worker failed: {payload}")
    return payload


def _phase(kind: str, what: str, spec: dict[str, Any], bootstrap: str, topic: str, records: list[Record],
           partitions: int, rate: float | None = None, timer: EventTimer | None = None) -> dict[str, Any]:
    proc, conn, progress = _spawn(kind, spec)
    try:
        info = _expect(conn, proc, what)
        sent = feed(bootstrap, topic, records, lambda: progress.value, rate=rate,
                    window_bytes=WINDOW_BYTES_PER_PARTITION * partitions,
                    on_sent=timer.on_sent if timer is not None else None)
        result = _expect(conn, proc, what)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    if result["ticks"] != sent["ticks"]:
        raise BenchError(f"{what}: the worker processed {result['ticks']} ticks of the {sent['ticks']} sent")
    result["sent"] = sent["ticks"]
    result["records"] = sent["records"]
    result["ticks_per_s"] = round(result["ticks"] / result["seconds"]) if result["seconds"] > 0 else None
    result.update(info)
    return result


def _engine_phase(what: str, market: BenchMarket, records: list[Record], partitions: int,
                  rate: float | None = None, latency: bool = False, profile: str | None = None) -> dict[str, Any]:
    with EmbeddedBroker() as broker:
        ensure_topics(broker, partitions)
        spec = {"url": broker.url, "partitions": partitions, "ticks": sum(r[3] for r in records),
                "market": {"scenarios": market.n_scenarios, "symbols": market.n_symbols, "seed": market.seed,
                           "ticks_per_session": market.ticks_per_session, "ticks_per_ms": market.ticks_per_ms},
                "profile": profile}
        timer = EventTimer(broker.bootstrap, T.EVENTS, partitions) if latency else None
        try:
            result = _phase("engine", what, spec, broker.bootstrap, T.TICKS, records, partitions, rate, timer)
        finally:
            if timer is not None:
                timer.stop()
        c = result["counters"]
        applied, copies = c.get("shard_ticks_applied", 0), c.get("shard_copies_sent", 0)
        if applied + c.get("dlq.late", 0) != copies:
            raise BenchError(f"{what}: {applied} of {copies} routed ticks were applied")
        if timer is not None:
            result["latency_ms"] = percentiles(timer.latencies_ms)
            result["latency_samples"] = len(timer.latencies_ms)
            result["events_read"] = timer.events
            if timer.events != c.get("events", 0):
                raise BenchError(f"{what}: {timer.events} events read back of the {c.get('events', 0)} sent")
        return result


def run_bench(*, ticks: int = DEFAULTS["ticks"], scenarios: tuple[int, ...] = DEFAULTS["scenarios"],
              log: Callable[[str], None] = lambda s: None, **options: Any) -> dict[str, Any]:
    """Every phase; returns {"limit", "baseline", "engine", "setup"} (see docs/performance.md)."""
    o = {**DEFAULTS, **options}
    P, B = o["partitions"], o["batch"]
    log(f"generating {ticks} ticks over {o['main_symbols']} symbols, {o['main_scenarios']} scenarios")
    market = BenchMarket(o["main_scenarios"], o["main_symbols"], seed=o["seed"])
    stream = market.ticks(ticks)
    batches = batch_records(stream, B, P)
    singles = single_records(stream, P)
    out: dict[str, Any] = {"setup": {
        "ticks": ticks, "batch": B, "partitions": P, "scenarios": len(market.config.scenarios),
        "symbols": len(market.symbols), "ticks_per_session": market.ticks_per_session,
        "ticks_per_ms": market.ticks_per_ms, "cpus": mp.cpu_count()}}

    # limit and baseline share one broker; each reads its own topic.
    nb = min(ticks, o["baseline_ticks"])
    partner = _partners(market)
    with EmbeddedBroker() as broker:
        for name in ("bench.limit.batch", "bench.limit.single", "bench.baseline.batch", "bench.baseline.single"):
            broker.create_topic(name, P)
        for shape in ("batch", "single"):
            broker.create_topic(T.changelog("prices", f"bench-baseline-{shape}"), P)
        log("limit: bare aiokafka consumer, vendor batches")
        limit = _phase("limit", "limit", {"bootstrap": broker.bootstrap, "topic": "bench.limit.batch",
                                          "partitions": P, "ticks": ticks},
                       broker.bootstrap, "bench.limit.batch", batches, P)
        log("limit: one tick per record")
        limit["single_tick_records"] = _phase(
            "limit", "limit (single)", {"bootstrap": broker.bootstrap, "topic": "bench.limit.single",
                                        "partitions": P, "ticks": ticks},
            broker.bootstrap, "bench.limit.single", singles, P)
        base: dict[str, Any] = {}
        for shape, recs in (("batch", batch_records(stream[:nb], B, P)), ("single", singles[:nb])):
            log(f"baseline: faust idiom, {'vendor batches' if shape == 'batch' else 'one tick per record'}")
            r = _phase("baseline", f"baseline ({shape})",
                       {"url": broker.url, "topic": f"bench.baseline.{shape}", "partitions": P, "ticks": nb,
                        "app_id": f"bench-baseline-{shape}", "shape": shape, "partner": partner},
                       broker.bootstrap, f"bench.baseline.{shape}", recs, P)
            if shape == "batch":
                base.update(r)
            else:
                base["single_tick_records"] = r
    out["limit"], out["baseline"] = limit, base

    log("engine: vendor batches")
    eng = _engine_phase("engine", market, batches, P)
    log("engine: one tick per record")
    eng["single_tick_records"] = _engine_phase("engine (single)", market, singles, P)
    n_lat = int(o["latency_rate"] * o["latency_seconds"])
    lat_stream = market.ticks(n_lat)
    log(f"engine: latency at {o['latency_rate']} ticks/s offered")
    lat = _engine_phase("engine (latency)", market, batch_records(lat_stream, 100, P), P,
                        rate=o["latency_rate"], latency=True)
    eng["latency_ms"] = lat["latency_ms"]
    eng["latency"] = lat
    by: dict[str, Any] = {}
    n_scale = max(1, ticks // 2)
    for count in scenarios:
        log(f"engine: {count} scenarios over {o['scaling_symbols']} symbols")
        m = BenchMarket(count, o["scaling_symbols"], seed=o["seed"])
        r = _engine_phase(f"engine ({count} scenarios)", m, batch_records(m.ticks(n_scale), B, P), P)
        by[str(count)] = r
    eng["by_scenarios"] = {k: v["ticks_per_s"] for k, v in by.items()}
    eng["by_scenarios_detail"] = by
    eng["vs_limit"] = round(eng["ticks_per_s"] / limit["ticks_per_s"], 3)
    eng["vs_baseline"] = round(eng["ticks_per_s"] / base["ticks_per_s"], 1)
    out["engine"] = eng
    return out


def _partners(market: BenchMarket) -> dict[str, str]:
    """For the baseline's ratio per tick: each symbol's other leg in the first ratio that uses it."""
    out: dict[str, str] = {}
    for sc in market.config.scenarios:
        legs = sc.trigger.series.legs
        if len(legs) == 2:
            out.setdefault(legs[0], legs[1])
            out.setdefault(legs[1], legs[0])
    return out


def format_table(r: dict[str, Any]) -> str:
    return str(r)
