"""The batch backtest: the scenario semantics computed a second way, vectorized with polars.

The streaming engine (:mod:`ratiowatch.agents.engine`) steps tick by tick; this module computes the
same events over a whole daily history at once, with no loop over days:

- Series: the legs' rows are pivoted on the union of their dates (a series advances only on a date
  one of its own legs has a row), each leg is forward-filled (the as-of rule: legs on different
  calendars are never inner-joined), and rows before every leg has a value are dropped. What is
  left is one session close per row.
- Metric: by the rule's transform over those rows (:func:`metric_frame`): a shift (lookback),
  a window sum (ma), a rolling max / min of the rows before (high, low), run lengths of the sign of
  the change (streak), or the value itself.
- Hysteresis: see :func:`_zone`; with ``require``, :func:`_zone_required` on every date any series
  of the scenario advanced, with the confirmations met as of that date.
- Summaries: :mod:`ratiowatch.backtest_summary`; report and charts: :mod:`ratiowatch.backtest_report`.

Events are built with the streaming path's ``build_event``, so ``--json`` (with
:meth:`BacktestResult.as_published`: ``origin: replay``) prints exactly the records a replay
puts on the ``events`` topic, in ``agents.events.canonical_order``: date, then scenario
(config order), then rule (confirmations in config order, then the trigger).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

import polars as pl

from ratiowatch.agents.events import build_event
from ratiowatch.model.sessions import session_close_ts_ms
from ratiowatch.model import Config, Rule, Scenario, SeriesSpec
from ratiowatch.streams.origin import REPLAY

__all__ = [
    "FORWARD_HORIZONS", "Episode", "RuleSummary", "ScenarioSummary", "BacktestResult",
    "series_frame", "metric_frame", "rule_frame", "run_backtest",
]

# Sessions after an event at which traders judge it: ~1 month, 3 months, 6 months, 1 year.
FORWARD_HORIZONS = (21, 63, 126, 252)

_EMPTY_SERIES = {"date": pl.Date, "value": pl.Float64}


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


def _change(spec: SeriesSpec, cur: pl.Expr, past: pl.Expr) -> pl.Expr:
    # A difference for spreads (they cross zero), relative otherwise: the float operations of
    # SeriesSpec.change, so both paths produce the same bits.
    # A relative change from a past value <= 0 is undefined (null), as in SeriesSpec.change.
    return cur - past if spec.kind == "spread" else pl.when(past > 0).then(cur / past - 1.0)


def series_frame(history: pl.DataFrame, spec: SeriesSpec) -> pl.DataFrame:
    """``date, value``: one row per session of the series (dates on which one of its legs has a row,
    from the first date every leg has had one), legs taken as of that date."""
    legs = history.filter(pl.col("symbol").is_in(list(spec.legs)))
    if legs.height == 0 or legs["symbol"].n_unique() < len(spec.legs):
        return pl.DataFrame(schema=_EMPTY_SERIES)
    wide = (legs.pivot(on="symbol", index="date", values="close")
            .sort("date")
            .with_columns(pl.col(list(spec.legs)).forward_fill())
            .drop_nulls(list(spec.legs)))
    a = pl.col(spec.legs[0])
    if spec.kind == "ratio":
        value = pl.when(pl.col(spec.legs[1]) != 0).then(a / pl.col(spec.legs[1]))
    elif spec.kind == "spread":
        value = a - pl.col(spec.legs[1])
    else:
        value = a
    # A ratio over a zero leg is undefined: the series does not advance that day (as in the engine).
    return wide.select("date", value.alias("value")).drop_nulls("value")


def _zone(rule: Rule) -> pl.Expr:
    """The rule's state after each row: 1 disarmed (has fired), 0 armed.

    For ``above X, rearm R`` (R <= X): a metric >= X leaves the rule disarmed whatever it was (it
    fires if armed), a metric < R leaves it armed (it re-arms if not); in between nothing changes.
    So the state is the last decisive row, forward-filled. The first row only decides the initial
    arming: armed iff metric < X, which also covers R <= metric < X. ``below`` is the mirror image.
    """
    m, x, r = pl.col("metric"), rule.threshold, rule.rearm
    if rule.direction == "up":
        decisive = pl.when(m >= x).then(1).when(m < r).then(0)
        initial = (m >= x).cast(pl.Int32)
    else:
        decisive = pl.when(m <= x).then(1).when(m > r).then(0)
        initial = (m <= x).cast(pl.Int32)
    return pl.when(pl.int_range(pl.len()) == 0).then(initial).otherwise(decisive).forward_fill()


def _streak(series: pl.DataFrame) -> pl.DataFrame:
    """``series`` with ``metric``: the signed length of the run of up (or down) sessions ending at
    each row, 0 on a flat session, null on the first row (no earlier close). A run is a stretch of
    rows with the same sign of change, so the streak is the row's place in its run, signed."""
    v = pl.col("value")
    sign = pl.when(v > v.shift(1)).then(1).when(v < v.shift(1)).then(-1).otherwise(0)
    return (series.with_columns(sign.alias("_sign"))
            .with_columns(pl.col("_sign").rle_id().alias("_run"))
            .with_columns(pl.when(pl.int_range(pl.len()) > 0)
                          .then((pl.col("_sign") * (pl.int_range(pl.len()).over("_run") + 1)).cast(pl.Float64))
                          .alias("metric"))
            .drop("_sign", "_run"))


