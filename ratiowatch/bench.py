"""``ratiowatch bench``: ratiowatch against the bare-consumer limit and the faust idiom, on the same
embedded broker and the same generated ticks, plus latency, memory, scaling with scenarios, and
what event time costs: the same ticks keyed by source and by symbol (:data:`KEYINGS`).

Each phase runs in a fresh worker process (:mod:`ratiowatch.bench_phases`) fed from this process
(:mod:`ratiowatch.bench_feed`); every engine phase also gets a fresh embedded broker, so no state,
topic or warm cache carries over. Every phase checks its count: the ticks the worker processed
must equal the ticks sent (and, for the engine, every routed tick must have been applied and
every event read back), or the bench fails with :class:`BenchError`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import time
from typing import Any, Callable

from ratiowatch.streams import topics as T
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker

from .bench_feed import EventTimer, feed, percentiles, prefill_count
from .bench_market import (BenchMarket, Record, batch_records, single_records, source_single_records,
                           symbol_batch_records)

__all__ = ["BenchError", "DEFAULTS", "run_bench", "format_table"]

DEFAULTS: dict[str, Any] = {
    "ticks": 320_000,
    "scenarios": (10, 1_000, 10_000),
    "symbols": 500,            # the main stream's universe; each symbol feeds one generated ratio
    "scaling_symbols": 2_000,  # the universe of the by-scenarios runs
    "batch": 200,              # ticks per vendor record
    "partitions": 8,
    "baseline_ticks": 25_000,  # the faust idiom runs 20-40x slower: a smaller fixed count keeps the run short
    "latency_rate": 10_000,    # ticks/s offered in the latency phase
    # ...over this many scenarios (and `scaling_symbols`): the main stream's 259 give ~12 crossings
    # a second, too few for a p99 to mean much; 1,000 give ~40.
    "latency_scenarios": 1_000,
    "latency_seconds": 10.0,
    # The latency phases' first seconds are timed apart (one-off work at assignment, see docs).
    "latency_warmup_seconds": 2.0,
    "latency_batch": 100,      # ticks per record in the latency phase (a record every 10 ms)
    "seed": 7,
}
WINDOW_BYTES_PER_PARTITION = 2 * 1024 * 1024  # unread ticks the feeder allows: well inside the broker's 5 MB


class BenchError(RuntimeError):
    """A phase did not process every tick it was sent, or its worker failed: the message says which."""


def _spawn(kind: str, spec: dict[str, Any]) -> tuple[Any, Any, Any]:
    from . import bench_phases

    ctx = mp.get_context("spawn")  # a fresh interpreter: nothing of this process (its broker threads) leaks in
    progress = ctx.Value("q", 0, lock=False)
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=bench_phases.child_main, args=(kind, spec, child, progress), daemon=True)
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


def _phase(kind: str, what: str, spec: dict[str, Any], bootstrap: str, topic: str, records: list[Record],
           partitions: int, rate: float | None = None, timer: EventTimer | None = None,
           burst: int = 1) -> dict[str, Any]:
    window = WINDOW_BYTES_PER_PARTITION * partitions
    # The bare consumer reads faster than any feed: what fits is on the broker before it starts, so
    # it measures reading, not producing. The others start their clock when they are ready, the
    # feed starts then and stays well ahead of them (see bench_phases._Clock).
    ahead = prefill_count(records, window) if kind == "limit" and rate is None else 0
    sent_ahead = feed(bootstrap, topic, records, lambda: 0, window_bytes=window, last=ahead)["ticks"] if ahead else 0
    proc, conn, progress = _spawn(kind, spec)
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


def _engine(what: str, market: BenchMarket, stream: list[Any], records: list[Record], partitions: int, *,
            rate: float | None = None, latency: bool = False, warmup_ticks: int = 0, burst: int = 1,
            profile: str | None = None) -> dict[str, Any]:
    with EmbeddedBroker() as broker:
        ensure_topics(broker, partitions)
        spec = {"url": broker.url, "partitions": partitions, "ticks": sum(r[3] for r in records),
                "market": market.spec(), "profile": profile}
        timer = EventTimer(broker.bootstrap, T.EVENTS, partitions, warmup_ticks) if latency else None
        try:
            r = _phase("engine", what, spec, broker.bootstrap, T.TICKS, records, partitions, rate, timer, burst)
        finally:
            if timer is not None:
                timer.stop()
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


# keying -> shape -> what its records are (docs/performance.md, "Event time")
KEYINGS = {"by_source": {"batches": "vendor batches keyed by source (round-robin over the partitions)",
                         "single": "one tick per record, keyed by the source of its vendor batch"},
           "by_symbol": {"batches": "vendor batches cut into one record per symbol, keyed by symbol",
                         "single": "one tick per record, keyed by symbol"}}


def _ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a is not None and b else None


def _keyed(eng: dict[str, Any], lat: dict[str, Any], lim: dict[str, Any],
           phases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the watermark costs: for each keying and shape the throughput phase on the main stream
    and the latency phase at the offered rate (the by-source batches and by-symbol single-tick
    throughput phases are the engine's main two), the watermark's buffer (``pending_max``: the most
    ticks a shard had waiting) and keyed-by-symbol / keyed-by-source."""
    runs = {("by_source", "batches"): (eng, lat, lim),
            ("by_symbol", "single"): (eng["single_tick_records"], phases["latency.by_symbol.single"],
                                      lim["single_tick_records"]),
            ("by_symbol", "batches"): (phases["by_symbol.batches"], phases["latency.by_symbol.batches"],
                                       lim["symbol_batches"]),
            ("by_source", "single"): (phases["by_source.single"], phases["latency.by_source.single"],
                                      lim["single_tick_records"])}
    out: dict[str, Any] = {k: {} for k in KEYINGS}
    for (keying, shape), (r, la, limit) in runs.items():
        out[keying][shape] = {
            "records": r["records"], "ticks": r["ticks"], "ticks_per_record": round(r["ticks"] / r["records"], 2),
            "seconds": r["seconds"], "ticks_per_s": r["ticks_per_s"], "ticks_per_cpu_s": r["ticks_per_cpu_s"],
            "limit_ticks_per_s": limit["ticks_per_s"], "vs_limit": _ratio(r["ticks_per_s"], limit["ticks_per_s"], 3),
            "pending_max": r["counters"].get("pending_max", 0),
            "latency_ms": la["latency_ms"], "latency_samples": la["latency_samples"],
            "latency_records": la["records"], "latency_pending_max": la["counters"].get("pending_max", 0),
            # how long the latency phase's worker took for what was offered: longer, it fell behind
            # (its ticks then wait in Kafka, not in the watermark)
            "latency_phase_seconds": la["seconds"],
            "offered_seconds": round(la["ticks"] / la["offered_ticks_per_s"], 3),
        }
    ratio: dict[str, Any] = {}
    for shape in ("batches", "single"):
        a, b = out["by_symbol"][shape], out["by_source"][shape]
        ratio[shape] = {"ticks_per_s": _ratio(a["ticks_per_s"], b["ticks_per_s"]),
                        "ticks_per_cpu_s": _ratio(a["ticks_per_cpu_s"], b["ticks_per_cpu_s"]),
                        "vs_limit": _ratio(a["vs_limit"], b["vs_limit"]),
                        **{f"latency_{q}": _ratio(a["latency_ms"][q], b["latency_ms"][q])
                           for q in ("p50", "p99", "max")}}
    out["symbol_vs_source"] = ratio
    out["phases"] = phases
    return out


