"""The batch backtest: the scenario semantics computed a second way, vectorized with polars.

The streaming engine (:mod:`ratiowatch.agents.engine`) steps tick by tick; this module computes the
same events over a whole daily history at once, with no loop over days:

- Series: the legs' rows are pivoted on the union of their dates (a series advances only on a date
  one of its own legs has a row), each leg is forward-filled (the as-of rule: legs on different
  calendars are never inner-joined), and rows before every leg has a value are dropped. What is
  left is one session close per row.
- Metric: a shift over those rows (lookback sessions), or the value itself for a level rule.
- Hysteresis: see :func:`_zone`.

Events are built with the streaming path's ``build_event``, so ``--json`` prints exactly the
records of the ``events`` topic, in ``agents.events.canonical_order``: date, then scenario
(config order), then rule (confirmations in config order, then the trigger).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

import polars as pl

from ratiowatch.agents.events import build_event
from ratiowatch.agents.sessions import session_close_ts_ms
from ratiowatch.charts import metric_chart_png
from ratiowatch.config import Config, Rule, Scenario, SeriesSpec

__all__ = [
    "FORWARD_HORIZONS", "Episode", "ScenarioSummary", "BacktestResult",
    "series_frame", "rule_frame", "run_backtest", "scenario_chart_png", "format_report",
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


@dataclass(slots=True)
class BacktestResult:
    events: list[dict[str, Any]]              # the events-topic records, in canonical_order
    table: pl.DataFrame                       # one row per event, with forward returns
    summaries: list[ScenarioSummary]
    metrics: dict[str, pl.DataFrame] = field(repr=False)  # scenario id -> trigger frame (for charts)


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


def rule_frame(series: pl.DataFrame, rule: Rule) -> pl.DataFrame:
    """``date, value, metric, zone, kind``: the rows where the rule's metric is defined; ``kind`` is
    "fired", "rearmed" or null."""
    v = pl.col("value")
    metric = v if rule.lookback is None else _change(rule.series, v, v.shift(rule.lookback))
    z = pl.col("zone")
    return (series.with_columns(metric.alias("metric"))
            .filter(pl.col("metric").is_not_null())
            .with_columns(_zone(rule).alias("zone"))
            .with_columns(pl.when(z > z.shift(1)).then(pl.lit("fired"))
                          .when(z < z.shift(1)).then(pl.lit("rearmed")).alias("kind")))


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
        crossings = self.trigger.filter(pl.col("kind").is_not_null()).join(windows, on="date", how="left")
        # Each confirmation as of the trigger's date: its metric at the last date its own series advanced.
        for i, c in enumerate(sc.confirmations):
            conf = self.rules[c.name].select("date", pl.col("metric").alias(f"c{i}"))
            crossings = crossings.join_asof(conf, on="date", strategy="backward")
        n = len(sc.confirmations)
        for row in crossings.iter_rows(named=True):
            confs = [{"label": c.name, "series": c.series.name, "met": _met(c, row[f"c{i}"]),
                      "value": _round12(row[f"c{i}"]), "threshold": c.threshold, "direction": c.direction,
                      "lookback": c.lookback} for i, c in enumerate(sc.confirmations)]
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

    def summary(self) -> ScenarioSummary:
        sc = self.sc
        trig = self.trigger.with_row_index("i")
        fwd = self.forward()
        crossings = trig.filter(pl.col("kind").is_not_null())
        episodes: list[Episode] = []
        opened: tuple[date, int] | None = None
        for row in crossings.iter_rows(named=True):  # crossings only, not days
            if row["kind"] == "fired":
                opened = (row["date"], row["i"])
            elif opened is not None:
                episodes.append(Episode(opened[0], row["date"], row["i"] - opened[1]))
                opened = None
        if opened is not None:
            episodes.append(Episode(opened[0], None, trig.height - 1 - opened[1]))
        closed = [e.sessions for e in episodes if e.rearmed is not None]
        fired = crossings.filter(pl.col("kind") == "fired").select("date").join(fwd, on="date", how="left")
        med: dict[int, float | None] = {}
        n: dict[int, int] = {}
        base: dict[int, float | None] = {}
        for h in FORWARD_HORIZONS:
            col = fired[f"fwd_{h}"].drop_nulls()
            n[h] = col.len()
            med[h] = col.median() if col.len() else None
            allcol = fwd[f"fwd_{h}"].drop_nulls()
            base[h] = allcol.median() if allcol.len() else None
        last = trig.tail(1).to_dicts()
        return ScenarioSummary(
            scenario=sc.id, title=sc.title,
            fired=crossings.filter(pl.col("kind") == "fired").height,
            rearmed=crossings.filter(pl.col("kind") == "rearmed").height,
            episodes=tuple(episodes),
            median_episode_sessions=statistics.median(closed) if closed else None,
            forward_median=med, forward_n=n, baseline_median=base,
            first_date=trig["date"][0] if trig.height else None,
            last_date=last[0]["date"] if last else None,
            last_metric=last[0]["metric"] if last else None,
            armed=(last[0]["zone"] == 0) if last else None,
        )


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
        run = _ScenarioRun(sc, si, history)
        evs = run.events(ts_of)
        ordered.extend((d, si, j, ev) for d, j, ev in evs)
        tables.append(run.table(evs))
        summaries.append(run.summary())
        metrics[sc.id] = run.trigger.select("date", "value", "metric", "kind")
    ordered.sort(key=lambda t: t[:3])
    table = (pl.concat(tables).sort("date", "scenario_order", "rule_order").drop("scenario_order", "rule_order"))
    return BacktestResult([t[3] for t in ordered], table, summaries, metrics)


def scenario_chart_png(result: BacktestResult, sc: Scenario) -> bytes:
    """The trigger metric over the whole history with its threshold, re-arm line and crossings."""
    trig = sc.trigger
    frame = result.metrics[sc.id]
    crossings = [(d, k) for d, k in frame.filter(pl.col("kind").is_not_null()).select("date", "kind").iter_rows()]
    percent = trig.lookback is not None and trig.series.kind != "spread"
    what = trig.series.name if trig.lookback is None else f"{trig.series.name} {trig.lookback}-session change"
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
