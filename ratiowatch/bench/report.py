"""The bench's human-readable report: the table ``ratiowatch bench`` prints (without ``--json``)
from :func:`ratiowatch.bench.run.run_bench`'s result. Pure."""

from __future__ import annotations

from typing import Any

__all__ = ["format_table", "format_peers"]


def _n(x: Any) -> str:
    return "-" if x is None else f"{x:,.0f}" if isinstance(x, (int, float)) and abs(x) >= 100 else f"{x:,.2f}"


def _breakdown(lat: dict[str, Any]) -> list[str]:
    """Where the latency phase's time went (ratiowatch.bench.trace), p50 / p99 of each part."""
    b = lat.get("latency_breakdown_ms")
    if not b or not b.get("events_traced"):
        return []
    parts = "; ".join(f"{label} {b[k]['p50']} / {b[k]['p99']}" for k, label in
                      (("ticks_hop", "ticks hop"), ("shard_hop", "shard hop"), ("watermark_wait", "watermark wait"),
                       ("evaluation", "evaluation"), ("produce_to_send", "tick produced -> event sent")))
    lines = [f"  where it goes, ms p50 / p99 over {b['events_traced']:,} events: {parts}"]
    w = b.get("commit_writes")
    if w and w["count"]:
        lines.append(f"  commits: {w['count']} state writes held the event loop p50 {w['p50']} ms, max {w['max']} ms; "
                     f"released by the idle timer {b['released_by_timer']}, by an arrival {b['released_by_arrival']}")
    return lines


def _grace_0(g: dict[str, Any] | None) -> list[str]:
    """The latency phase again with ``grace_ms: 0``: what the watermark's grace costs."""
    if not g or not g.get("latency_ms") or g["latency_ms"].get("p50") is None:
        return []
    q = g["latency_ms"]
    return [f"with grace_ms 0 (a caught-up partition holds no tick back): "
            f"p50 {q['p50']} ms, p99 {q['p99']} ms, max {q['max']} ms; "
            f"{g.get('corrections') or 0:,} ticks applied as corrections",
            *("  " + line for line in _breakdown(g))]


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
              *_breakdown(L),
              *_grace_0(eng.get("latency_grace_0")),
              f"worker peak RSS: {eng['peak_rss_mb']:,.0f} MB (batches), "
              f"{eng['single_tick_records']['peak_rss_mb']:,.0f} MB (single); "
              f"scenarios per tick ~{eng['scenario_uses_per_tick']}",
              "", f"{'scenarios':>10}{'symbols':>9}{'uses/tick':>11}{'ticks':>10}{'ticks/s':>11}{'per CPU-s':>11}"
              f"{'events':>8}{'peak RSS MB':>13}"]
    for count, d in eng["by_scenarios_detail"].items():
        lines.append(f"{int(count):>10,}{d['symbols']:>9,}{d['scenario_uses_per_tick']:>11}{d['ticks']:>10,}"
                     f"{_n(d['ticks_per_s']):>11}{_n(d.get('ticks_per_cpu_s')):>11}{d['events']:>8,}"
                     f"{d['peak_rss_mb']:>13,.0f}")
    if "peers" in r:
        lines += ["", *format_peers(r)]
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


def format_peers(r: dict[str, Any]) -> list[str]:
    """The peers beside the limit and the engine of the same run, one tick per record, each as a
    ratio to the limit; a peer that is not installed says so."""
    lim, eng, peers = r["limit"]["single_tick_records"], r["engine"]["single_tick_records"], r["peers"]
    lines = [f"peers, one tick per Kafka record (the same stream and broker; Python {peers['python']}):", "",
             f"{'':<24}{'version':<10}{'ticks':>9}{'seconds':>9}{'ticks/s':>11}{'per CPU-s':>11}{'vs limit':>10}"]

    def row(label: str, version: str, x: dict[str, Any], ratio: Any) -> str:
        return (f"{label:<24}{version:<10}{x['ticks']:>9,}{x['seconds']:>9.2f}{_n(x['ticks_per_s']):>11}"
                f"{_n(x.get('ticks_per_cpu_s')):>11}{_n(ratio):>10}")

    lines.append(row("limit (aiokafka)", "", lim, 1.0))
    for peer, label in (("bytewax", "Bytewax"), ("quixstreams", "Quix Streams")):
        x = peers.get(peer, {"installed": False})
        if not x.get("installed"):
            lines.append(f"{label:<24}not installed (pip install 'ratiowatch[peers]', or --peers-python)")
        elif "error" in x:
            lines.append(f"{label:<24}{x['version']:<10}failed: {x['error']}")
        else:
            lines.append(row(label, x["version"], x, x["vs_limit"]))
    lines.append(row("engine (ratiowatch)", "", eng, eng["vs_limit"]))
    return lines