def _host() -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
            "load_avg_1m_at_start": round(load, 2) if load is not None else None}


def run_bench(*, ticks: int = DEFAULTS["ticks"], scenarios: tuple[int, ...] = DEFAULTS["scenarios"],
              log: Callable[[str], None] = lambda _: None, profile_dir: str | None = None,
              **options: Any) -> dict[str, Any]:
    """Every phase, in order; returns {"limit", "baseline", "engine", "setup"} (docs/performance.md);
    the keyed-by-source / keyed-by-symbol comparison is ``engine["keyed"]``."""
    o = {**DEFAULTS, **options}
    P, B = o["partitions"], o["batch"]
    host = _host()
    # The main stream: the shipped scenarios plus one generated ratio per pair of symbols, so a
    # tick feeds about one ratio, as in the peers' job ("latest price per symbol, ratio per tick").
    market = BenchMarket(None, o["symbols"], seed=o["seed"])
    log(f"generating {ticks:,} ticks over {len(market.symbols)} symbols ({len(market.config.scenarios)} scenarios)")
    stream = market.ticks(ticks)
    batches = batch_records(stream, B, P)
    singles = single_records(stream, P)
    symbol_batches = symbol_batch_records(stream, B, P)
    nb = min(ticks, o["baseline_ticks"])
    partner = market.partners()

    # limit and baseline share one broker; each reads its own topics.
    with EmbeddedBroker() as broker:
        for name in ("bench.limit.batch", "bench.limit.single", "bench.limit.symbol-batch", "bench.baseline.batch",
                     "bench.baseline.single"):
            broker.create_topic(name, P)
        for shape in ("batch", "single"):
            broker.create_topic(T.changelog("prices", f"bench-baseline-{shape}"), P)

        def limit(shape: str, recs: list[Record]) -> dict[str, Any]:
            log(f"limit: bare aiokafka consumer + orjson, {_shape(shape)}")
            topic = f"bench.limit.{shape}"
            return _phase("limit", f"limit ({shape})", {"bootstrap": broker.bootstrap, "topic": topic,
                                                         "partitions": P, "ticks": sum(r[3] for r in recs)},
                          broker.bootstrap, topic, recs, P)

        def baseline(shape: str, recs: list[Record]) -> dict[str, Any]:
            log(f"baseline: faust idiom (Record stream, table write per tick), {_shape(shape)}")
            topic = f"bench.baseline.{shape}"
            return _phase("baseline", f"baseline ({shape})",
                          {"url": broker.url, "topic": topic, "partitions": P, "ticks": sum(r[3] for r in recs),
                           "app_id": f"bench-baseline-{shape}", "shape": shape, "partner": partner},
                          broker.bootstrap, topic, recs, P)

        lim = limit("batch", batches)
        lim["single_tick_records"] = limit("single", singles)
        lim["symbol_batches"] = limit("symbol-batch", symbol_batches)
        base = baseline("batch", batch_records(stream[:nb], B, P))
        base["single_tick_records"] = baseline("single", singles[:nb])

    log("engine: ratiowatch, vendor batches")
    prof = (lambda name: os.path.join(profile_dir, name)) if profile_dir else (lambda name: None)
    eng = _engine("engine", market, stream, batches, P, profile=prof("engine-batch"))
    log("engine: ratiowatch, one tick per record (keyed by symbol)")
    eng["single_tick_records"] = _engine("engine (single)", market, stream, singles, P,
                                         profile=prof("engine-single"))
    # Event time: the same stream keyed the other way for each shape (see KEYINGS).
    keyed_phases: dict[str, dict[str, Any]] = {}
    log("engine: ratiowatch, keyed by symbol: the vendor batches cut into one record per symbol")
    keyed_phases["by_symbol.batches"] = _engine("engine (keyed by symbol, batches)", market, stream, symbol_batches, P,
                                                profile=prof("engine-symbol-batch"))
    log("engine: ratiowatch, keyed by source: one tick per record")
    keyed_phases["by_source.single"] = _engine("engine (keyed by source, single)", market, stream,
                                               source_single_records(stream, B, P), P,
                                               profile=prof("engine-source-single"))
    n_warm = int(o["latency_rate"] * o["latency_warmup_seconds"])
    n_lat = n_warm + int(o["latency_rate"] * o["latency_seconds"])
    log(f"engine: latency at {o['latency_rate']:,} ticks/s offered for {o['latency_warmup_seconds']:g}s + "
        f"{o['latency_seconds']:g}s, {o['latency_scenarios']:,} scenarios")
    lat_market = BenchMarket(o["latency_scenarios"], o["scaling_symbols"], seed=o["seed"])
    lat_stream = lat_market.ticks(n_lat)
    LB = o["latency_batch"]
    # Every latency phase is offered the same vendor messages of LB ticks every LB/rate seconds; the
    # records cut from one message are handed to the producer together (burst).
    lat = _engine("engine (latency)", lat_market, lat_stream, batch_records(lat_stream, LB, P), P,
                  rate=o["latency_rate"], latency=True, warmup_ticks=n_warm, burst=LB)
    lat_records = {"by_symbol.batches": lambda: symbol_batch_records(lat_stream, LB, P),
                   "by_source.single": lambda: source_single_records(lat_stream, LB, P),
                   "by_symbol.single": lambda: single_records(lat_stream, P)}
    for name, make in lat_records.items():
        keying, shape = name.split(".")
        log(f"engine: latency, {KEYINGS[keying][shape]}")
        keyed_phases["latency." + name] = _engine(f"engine (latency, keyed by {keying[3:]}, {shape})", lat_market,
                                                  lat_stream, make(), P, rate=o["latency_rate"], latency=True,
                                                  warmup_ticks=n_warm, burst=LB)
    detail: dict[str, Any] = {}
    n_scale = max(1, ticks // 2)
    for count in scenarios:
        m = BenchMarket(count, o["scaling_symbols"], seed=o["seed"])
        log(f"engine: {count:,} scenarios over {len(m.symbols):,} symbols, {n_scale:,} ticks")
        m_stream = m.ticks(n_scale)
        detail[str(count)] = _engine(f"engine ({count} scenarios)", m, m_stream, batch_records(m_stream, B, P), P,
                                     profile=prof(f"engine-{count}-scenarios"))
    eng["by_scenarios"] = {k: v["ticks_per_s"] for k, v in detail.items()}
    eng["by_scenarios_detail"] = detail
    for r in (eng, eng["single_tick_records"]):
        pair = lim if r is eng else lim["single_tick_records"]
        peer = base if r is eng else base["single_tick_records"]
        r["vs_limit"] = round(r["ticks_per_s"] / pair["ticks_per_s"], 3)
        r["vs_baseline"] = round(r["ticks_per_s"] / peer["ticks_per_s"], 1)
    eng["keyed"] = _keyed(eng, lat, lim, keyed_phases)
    eng["latency_ms"] = lat.pop("latency_ms")
    eng["latency"] = lat
    setup = {"ticks": ticks, "batch": B, "partitions": P, "scenarios": len(market.config.scenarios),
             "symbols": len(market.symbols), "ticks_per_session": market.ticks_per_session,
             "ticks_per_ms": market.ticks_per_ms, "baseline_ticks": nb, "seed": o["seed"], "host": host}
    return {"limit": lim, "baseline": base, "engine": eng, "setup": setup}


def _shape(shape: str) -> str:
    return {"batch": "vendor batches", "single": "one tick per record",
            "symbol-batch": "vendor batches cut into one record per symbol"}[shape]


def _n(x: Any) -> str:
    return "-" if x is None else f"{x:,.0f}" if isinstance(x, (int, float)) and abs(x) >= 100 else f"{x:,.2f}"


def format_table(r: dict[str, Any]) -> str:
    """The human-readable report of :func:`run_bench`'s result."""
    s, lim, base, eng = r["setup"], r["limit"], r["baseline"], r["engine"]
    lines = [f"ratiowatch bench: {s['ticks']:,} ticks over {s['symbols']} symbols, {s['scenarios']} scenarios; "
             f"vendor batches of {s['batch']}, {s['partitions']} partitions; {s['host']['cpus']} CPUs, "
             f"load {s['host']['load_avg_1m_at_start']} at start", "",
             f"{'':<10}{'':<12}{'shape':<9}{'ticks':>9}{'seconds':>9}{'ticks/s':>11}{'per CPU-s':>11}"
             f"{'vs limit':>10}{'vs baseline':>13}"]
    rows = [("limit", "aiokafka", lim), ("baseline", "faust", base), ("engine", "ratiowatch", eng)]
    for shape in ("batches", "single"):
        for label, what, res in rows:
            x = res if shape == "batches" else res["single_tick_records"]
            lines.append(f"{label:<10}{what:<12}{shape:<9}{x['ticks']:>9,}{x['seconds']:>9.2f}{_n(x['ticks_per_s']):>11}"
                         f"{_n(x.get('ticks_per_cpu_s')):>11}"
                         f"{_n(x['vs_limit']) if 'vs_limit' in x else '':>10}"
                         f"{(_n(x['vs_baseline']) + 'x') if 'vs_baseline' in x else '':>13}")
    lat, L = eng["latency_ms"], eng["latency"]
    lines += ["", "(single: one tick per Kafka record; per CPU-s: ticks per CPU-second of the worker process)",
              "",
              f"latency, tick produced -> event read from `events`, at {L['offered_ticks_per_s']:,.0f} ticks/s offered "
              f"over {L['scenarios']:,} scenarios: "
              f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms ({L['latency_samples']:,} events)",
              f"worker peak RSS: {eng['peak_rss_mb']:,.0f} MB (batches), "
              f"{eng['single_tick_records']['peak_rss_mb']:,.0f} MB (single); "
              f"scenarios per tick ~{eng['scenario_uses_per_tick']}",
              "", f"{'scenarios':>10}{'symbols':>9}{'uses/tick':>11}{'ticks':>10}{'ticks/s':>11}{'per CPU-s':>11}"
              f"{'events':>8}{'peak RSS MB':>13}"]
    for count, d in eng["by_scenarios_detail"].items():
        lines.append(f"{int(count):>10,}{d['symbols']:>9,}{d['scenario_uses_per_tick']:>11}{d['ticks']:>10,}"
                     f"{_n(d['ticks_per_s']):>11}{_n(d.get('ticks_per_cpu_s')):>11}{d['events']:>8,}"
                     f"{d['peak_rss_mb']:>13,.0f}")
    K = eng["keyed"]
    lines += ["", f"event time, what the watermark costs: the stream above keyed by source and by symbol; latency at "
                  f"{L['offered_ticks_per_s']:,.0f} ticks/s offered over {L['scenarios']:,} scenarios",
              "", f"{'keyed by':<10}{'shape':<9}{'records':>9}{'ticks/rec':>10}{'ticks/s':>10}{'per CPU-s':>11}"
                  f"{'vs limit':>9}{'waiting':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'waiting':>9}"
                  f"{'took s':>8}"]
    for shape in ("batches", "single"):
        for keying in ("by_source", "by_symbol"):
            x = K[keying][shape]
            q = x["latency_ms"]
            lines.append(f"{keying[3:]:<10}{shape:<9}{x['records']:>9,}{x['ticks_per_record']:>10.2f}"
                         f"{_n(x['ticks_per_s']):>10}{_n(x['ticks_per_cpu_s']):>11}{_n(x['vs_limit']):>9}"
                         f"{x['pending_max']:>9,}{_n(q['p50']):>8}{_n(q['p99']):>8}{_n(q['max']):>8}"
                         f"{x['latency_pending_max']:>9,}{x['latency_phase_seconds']:>8.1f}")
    offered = K["by_source"]["batches"]["offered_seconds"]
    lines.append("(batches keyed by symbol: each vendor batch cut into one record per symbol; waiting: the most "
                 "ticks a shard held for the watermark, throughput phase, then latency phase; took s: the latency "
                 f"phase's worker, for {offered:g} s of ticks offered: longer, it fell behind)")
    for shape, label in (("batches", "batches"), ("single", "one tick per record")):
        rt = K["symbol_vs_source"][shape]
        lines.append(f"keyed by symbol / by source, {label}: ticks/s {_n(rt['ticks_per_s'])}x, "
                     f"per CPU-s {_n(rt['ticks_per_cpu_s'])}x, latency p50 {_n(rt['latency_p50'])}x, "
                     f"p99 {_n(rt['latency_p99'])}x")
    return "\n".join(lines)