def metric_frame(series: pl.DataFrame, rule: Rule) -> pl.DataFrame:
    """``date, value, metric`` (null where the metric is not yet defined), by the rule's transform."""
    v, n, spec = pl.col("value"), rule.sessions, rule.series
    t = rule.transform
    if t == "streak":
        return _streak(series)
    if t == "value":
        metric = v
    elif t == "lookback":
        metric = _change(spec, v, v.shift(n))
    elif t == "ma":  # the mean of the last n values, today's included
        metric = _change(spec, v, _window_sum(v, n) / _column_of(n))
    elif t == "high":  # the n closes before today
        metric = _change(spec, v, v.shift(1).rolling_max(n, min_samples=n))
    elif t == "low":
        metric = _change(spec, v, v.shift(1).rolling_min(n, min_samples=n))
    else:
        raise ValueError(f"unknown transform {t!r}")
    return series.with_columns(metric.alias("metric"))


def _window_sum(v: pl.Expr, n: int) -> pl.Expr:
    """The sum of the last ``n`` values, added oldest first: the float operations of a plain sum
    over the window. (rolling_sum adds and subtracts as it slides, which lands a few ulps away,
    and a spread at exactly its average must compare the same on every path.)"""
    return pl.fold(pl.lit(0.0), lambda acc, x: acc + x, [v.shift(k) for k in range(n - 1, -1, -1)])


def _column_of(n: int) -> pl.Expr:
    """``n`` as a column, to divide by: polars divides by a scalar as a multiplication by its
    reciprocal, which can land an ulp away from a true division."""
    return (pl.int_range(pl.len()) * 0 + n).cast(pl.Float64)


def _crossings(frame: pl.DataFrame, zone: pl.Expr) -> pl.DataFrame:
    z = pl.col("zone")
    return (frame.with_columns(zone.alias("zone"))
            .with_columns(pl.when(z > z.shift(1)).then(pl.lit("fired"))
                          .when(z < z.shift(1)).then(pl.lit("rearmed")).alias("kind")))


def rule_frame(series: pl.DataFrame, rule: Rule) -> pl.DataFrame:
    """``date, value, metric, session, zone, kind``: the rows where the rule's metric is defined;
    ``session`` counts the series' sessions; ``kind`` is "fired", "rearmed" or null."""
    return _crossings(metric_frame(series, rule).with_row_index("session")
                      .filter(pl.col("metric").is_not_null()), _zone(rule))


def _zone_required(rule: Rule, k: int) -> pl.Expr:
    """:func:`_zone` for a trigger that also needs ``met >= k``: past the threshold without enough
    confirmations decides nothing (an armed trigger stays armed, waiting); re-arming is as before."""
    m, x, r, ok = pl.col("metric"), rule.threshold, rule.rearm, pl.col("met") >= k
    if rule.direction == "up":
        decisive = pl.when((m >= x) & ok).then(1).when(m < r).then(0)
        initial = (m >= x).cast(pl.Int32)
    else:
        decisive = pl.when((m <= x) & ok).then(1).when(m > r).then(0)
        initial = (m <= x).cast(pl.Int32)
    return pl.when(pl.int_range(pl.len()) == 0).then(initial).otherwise(decisive).forward_fill()


