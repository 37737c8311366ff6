"""One scenario over the history (:class:`ScenarioRun`): its series and rule frames, its events
(built with the streaming path's ``build_event``) and its table of events with forward changes."""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl

from ratiowatch.agents.events import build_event
from ratiowatch.model import Rule, Scenario, SeriesSpec

from .frames import (change_expr, forward_frame, leg_spec, met_expr, rule_frame, series_frame, with_crossings,
                     zone_required)
from .results import FORWARD_HORIZONS

__all__ = ["ScenarioRun"]


def _met(rule: Rule, m: float | None) -> bool | None:
    if m is None:
        return None
    return m >= rule.threshold if rule.direction == "up" else m <= rule.threshold


def _round12(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.12g}")


class ScenarioRun:
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
        met = pl.sum_horizontal(*(met_expr(c, f"_c{i}") for i, c in enumerate(sc.confirmations)))
        frame = (frame.filter(pl.col("metric").is_not_null()).with_columns(met.alias("met"))
                 .drop(*(f"_c{i}" for i in range(len(sc.confirmations)))))
        return with_crossings(frame, zone_required(sc.trigger, sc.require))

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
            "date", *(change_expr(trig.series, v, v.shift(w)).alias(f"w{w}") for w in sc.windows))
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
        return forward_frame(spec, self.series[spec.name], "value", "fwd_")

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
                 .join_asof(forward_frame(leg_spec(spec, leg), closes, "close", f"leg{k}_fwd_"), on="date",
                            strategy="backward"))
        return t
