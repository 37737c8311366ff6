"""Crossing events: the JSON that goes on the ``events`` topic (schema: ratiowatch/schemas/event.v1.json).

``event_id`` is a digest of what the event is (scenario, rule, kind, event time), so the same
input always gives the same id: a replay, a backtest and a restarted worker agree on it, and
downstream consumers and the notifiers deduplicate by it.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from ratiowatch.model import Config, Rule, Scenario

from ratiowatch.model.metric import round12
from ratiowatch.model.spec import version_of
from ratiowatch.model.sessions import iso_utc

__all__ = ["SCHEMA_VERSION", "event_id", "build_event", "load_schema", "canonical_order"]

SCHEMA_VERSION = 1


def event_id(scenario_id: str, rule: str, kind: str, ts_ms: int) -> str:
    key = f"v{SCHEMA_VERSION}|{scenario_id}|{rule}|{kind}|{ts_ms}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


_num = round12


def build_event(scenario: Scenario, rule: Rule, kind: str, ts_ms: int, metric: float, series_value: float,
                windows: dict[int, float | None], confirmations: list[dict[str, Any]] | None) -> dict[str, Any]:
    """One event. ``kind`` is "fired" (crossed the threshold) or "rearmed" (crossed back through
    the re-arm level); ``direction`` is the way the metric crossed."""
    if kind == "fired":
        direction = rule.direction
        threshold = rule.threshold
    else:
        direction = "down" if rule.direction == "up" else "up"
        threshold = rule.rearm
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id(scenario.id, rule.name, kind, ts_ms),
        "scenario": scenario.id,
        "title": scenario.title,
        "rule": rule.name,
        "kind": kind,
        "series": rule.series.name,
        "direction": direction,
        "at": iso_utc(ts_ms),
        "ts_ms": ts_ms,
        "value": _num(metric),
        "threshold": threshold,
        "lookback": rule.lookback,
        "series_value": _num(series_value),
        "description": rule.describe(),
        "windows": {str(w): _num(v) for w, v in windows.items()},
        "confirmations": confirmations if confirmations is not None else [],
        # Added within v1 (consumers ignore unknown fields): how the metric is made from the
        # series, and for a trigger how many confirmations it needs (null: none).
        "transform": rule.transform,
        "transform_sessions": rule.sessions,
        "require": scenario.require if rule is scenario.trigger else None,
        # Added within v1: the version of the scenario the event was evaluated under (its record
        # on the `scenarios` topic; `ratiowatch scenarios list` shows it).
        "scenario_version": scenario.version or version_of(scenario),
    }


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the events topic."""
    return json.loads(resources.files("ratiowatch.schemas").joinpath("event.v1.json").read_text())


def canonical_order(events: list[dict[str, Any]], config: Config) -> list[dict[str, Any]]:
    """Events in one order whatever path made them (stream partitions interleave): by event time,
    then scenario order in the config, then rule order (confirmations as listed, then the trigger,
    which is how the engine judges them)."""
    scen = {s.id: i for i, s in enumerate(config.scenarios)}
    rank = {s.id: {r.name: j for j, r in enumerate(s.confirmations + (s.trigger,))} for s in config.scenarios}
    return sorted(events, key=lambda e: (e["ts_ms"], scen.get(e["scenario"], len(scen)),
                                         rank.get(e["scenario"], {}).get(e["rule"], 0), e["kind"]))
