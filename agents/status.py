"""Where a scenario stands now, as one dict: the status page, ``/status`` and the live stream. Pure.

The trigger is shown in its own terms (``agents.wording``): the distance to a 252-session high,
the sessions of a streak. ``track_record`` is what the rule did over the history, when the worker
has one (``ratiowatch.track_record``), else None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ratiowatch.model.sessions import iso_utc
from .wording import distance_text, fmt_metric, metric_name

if TYPE_CHECKING:
    from .engine import ScenarioEngine
    from .state import ScenarioState

__all__ = ["scenario_status"]


def scenario_status(engine: "ScenarioEngine", state: "ScenarioState", spark: int = 252) -> dict[str, Any]:
    sc, trig = engine.scenario, engine.scenario.trigger
    m = state.metrics.get("trigger")
    closes = state.series.get(trig.series.name)
    armed = state.armed.get("trigger")
    distance = None if m is None else trig.threshold - m
    progress = None
    # A share of the way only where the metric starts from zero: a change or a streak.
    if m is not None and trig.transform in ("lookback", "streak") and trig.threshold != 0:
        progress = max(0.0, min(1.0, m / trig.threshold))
    confs = engine.confirmations(state)
    for c, rule in zip(confs, sc.confirmations):
        c["reading"] = f"{metric_name(rule.series.name, rule.transform, rule.sessions)} " \
                       f"{fmt_metric(c['value'], rule.series.name, rule.transform)}"
    return {
        "type": "status",
        "scenario": sc.id,
        "title": sc.title,
        "description": sc.description,
        "at": iso_utc(state.evaluated_ts) if state.evaluated_ts >= 0 else None,
        "ts_ms": state.evaluated_ts if state.evaluated_ts >= 0 else None,
        "trigger": {
            "series": trig.series.name, "description": trig.describe(), "direction": trig.direction,
            "threshold": trig.threshold, "rearm": trig.rearm, "lookback": trig.lookback,
            "transform": trig.transform, "transform_sessions": trig.sessions,
            "value": closes.current if closes else None, "metric": m,
            "distance": distance, "progress": progress,
            "distance_text": distance_text(trig.series.name, trig.transform, trig.sessions, trig.direction,
                                           trig.threshold, trig.rearm, m, armed),
            "armed": armed, "state": {None: "warming up", True: "armed", False: "fired"}[armed],
        },
        "windows": {str(w): v for w, v in engine.windows(state).items()},
        "confirmations": confs,
        "require": sc.require,
        "met": engine.met_count(state),
        "last_event": state.last_event,
        "sparkline": list(closes.values[-spark:]) if closes else [],
        "track_record": engine.track_record,
    }
