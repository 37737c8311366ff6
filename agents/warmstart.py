"""Warm start: seed every scenario's windows and armed flags from daily history before live ticks,
so a 63-session trigger is live from the first tick instead of three months later."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl

from ratiowatch.model import Config
from ratiowatch.streams.history import daily_ticks, load_history

from .engine import ScenarioState, ShardEngine

__all__ = ["seed_states"]


def seed_states(config: Config, folder: str | Path, before: date | None = None,
                history: pl.DataFrame | None = None) -> tuple[dict[str, ScenarioState], dict[str, float], date | None]:
    """Run the pure engine over the history (events are history, not alerts: they are dropped),
    up to the day ``before`` (excluded) if given. ``history``: the folder's closes when the caller
    has loaded them already. Returns (state per scenario id, last close per symbol, last date)."""
    if history is None:
        history = load_history(folder, config.symbols, config.settings.signed_symbols)
    engine = ShardEngine(config.scenarios, config.settings)
    states: dict[str, ScenarioState] = {}
    last: dict[str, float] = {}
    last_date = None
    end = before - timedelta(days=1) if before is not None else None
    for d, ticks in daily_ticks(history, config.settings.session_timezone, end=end):
        engine.apply(states, ticks[0].ts_ms, ticks)
        for t in ticks:
            last[t.symbol] = t.price
        last_date = d
    return states, last, last_date