def _met_expr(rule: Rule, col: str) -> pl.Expr:
    """1 where the confirmation is met, 0 where not or not yet defined."""
    c = pl.col(col)
    met = c >= rule.threshold if rule.direction == "up" else c <= rule.threshold
    return met.fill_null(False).cast(pl.Int32)


def _met(rule: Rule, m: float | None) -> bool | None:
    if m is None:
        return None
    return m >= rule.threshold if rule.direction == "up" else m <= rule.threshold


def _round12(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.12g}")


def _forward(spec: SeriesSpec, frame: pl.DataFrame, col: str, prefix: str) -> pl.DataFrame:
    """``date, {prefix}{h}...``: the change from each row to the row ``h`` rows later (null past the data)."""
    c = pl.col(col)
    return frame.select("date", *(_change(spec, c.shift(-h), c).alias(f"{prefix}{h}") for h in FORWARD_HORIZONS))


def _leg_spec(spec: SeriesSpec, leg: str) -> SeriesSpec:
    """How a leg's own forward change is measured: legs of a spread (yields) by difference, in the
    spread's units; legs of a ratio or a level relatively."""
    return SeriesSpec(spec.kind if spec.kind == "spread" else "level", (leg,))


class _ScenarioRun:
    """One scenario over the history: its series frames and rule frames."""

    def __init__(self, sc: Scenario, order: int, history: pl.DataFrame) -> None:
        self.sc, self.order, self.history = sc, order, history
        specs: dict[str, SeriesSpec] = {}
        for r in sc.rules:
            specs.setdefault(r.series.name, r.series)
        self.series = {name: series_frame(history, spec) for name, spec in specs.items()}
        self.rules = {r.name: rule_frame(self.series[r.series.name], r) for r in sc.rules}
        if sc.require is not None:
            self.rules["trigger"] = self._required_trigger()

    def _required_trigger(self) -> pl.DataFrame:
        """The trigger judged at every date any series of the scenario advanced, with its metric
        and each confirmation's as of that date, and the count met (see README, ``require``)."""
        sc = self.sc
        dates = pl.concat([f.select("date") for f in self.series.values()]).unique().sort("date")
        trig = rule_frame(self.series[sc.trigger.series.name], sc.trigger).select("date", "value", "metric", "session")
        frame = dates.join_asof(trig, on="date", strategy="backward")
        for i, c in enumerate(sc.confirmations):
            conf = self.rules[c.name].select("date", pl.col("metric").alias(f"_c{i}"))
            frame = frame.join_asof(conf, on="date", strategy="backward")
        met = pl.sum_horizontal(*(_met_expr(c, f"_c{i}") for i, c in enumerate(sc.confirmations)))
        frame = (frame.filter(pl.col("metric").is_not_null()).with_columns(met.alias("met"))
                 .drop(*(f"_c{i}" for i in range(len(sc.confirmations)))))
        return _crossings(frame, _zone_required(sc.trigger, sc.require))

    @property
    def trigger(self) -> pl.DataFrame:
        return self.rules["trigger"]

    def events(self, ts_of) -> list[tuple[date, int, dict[str, Any]]]:
        """``(date, rule order, event)`` for every transition of every rule."""
        sc, trig = self.sc, self.sc.trigger
        out: list[tuple[date, int, dict[str, Any]]] = []
        for j, c in enumerate(sc.confirmations):
            for row in self.rules[c.name].filter(pl.col("kind").is_not_null()).iter_rows(named=True):
                out.append((row["date"], j, build_event(sc, c, row["kind"], ts_of(row["date"]), row["metric"],
                                                        row["value"], {}, None)))
        v = pl.col("value")
        windows = self.series[trig.series.name].select(
            "date", *(_change(trig.series, v, v.shift(w)).alias(f"w{w}") for w in sc.windows))
        crossings = self.trigger.filter(pl.col("kind").is_not_null()).join_asof(windows, on="date", strategy="backward")
        # Each confirmation as of the trigger's date: its metric at the last date its own series advanced.
        for i, c in enumerate(sc.confirmations):
            conf = self.rules[c.name].select("date", pl.col("metric").alias(f"c{i}"))
            crossings = crossings.join_asof(conf, on="date", strategy="backward")
        n = len(sc.confirmations)
        for row in crossings.iter_rows(named=True):
            confs = [{"label": c.name, "series": c.series.name, "met": _met(c, row[f"c{i}"]),
                      "value": _round12(row[f"c{i}"]), "threshold": c.threshold, "direction": c.direction,
                      "lookback": c.lookback, "transform": c.transform, "transform_sessions": c.sessions}
                     for i, c in enumerate(sc.confirmations)]
            out.append((row["date"], n, build_event(sc, trig, row["kind"], ts_of(row["date"]), row["metric"],
                                                    row["value"], {w: row[f"w{w}"] for w in sc.windows}, confs)))
        return out

    def forward(self) -> pl.DataFrame:
        """Forward change of the trigger series at each of its sessions."""
        spec = self.sc.trigger.series
        return _forward(spec, self.series[spec.name], "value", "fwd_")

    def table(self, evs: list[tuple[date, int, dict[str, Any]]]) -> pl.DataFrame:
        """One row per event with the forward change of the trigger series and of each of its legs."""
        spec = self.sc.trigger.series
        t = pl.DataFrame({
            "date": [d for d, _, _ in evs],
            "scenario": [e["scenario"] for _, _, e in evs],
            "rule": [e["rule"] for _, _, e in evs],
            "kind": [e["kind"] for _, _, e in evs],
            "series": [e["series"] for _, _, e in evs],
            "value": [e["value"] for _, _, e in evs],
            "threshold": [e["threshold"] for _, _, e in evs],
            "series_value": [e["series_value"] for _, _, e in evs],
            "confirmations_met": [sum(1 for c in e["confirmations"] if c["met"]) if e["rule"] == "trigger" else None
                                  for _, _, e in evs],
            "confirmations": [len(e["confirmations"]) if e["rule"] == "trigger" else None for _, _, e in evs],
            "scenario_order": [self.order] * len(evs),
            "rule_order": [j for _, j, _ in evs],
        }, schema={"date": pl.Date, "scenario": pl.Utf8, "rule": pl.Utf8, "kind": pl.Utf8, "series": pl.Utf8,
                   "value": pl.Float64, "threshold": pl.Float64, "series_value": pl.Float64,
                   "confirmations_met": pl.Int64, "confirmations": pl.Int64, "scenario_order": pl.Int64,
                   "rule_order": pl.Int64}).sort("date", "rule_order")
        # As of: a confirmation can cross on a date the trigger series did not advance.
        t = t.join_asof(self.forward(), on="date", strategy="backward")
        for k in (1, 2):
            leg = spec.legs[k - 1] if k <= len(spec.legs) else None
            if leg is None:
                t = t.with_columns(pl.lit(None, pl.Utf8).alias(f"leg{k}"),
                                   *(pl.lit(None, pl.Float64).alias(f"leg{k}_fwd_{h}") for h in FORWARD_HORIZONS))
                continue
            closes = self.history.filter(pl.col("symbol") == leg).select("date", "close")
            t = (t.with_columns(pl.lit(leg).alias(f"leg{k}"))
                 .join_asof(_forward(_leg_spec(spec, leg), closes, "close", f"leg{k}_fwd_"), on="date",
                            strategy="backward"))
        return t


