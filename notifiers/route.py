"""Route: which events notify, as what, and to which channels. Pure.

Only the scenario's trigger notifies. ``fired`` is an alert; ``rearmed`` is a "resolved"
notification, sent only when the scenario asks for it (``notify_resolved: true``).
Confirmation events never notify on their own: their state rides inside the trigger event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ratiowatch.model import Config, Scenario

from .exceptions import InvalidEvent

__all__ = ["FIRING", "RESOLVED", "Notice", "Route", "RouteDecision", "UNKNOWN_SCENARIO", "decide_route", "route",
           "check_event"]

FIRING = "firing"
RESOLVED = "resolved"

# What routing and rendering read; the rest of schema v1 is optional to them.
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "event_id": str, "scenario": str, "rule": str, "kind": str, "series": str, "direction": str,
    "ts_ms": int, "value": (int, float), "threshold": (int, float),
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One event on its way to a channel, with what it means for a reader."""

    event: dict[str, Any]
    status: str  # FIRING | RESOLVED
    scenario: Scenario | None = None  # None when the event comes back from a DLQ for a removed scenario

    @property
    def event_id(self) -> str:
        return self.event["event_id"]

    @property
    def scenario_id(self) -> str:
        return self.event["scenario"]


@dataclass(frozen=True, slots=True)
class Route:
    notice: Notice
    channels: tuple[str, ...]


def check_event(event: Any) -> dict[str, Any]:
    """The event if it has what routing and rendering need; InvalidEvent naming the field otherwise."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"an event must be a JSON object, got {type(event).__name__}")
    for key, typ in _REQUIRED.items():
        if key not in event:
            raise InvalidEvent(f"event {event.get('event_id', '?')!r} has no {key!r}")
        v = event[key]
        if not isinstance(v, typ) or isinstance(v, bool):
            raise InvalidEvent(f"event {event.get('event_id', '?')!r}: {key!r} has the wrong type "
                               f"({type(v).__name__})")
    if event["kind"] not in ("fired", "rearmed"):
        raise InvalidEvent(f"event {event['event_id']!r}: kind {event['kind']!r} is not fired or rearmed")
    return event


UNKNOWN_SCENARIO = "a trigger of a scenario this config does not have"


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where an event goes (no channels: nowhere), and why."""

    route: Route | None
    reason: str


def decide_route(event: dict[str, Any], config: Config) -> RouteDecision:
    """The notice and its channels, or none and the reason: a confirmation, a re-arm without
    ``notify_resolved``, a scenario this config does not know, a scenario naming no channel.
    InvalidEvent when the event lacks what routing needs."""
    check_event(event)
    if event["rule"] != "trigger":
        return RouteDecision(None, "a confirmation: its state rides inside the trigger's event")
    try:
        scenario = config.scenario(event["scenario"])
    except KeyError:
        return RouteDecision(None, UNKNOWN_SCENARIO)
    if event["kind"] == "fired":
        status = FIRING
    elif scenario.notify_resolved:
        status = RESOLVED
    else:
        return RouteDecision(None, "a re-arm of a scenario without notify_resolved")
    if not scenario.notify:
        return RouteDecision(None, "the scenario names no channel")
    return RouteDecision(Route(Notice(event, status, scenario), scenario.notify),
                         "a resolution" if status == RESOLVED else "a firing")


def route(event: dict[str, Any], config: Config) -> Route | None:
    """The notice and its channels, or None when this event does not notify (see :func:`decide_route`)."""
    return decide_route(event, config).route
