"""What each scenario's trigger did over the history: the track record an alert carries. Pure.

Read from a backtest's event table (``ratiowatch.backtest.run_backtest``): how many times the
trigger fired, when it last did, and what followed each firing: the median forward change and
the share of positive ones at 21, 63, 126 and 252 sessions, for the trigger series and for each
of its legs. Computed once per set of scenarios (at start, and when they change), never per tick;
notifications (``NotificationService(track_records=...)``) and the status card
(``ScenarioEngine.track_record``) show it.
"""

from __future__ import annotations

import statistics
from typing import Any

import polars as pl

from ratiowatch.backtest import FORWARD_HORIZONS, BacktestResult
from ratiowatch.model import Config

__all__ = ["track_records", "track_records_from_history"]


def _outcome(name: str, spread: bool, values: list[list[float | None]]) -> dict[str, Any]:
    """``values[i]`` are the forward changes at horizon ``FORWARD_HORIZONS[i]`` (None: past the data)."""
    by: dict[str, Any] = {}
    for h, col in zip(FORWARD_HORIZONS, values):
        xs = [x for x in col if x is not None]
        by[str(h)] = {"n": len(xs), "median": statistics.median(xs) if xs else None,
                      "positive": sum(1 for x in xs if x > 0) / len(xs) if xs else None}
    return {"name": name, "spread": spread, "by_horizon": by}


def track_records(cfg: Config, result: BacktestResult) -> dict[str, dict[str, Any]]:
    """Scenario id -> ``{"fired", "last_fired", "first", "last", "outcomes": [series, legs...]}``
    (dates ISO; ``first``/``last`` bound the history the trigger was evaluated on)."""
    table = result.table
    out: dict[str, dict[str, Any]] = {}
    for sc, summary in zip(cfg.scenarios, result.summaries):
        spec = sc.trigger.series
        fired = (table.filter((pl.col("scenario") == sc.id) & (pl.col("rule") == "trigger")
                              & (pl.col("kind") == "fired")).sort("date"))
        spread = spec.kind == "spread"
        outcomes = [_outcome(spec.name, spread, [fired[f"fwd_{h}"].to_list() for h in FORWARD_HORIZONS])]
        if len(spec.legs) > 1:  # a level's one leg is the series itself
            for k, leg in enumerate(spec.legs, 1):
                outcomes.append(_outcome(leg, spread, [fired[f"leg{k}_fwd_{h}"].to_list() for h in FORWARD_HORIZONS]))
        out[sc.id] = {
            "fired": fired.height,
            "last_fired": fired["date"][-1].isoformat() if fired.height else None,
            "first": summary.first_date.isoformat() if summary.first_date else None,
            "last": summary.last_date.isoformat() if summary.last_date else None,
            "horizons": list(FORWARD_HORIZONS),
            "outcomes": outcomes,
        }
    return out


def track_records_from_history(cfg: Config, history_dir: str) -> dict[str, dict[str, Any]]:
    """:func:`track_records` of a backtest over a folder of ``SYMBOL.csv`` daily closes."""
    from ratiowatch.backtest import run_backtest
    from ratiowatch.streams.history import load_history

    history = load_history(history_dir, cfg.symbols, cfg.settings.signed_symbols)
    return track_records(cfg, run_backtest(cfg, history))
