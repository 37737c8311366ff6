"""The backtest's summaries: per rule (crossings, episodes, forward change after firing) and per
scenario, with the forward change of the trigger series split by how many confirmations were met
at each firing. Read from the frames of :mod:`.scenario_run`; crossings only, no loop over days.
"""

from __future__ import annotations

import statistics
from datetime import date
from typing import Any

import polars as pl

from ratiowatch.model import Rule

from .frames import forward_frame
from .results import FORWARD_HORIZONS, Episode, RuleSummary, ScenarioSummary
from .scenario_run import ScenarioRun

__all__ = ["rule_summary", "forward_by_met", "scenario_summary"]


def rule_summary(run: ScenarioRun, rule: Rule) -> RuleSummary:
    """One rule over the history: its crossings, episodes and the forward change of its own
    series after it fired."""
    frame = run.rules[rule.name]
    series = run.series[rule.series.name]
    fwd = forward_frame(rule.series, series, "value", "fwd_")
    crossings = frame.filter(pl.col("kind").is_not_null())
    episodes: list[Episode] = []
    opened: tuple[date, int] | None = None
    for row in crossings.iter_rows(named=True):  # crossings only, not days
        if row["kind"] == "fired":
            opened = (row["date"], row["session"])
        elif opened is not None:
            episodes.append(Episode(opened[0], row["date"], row["session"] - opened[1]))
            opened = None
    if opened is not None:
        episodes.append(Episode(opened[0], None, series.height - 1 - opened[1]))
    closed = [e.sessions for e in episodes if e.rearmed is not None]
    # As of: with ``require`` a trigger can fire on a date its own series did not advance.
    fired = crossings.filter(pl.col("kind") == "fired").select("date").join_asof(fwd, on="date", strategy="backward")
    med, n, base = _medians(fired, "fwd_"), _counts(fired, "fwd_"), _medians(fwd, "fwd_")
    return RuleSummary(
        rule=rule.name, description=rule.describe(), transform=rule.transform, sessions=rule.sessions,
        fired=fired.height, rearmed=crossings.filter(pl.col("kind") == "rearmed").height,
        episodes=tuple(episodes), median_episode_sessions=statistics.median(closed) if closed else None,
        forward_median=med, forward_n=n, baseline_median=base)


def forward_by_met(run: ScenarioRun, table: pl.DataFrame) -> dict[int, dict[str, Any]]:
    """Forward change of the trigger series after each firing, split by how many confirmations
    were met at that firing: met -> {"n", "median": {horizon: median}}."""
    if not run.sc.confirmations:
        return {}
    fired = table.filter((pl.col("rule") == "trigger") & (pl.col("kind") == "fired"))
    out: dict[int, dict[str, Any]] = {}
    for k in sorted(set(fired["confirmations_met"].to_list())):
        part = fired.filter(pl.col("confirmations_met") == k)
        out[k] = {"n": part.height, "median": _medians(part, "fwd_"), "n_by_horizon": _counts(part, "fwd_")}
    return out


def scenario_summary(run: ScenarioRun, table: pl.DataFrame) -> ScenarioSummary:
    sc = run.sc
    trig = run.trigger
    rules = tuple(rule_summary(run, r) for r in sc.rules)
    t = rules[0]
    last = trig.tail(1).to_dicts()
    return ScenarioSummary(
        scenario=sc.id, title=sc.title,
        fired=t.fired, rearmed=t.rearmed, episodes=t.episodes,
        median_episode_sessions=t.median_episode_sessions,
        forward_median=t.forward_median, forward_n=t.forward_n, baseline_median=t.baseline_median,
        first_date=trig["date"][0] if trig.height else None,
        last_date=last[0]["date"] if last else None,
        last_metric=last[0]["metric"] if last else None,
        armed=(last[0]["zone"] == 0) if last else None,
        rules=rules, require=sc.require, forward_by_met=forward_by_met(run, table),
    )


def _medians(frame: pl.DataFrame, prefix: str) -> dict[int, float | None]:
    out: dict[int, float | None] = {}
    for h in FORWARD_HORIZONS:
        col = frame[f"{prefix}{h}"].drop_nulls()
        out[h] = col.median() if col.len() else None
    return out


def _counts(frame: pl.DataFrame, prefix: str) -> dict[int, int]:
    return {h: frame[f"{prefix}{h}"].drop_nulls().len() for h in FORWARD_HORIZONS}
