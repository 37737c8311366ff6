"""What event time costs: the engine's phases with the same ticks keyed by source and keyed by
symbol, side by side (docs/performance.md, "Event time"). Pure: phase results in, the
``engine["keyed"]`` section of the bench's result out.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KEYINGS", "keyed_comparison"]

# keying -> shape -> what its records are (docs/performance.md, "Event time")
KEYINGS = {"by_source": {"batches": "vendor batches keyed by source (round-robin over the partitions)",
                         "single": "one tick per record, keyed by the source of its vendor batch"},
           "by_symbol": {"batches": "vendor batches cut into one record per symbol, keyed by symbol",
                         "single": "one tick per record, keyed by symbol"}}


def _ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a is not None and b else None


def keyed_comparison(eng: dict[str, Any], lat: dict[str, Any], lim: dict[str, Any],
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

