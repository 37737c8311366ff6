"""``ratiowatch bench``: ratiowatch against the bare-consumer limit and the faust idiom, on the same
embedded broker and the same generated ticks, plus latency, memory, scaling with scenarios, and
what event time costs: the same ticks keyed by source and by symbol
(:data:`ratiowatch.bench.event_time.KEYINGS`).

:func:`run_bench` runs every phase in order (:mod:`ratiowatch.bench.phase`: each in a fresh worker
process fed from this one, each checking its count) over the generated market
(:mod:`ratiowatch.bench.market`), and gathers their results into one document.
"""

from __future__ import annotations

import os
import platform
from typing import Any, Callable

from ratiowatch.streams import topics
from ratiowatch.streams.broker import EmbeddedBroker

from .event_time import KEYINGS, keyed_comparison
from .market import (BenchMarket, Record, batch_records, single_records, source_single_records,
                     symbol_batch_records)
from .phase import engine_phase, run_phase

__all__ = ["DEFAULTS", "run_bench"]

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


def _host() -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
            "load_avg_1m_at_start": round(load, 2) if load is not None else None}


def run_bench(*, ticks: int = DEFAULTS["ticks"], scenarios: tuple[int, ...] = DEFAULTS["scenarios"],
              log: Callable[[str], None] = lambda _: None, profile_dir: str | None = None,
              peers: bool = False, peers_python: str | None = None, **options: Any) -> dict[str, Any]:
    """Every phase, in order; returns {"limit", "baseline", "engine", "setup"} (docs/performance.md);
    the keyed-by-source / keyed-by-symbol comparison is ``engine["keyed"]``. With ``peers``, also
    "peers": Bytewax and Quix Streams on the one-tick-per-record stream (:mod:`.peers`), run with
    ``peers_python`` (default: this interpreter)."""
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

    # limit, baseline and the peers share one broker; each reads its own topics.
    with EmbeddedBroker() as broker:
        for name in ("bench.limit.batch", "bench.limit.single", "bench.limit.symbol-batch", "bench.baseline.batch",
                     "bench.baseline.single"):
            broker.create_topic(name, P)
        for shape in ("batch", "single"):
            broker.create_topic(topics.changelog("prices", f"bench-baseline-{shape}"), P)

        def limit(shape: str, recs: list[Record]) -> dict[str, Any]:
            log(f"limit: bare aiokafka consumer + orjson, {_shape(shape)}")
            topic = f"bench.limit.{shape}"
            return run_phase("limit", f"limit ({shape})", {"bootstrap": broker.bootstrap, "topic": topic,
                                                           "partitions": P, "ticks": sum(r[3] for r in recs)},
                             broker.bootstrap, topic, recs, P)

        def baseline(shape: str, recs: list[Record]) -> dict[str, Any]:
            log(f"baseline: faust idiom (Record stream, table write per tick), {_shape(shape)}")
            topic = f"bench.baseline.{shape}"
            return run_phase("baseline", f"baseline ({shape})",
                             {"url": broker.url, "topic": topic, "partitions": P, "ticks": sum(r[3] for r in recs),
                              "app_id": f"bench-baseline-{shape}", "shape": shape, "partner": partner},
                             broker.bootstrap, topic, recs, P)

        lim = limit("batch", batches)
        lim["single_tick_records"] = limit("single", singles)
        lim["symbol_batches"] = limit("symbol-batch", symbol_batches)
        base = baseline("batch", batch_records(stream[:nb], B, P))
        base["single_tick_records"] = baseline("single", singles[:nb])

        peer_results = None
        if peers:  # on the limit's broker, each on a topic of its own
            from .peers import run_peers

            peer_results = run_peers(singles, P, partner, lim["single_tick_records"]["ticks_per_s"],
                                     python=peers_python, log=log, broker=broker)

    log("engine: ratiowatch, vendor batches")
    prof = (lambda name: os.path.join(profile_dir, name)) if profile_dir else (lambda name: None)
    eng = engine_phase("engine", market, stream, batches, P, profile=prof("engine-batch"))
    log("engine: ratiowatch, one tick per record (keyed by symbol)")
    eng["single_tick_records"] = engine_phase("engine (single)", market, stream, singles, P,
                                              profile=prof("engine-single"))
    # Event time: the same stream keyed the other way for each shape (see KEYINGS).
    keyed_phases: dict[str, dict[str, Any]] = {}
    log("engine: ratiowatch, keyed by symbol: the vendor batches cut into one record per symbol")
    keyed_phases["by_symbol.batches"] = engine_phase("engine (keyed by symbol, batches)", market, stream,
                                                     symbol_batches, P, profile=prof("engine-symbol-batch"))
    log("engine: ratiowatch, keyed by source: one tick per record")
    keyed_phases["by_source.single"] = engine_phase("engine (keyed by source, single)", market, stream,
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
    lat = engine_phase("engine (latency)", lat_market, lat_stream, batch_records(lat_stream, LB, P), P,
                       rate=o["latency_rate"], latency=True, warmup_ticks=n_warm, burst=LB)
    # The same phase with grace_ms 0 (Kafka Streams' max.task.idle.ms default): a caught-up partition
    # holds the watermark no longer than its router's next word. What the default's grace costs,
    # measured; the default stays 50 ms, as it decides which ticks become corrections (README "Event
    # time").
    log("engine: latency, vendor batches, grace_ms 0")
    lat0 = engine_phase("engine (latency, grace_ms 0)",
                        BenchMarket(o["latency_scenarios"], o["scaling_symbols"], seed=o["seed"], grace_ms=0),
                        lat_stream, batch_records(lat_stream, LB, P), P, rate=o["latency_rate"], latency=True,
                        warmup_ticks=n_warm, burst=LB)
    lat_records = {"by_symbol.batches": lambda: symbol_batch_records(lat_stream, LB, P),
                   "by_source.single": lambda: source_single_records(lat_stream, LB, P),
                   "by_symbol.single": lambda: single_records(lat_stream, P)}
    for name, make in lat_records.items():
        keying, shape = name.split(".")
        log(f"engine: latency, {KEYINGS[keying][shape]}")
        keyed_phases["latency." + name] = engine_phase(f"engine (latency, keyed by {keying[3:]}, {shape})",
                                                       lat_market, lat_stream, make(), P, rate=o["latency_rate"],
                                                       latency=True, warmup_ticks=n_warm, burst=LB)
    detail: dict[str, Any] = {}
    n_scale = max(1, ticks // 2)
    for count in scenarios:
        m = BenchMarket(count, o["scaling_symbols"], seed=o["seed"])
        log(f"engine: {count:,} scenarios over {len(m.symbols):,} symbols, {n_scale:,} ticks")
        m_stream = m.ticks(n_scale)
        detail[str(count)] = engine_phase(f"engine ({count} scenarios)", m, m_stream,
                                          batch_records(m_stream, B, P), P, profile=prof(f"engine-{count}-scenarios"))
    eng["by_scenarios"] = {k: v["ticks_per_s"] for k, v in detail.items()}
    eng["by_scenarios_detail"] = detail
    for r in (eng, eng["single_tick_records"]):
        pair = lim if r is eng else lim["single_tick_records"]
        peer = base if r is eng else base["single_tick_records"]
        r["vs_limit"] = round(r["ticks_per_s"] / pair["ticks_per_s"], 3)
        r["vs_baseline"] = round(r["ticks_per_s"] / peer["ticks_per_s"], 1)
    eng["keyed"] = keyed_comparison(eng, lat, lim, keyed_phases)
    eng["latency_grace_0"] = {k: lat0.get(k) for k in ("latency_ms", "worker_latency_ms", "latency_samples",
                                                         "latency_breakdown_ms", "corrections")}
    eng["latency_ms"] = lat.pop("latency_ms")
    eng["latency"] = lat
    setup = {"ticks": ticks, "batch": B, "partitions": P, "scenarios": len(market.config.scenarios),
             "symbols": len(market.symbols), "ticks_per_session": market.ticks_per_session,
             "ticks_per_ms": market.ticks_per_ms, "baseline_ticks": nb, "seed": o["seed"], "host": host}
    out = {"limit": lim, "baseline": base, "engine": eng, "setup": setup}
    if peer_results is not None:
        out["peers"] = peer_results
    return out


def _shape(shape: str) -> str:
    return {"batch": "vendor batches", "single": "one tick per record",
            "symbol-batch": "vendor batches cut into one record per symbol"}[shape]

