"""The batch backtest: the scenario semantics computed a second way, vectorized with polars.

The streaming engine (:mod:`ratiowatch.agents.engine`) steps tick by tick; this package computes the
same events over a whole daily history at once, with no loop over days:

- Series: the legs' rows are pivoted on the union of their dates (a series advances only on a date
  one of its own legs has a row), each leg is forward-filled (the as-of rule: legs on different
  calendars are never inner-joined), and rows before every leg has a value are dropped. What is
  left is one session close per row.
- Metric: by the rule's transform over those rows (:func:`.frames.metric_frame`): a shift (lookback),
  a window sum (ma), a rolling max / min of the rows before (high, low), run lengths of the sign of
  the change (streak), or the value itself.
- Hysteresis: see :func:`.frames.zone`; with ``require``, :func:`.frames.zone_required` on every
  date any series of the scenario advanced, with the confirmations met as of that date.
- Summaries: :mod:`.summary`; report and charts: :mod:`.report`.

Events are built with the streaming path's ``build_event``, so ``--json`` (with
:meth:`BacktestResult.as_published`: ``origin: replay``) prints exactly the records a replay
puts on the ``events`` topic, in ``agents.events.canonical_order``: date, then scenario
(config order), then rule (confirmations in config order, then the trigger).

The modules: :mod:`.frames` (the polars columns), :mod:`.scenario_run` (one scenario),
:mod:`.run` (:func:`run_backtest`), :mod:`.results`, :mod:`.summary`, :mod:`.report`.
"""

from .frames import metric_frame, rule_frame, series_frame
from .results import FORWARD_HORIZONS, BacktestResult, Episode, RuleSummary, ScenarioSummary
from .run import run_backtest

__all__ = [
    "FORWARD_HORIZONS", "Episode", "RuleSummary", "ScenarioSummary", "BacktestResult",
    "series_frame", "metric_frame", "rule_frame", "run_backtest",
]
