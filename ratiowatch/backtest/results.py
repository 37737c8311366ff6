"""What a backtest returns: the events, the table of events with forward returns, and the
summaries per scenario and per rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from ratiowatch.streams.origin import REPLAY

__all__ = ["FORWARD_HORIZONS", "Episode", "RuleSummary", "ScenarioSummary", "BacktestResult"]

# Sessions after an event at which traders judge it: ~1 month, 3 months, 6 months, 1 year.
FORWARD_HORIZONS = (21, 63, 126, 252)


@dataclass(frozen=True, slots=True)
class Episode:
    """From a trigger firing to its re-arming; ``rearmed`` None means still open at the end of the data."""

    fired: date
    rearmed: date | None
    sessions: int  # trigger-series sessions from fired to rearmed (or to the last session, if open)


@dataclass(frozen=True, slots=True)
class RuleSummary:
    """One rule (the trigger or a confirmation) over the history."""

    rule: str
    description: str
    transform: str
    sessions: int | None
    fired: int
    rearmed: int
    episodes: tuple[Episode, ...]
    median_episode_sessions: float | None
    forward_median: dict[int, float | None]  # horizon -> median forward change of the rule's series after a firing
    forward_n: dict[int, int]
    baseline_median: dict[int, float | None]


@dataclass(frozen=True, slots=True)
class ScenarioSummary:
    scenario: str
    title: str
    fired: int
    rearmed: int
    episodes: tuple[Episode, ...]
    median_episode_sessions: float | None   # closed episodes only
    forward_median: dict[int, float | None]  # horizon -> median forward change of the series after a firing
    forward_n: dict[int, int]                # horizon -> firings with that much future in the data
    baseline_median: dict[int, float | None]  # horizon -> median forward change over every session (for scale)
    first_date: date | None                  # first session with a trigger metric
    last_date: date | None
    last_metric: float | None
    armed: bool | None                       # trigger state after the last session
    rules: tuple[RuleSummary, ...] = ()      # the trigger, then each confirmation
    require: int | None = None
    # confirmations met at a firing -> {"n", "median": {horizon: ...}, "n_by_horizon": {...}}
    forward_by_met: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class BacktestResult:
    events: list[dict[str, Any]]              # the events-topic records, in canonical_order
    table: pl.DataFrame                       # one row per event, with forward returns
    summaries: list[ScenarioSummary]
    metrics: dict[str, pl.DataFrame] = field(repr=False)  # scenario id -> trigger frame (for charts)

    def as_published(self, origin: str = REPLAY) -> list[dict[str, Any]]:
        """The events as an engine running for ``origin`` puts them on the topic: it adds where
        its ticks came from (streams/origin.py), which evaluating them does not know."""
        return [{**e, "origin": origin} for e in self.events]
