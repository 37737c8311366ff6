"""The backtest over a whole history: every scenario, its events in ``canonical_order``, the
table and the summaries."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

import polars as pl

from ratiowatch.model import Config
from ratiowatch.model.sessions import session_close_ts_ms

from .results import BacktestResult, ScenarioSummary
from .scenario_run import ScenarioRun
from .summary import scenario_summary

__all__ = ["run_backtest"]


def run_backtest(cfg: Config, history: pl.DataFrame) -> BacktestResult:
    """Every event of every scenario in ``cfg`` over ``history`` (long frame ``symbol, date, close``)."""
    tz = cfg.settings.session_timezone

    @lru_cache(maxsize=None)
    def ts_of(d: date) -> int:
        return session_close_ts_ms(d, tz)

    ordered: list[tuple[date, int, int, dict[str, Any]]] = []
    tables: list[pl.DataFrame] = []
    summaries: list[ScenarioSummary] = []
    metrics: dict[str, pl.DataFrame] = {}
    for si, sc in enumerate(cfg.scenarios):
        run = ScenarioRun(sc, si, history)
        evs = run.events(ts_of)
        ordered.extend((d, si, j, ev) for d, j, ev in evs)
        table = run.table(evs)
        tables.append(table)
        summaries.append(scenario_summary(run, table))
        metrics[sc.id] = run.trigger.select("date", "value", "metric", "kind")
    ordered.sort(key=lambda t: t[:3])
    table = (pl.concat(tables).sort("date", "scenario_order", "rule_order").drop("scenario_order", "rule_order"))
    return BacktestResult([t[3] for t in ordered], table, summaries, metrics)
