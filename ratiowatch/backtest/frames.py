"""The backtest's frames, computed with polars expressions over whole columns: a series' session
closes (:func:`series_frame`), a rule's metric (:func:`metric_frame`), its hysteresis zone and
crossings (:func:`rule_frame`), and forward changes (:func:`forward_frame`). The float operations
are those of the streaming path's maths (ratiowatch/model/metric.py) so both give the same bits,
but written independently, on purpose."""

from __future__ import annotations

import polars as pl

from ratiowatch.model import Rule, SeriesSpec

from .results import FORWARD_HORIZONS

__all__ = ["change_expr", "series_frame", "metric_frame", "rule_frame", "zone", "zone_required", "met_expr",
           "with_crossings", "forward_frame", "leg_spec"]

EMPTY_SERIES = {"date": pl.Date, "value": pl.Float64}


def change_expr(spec: SeriesSpec, cur: pl.Expr, past: pl.Expr) -> pl.Expr:
    # A difference for spreads (they cross zero), relative otherwise: the float operations of
    # SeriesSpec.change, so both paths produce the same bits.
    # A relative change from a past value <= 0 is undefined (null), as in SeriesSpec.change.
    return cur - past if spec.kind == "spread" else pl.when(past > 0).then(cur / past - 1.0)


def series_frame(history: pl.DataFrame, spec: SeriesSpec) -> pl.DataFrame:
    """``date, value``: one row per session of the series (dates on which one of its legs has a row,
    from the first date every leg has had one), legs taken as of that date."""
    legs = history.filter(pl.col("symbol").is_in(list(spec.legs)))
    if legs.height == 0 or legs["symbol"].n_unique() < len(spec.legs):
        return pl.DataFrame(schema=EMPTY_SERIES)
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


def zone(rule: Rule) -> pl.Expr:
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
        metric = change_expr(spec, v, v.shift(n))
    elif t == "ma":  # the mean of the last n values, today's included
        metric = change_expr(spec, v, _window_sum(v, n) / _column_of(n))
    elif t == "high":  # the n closes before today
        metric = change_expr(spec, v, v.shift(1).rolling_max(n, min_samples=n))
    elif t == "low":
        metric = change_expr(spec, v, v.shift(1).rolling_min(n, min_samples=n))
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


def with_crossings(frame: pl.DataFrame, state: pl.Expr) -> pl.DataFrame:
    """``frame`` with ``zone`` (the rule's state, :func:`zone`) and ``kind``: "fired" where the
    zone rises, "rearmed" where it falls, else null."""
    z = pl.col("zone")
    return (frame.with_columns(state.alias("zone"))
            .with_columns(pl.when(z > z.shift(1)).then(pl.lit("fired"))
                          .when(z < z.shift(1)).then(pl.lit("rearmed")).alias("kind")))


def rule_frame(series: pl.DataFrame, rule: Rule) -> pl.DataFrame:
    """``date, value, metric, session, zone, kind``: the rows where the rule's metric is defined;
    ``session`` counts the series' sessions; ``kind`` is "fired", "rearmed" or null."""
    return with_crossings(metric_frame(series, rule).with_row_index("session")
                          .filter(pl.col("metric").is_not_null()), zone(rule))


def zone_required(rule: Rule, k: int) -> pl.Expr:
    """:func:`zone` for a trigger that also needs ``met >= k``: past the threshold without enough
    confirmations decides nothing (an armed trigger stays armed, waiting); re-arming is as before."""
    m, x, r, ok = pl.col("metric"), rule.threshold, rule.rearm, pl.col("met") >= k
    if rule.direction == "up":
        decisive = pl.when((m >= x) & ok).then(1).when(m < r).then(0)
        initial = (m >= x).cast(pl.Int32)
    else:
        decisive = pl.when((m <= x) & ok).then(1).when(m > r).then(0)
        initial = (m <= x).cast(pl.Int32)
    return pl.when(pl.int_range(pl.len()) == 0).then(initial).otherwise(decisive).forward_fill()


def met_expr(rule: Rule, col: str) -> pl.Expr:
    """1 where the confirmation is met, 0 where not or not yet defined."""
    c = pl.col(col)
    met = c >= rule.threshold if rule.direction == "up" else c <= rule.threshold
    return met.fill_null(False).cast(pl.Int32)


def forward_frame(spec: SeriesSpec, frame: pl.DataFrame, col: str, prefix: str) -> pl.DataFrame:
    """``date, {prefix}{h}...``: the change from each row to the row ``h`` rows later (null past the data)."""
    c = pl.col(col)
    return frame.select("date", *(change_expr(spec, c.shift(-h), c).alias(f"{prefix}{h}") for h in FORWARD_HORIZONS))


def leg_spec(spec: SeriesSpec, leg: str) -> SeriesSpec:
    """How a leg's own forward change is measured: legs of a spread (yields) by difference, in the
    spread's units; legs of a ratio or a level relatively."""
    return SeriesSpec(spec.kind if spec.kind == "spread" else "level", (leg,))
