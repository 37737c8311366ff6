"""The backtest's outputs for people: the per-scenario report and the chart of the trigger metric."""

from __future__ import annotations

import polars as pl

from ratiowatch.charts import metric_chart_png
from ratiowatch.model import Config, Scenario

from .results import FORWARD_HORIZONS, BacktestResult

__all__ = ["scenario_chart_png", "format_report"]


def scenario_chart_png(result: BacktestResult, sc: Scenario) -> bytes:
    """The trigger metric over the whole history with its threshold, re-arm line and crossings."""
    trig = sc.trigger
    frame = result.metrics[sc.id]
    crossings = [(d, k) for d, k in frame.filter(pl.col("kind").is_not_null()).select("date", "kind").iter_rows()]
    percent = trig.transform not in ("value", "streak") and trig.series.kind != "spread"
    what = {"value": trig.series.name, "lookback": f"{trig.series.name} {trig.sessions}-session change",
            "ma": f"{trig.series.name} vs {trig.sessions}-session average",
            "high": f"{trig.series.name} vs {trig.sessions}-session high",
            "low": f"{trig.series.name} vs {trig.sessions}-session low",
            "streak": f"{trig.series.name} streak (sessions)"}[trig.transform]
    return metric_chart_png(f"{sc.title}: {trig.describe()}", frame["date"].to_list(), frame["metric"].to_list(),
                            threshold=trig.threshold, rearm=trig.rearm, direction=trig.direction,
                            crossings=crossings, percent=percent, ylabel=what)


def _pct(x: float | None, spread: bool) -> str:
    if x is None:
        return "-"
    # "+ 0.0" turns a -0.0 left by rounding into +0.0, so a flat median never prints as "-0.0%".
    return f"{round(x, 3) + 0.0:+.3f}" if spread else f"{round(x * 100, 1) + 0.0:+.1f}%"


def format_report(cfg: Config, result: BacktestResult) -> str:
    """The human-readable report: per scenario, the summary and each trigger event with forward changes."""
    lines: list[str] = []
    hz = "  ".join(f"{h:>7}" for h in FORWARD_HORIZONS)
    for sc, s in zip(cfg.scenarios, result.summaries):
        spread = sc.trigger.series.kind == "spread"
        lines.append(f"== {sc.id}: {sc.title}")
        lines.append(f"   trigger: {sc.trigger.describe()} (re-arm {sc.trigger.rearm:g}); "
                     f"history {s.first_date or '-'} .. {s.last_date or '-'}")
        state = {None: "no data", True: "armed", False: "fired (not yet re-armed)"}[s.armed]
        lines.append(f"   fired {s.fired}x, re-armed {s.rearmed}x; now {state}, metric {_num(s.last_metric)}")
        if s.episodes:
            lens = f"median {s.median_episode_sessions:g} sessions" if s.median_episode_sessions is not None else "none closed"
            openep = [e for e in s.episodes if e.rearmed is None]
            note = f"; open since {openep[0].fired} ({openep[0].sessions} sessions)" if openep else ""
            lines.append(f"   episodes (fired -> re-armed): {lens}{note}")
        lines.append(f"   forward change of {sc.trigger.series.name} after firing   {hz}")
        lines.append("     median (n)                          " + "  ".join(
            f"{_pct(s.forward_median[h], spread):>7}" for h in FORWARD_HORIZONS) + "   n="
            + "/".join(str(s.forward_n[h]) for h in FORWARD_HORIZONS))
        lines.append("     every session (baseline)            " + "  ".join(
            f"{_pct(s.baseline_median[h], spread):>7}" for h in FORWARD_HORIZONS))
        if s.forward_by_met:
            need = f" (require {s.require})" if s.require is not None else ""
            lines.append(f"   by confirmations met at firing{need}")
            for k, part in s.forward_by_met.items():
                lines.append(f"     {k}/{len(sc.confirmations)} met, {part['n']} firings{'':<15}" + "  ".join(
                    f"{_pct(part['median'][h], spread):>7}" for h in FORWARD_HORIZONS))
        for rs, rule in zip(s.rules[1:], sc.confirmations):
            rspread = rule.series.kind == "spread"
            lens = f", episodes median {rs.median_episode_sessions:g} sessions" if rs.median_episode_sessions is not None else ""
            lines.append(f"   confirmation {rs.rule!r}: {rs.description}: fired {rs.fired}x, re-armed {rs.rearmed}x{lens}")
            lines.append(f"     forward change of {rule.series.name} after firing   " + "  ".join(
                f"{_pct(rs.forward_median[h], rspread):>7}" for h in FORWARD_HORIZONS))
        trig = result.table.filter((pl.col("scenario") == sc.id) & (pl.col("rule") == "trigger"))
        if trig.height:
            lines.append(f"   {'date':<10}  {'kind':<7}  {'metric':>10}  {'value':>10}  conf  " + hz)
            for r in trig.iter_rows(named=True):
                conf = f"{r['confirmations_met']}/{r['confirmations']}" if r["confirmations"] else "-"
                lines.append(f"   {r['date']!s:<10}  {r['kind']:<7}  {_num(r['value']):>10}  {_num(r['series_value']):>10}  "
                             f"{conf:<4}  " + "  ".join(f"{_pct(r[f'fwd_{h}'], spread):>7}" for h in FORWARD_HORIZONS))
        lines.append("")
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"