def run_backtest(cfg: Config, history: pl.DataFrame) -> BacktestResult:
    """Every event of every scenario in ``cfg`` over ``history`` (long frame ``symbol, date, close``)."""
    from ratiowatch.backtest_summary import scenario_summary  # it reads this module's frames

    tz = cfg.settings.session_timezone

    @lru_cache(maxsize=None)
    def ts_of(d: date) -> int:
        return session_close_ts_ms(d, tz)

    ordered: list[tuple[date, int, int, dict[str, Any]]] = []
    tables: list[pl.DataFrame] = []
    summaries: list[ScenarioSummary] = []
    metrics: dict[str, pl.DataFrame] = {}
    for si, sc in enumerate(cfg.scenarios):
        run = _ScenarioRun(sc, si, history)
        evs = run.events(ts_of)
        ordered.extend((d, si, j, ev) for d, j, ev in evs)
        table = run.table(evs)
        tables.append(table)
        summaries.append(scenario_summary(run, table))
        metrics[sc.id] = run.trigger.select("date", "value", "metric", "kind")
    ordered.sort(key=lambda t: t[:3])
    table = (pl.concat(tables).sort("date", "scenario_order", "rule_order").drop("scenario_order", "rule_order"))
    return BacktestResult([t[3] for t in ordered], table, summaries, metrics)
