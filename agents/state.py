"""A scenario's resumable state and its stored forms. Pure data; the engine (``agents.engine``)
mutates it, the faust pipeline stores it (``live_dict`` / ``history_dict``).

A series' stored closes are ``[sessions, values]``, plus the streaks beside them (``[sessions,
values, streaks]``) when the series has a ``streak`` rule: a streak can outlast the closes kept,
so it is carried rather than recomputed.
"""

from __future__ import annotations

from typing import Any, Mapping

from .sessions import SessionCloses

__all__ = ["ScenarioState", "STATE_VERSION", "SPLIT_VERSION"]

STATE_VERSION = 1
SPLIT_VERSION = 2

def _keep(keep: Any, name: str) -> int:
    """``keep`` is how many closes to keep: one number for every series, or one per series name
    (the engine's ``keep_by_series``; a series it does not name gets the largest)."""
    if isinstance(keep, Mapping):
        return keep.get(name) or max(keep.values(), default=1)
    return keep


def _closes(keep: Any, name: str, parts: list) -> SessionCloses:
    ss, vv = parts[0], parts[1]
    st = list(parts[2]) if len(parts) > 2 and parts[2] is not None else None
    return SessionCloses(_keep(keep, name), list(ss), list(vv), st)


def _parts(c: SessionCloses, upto: int | None = None) -> list:
    if c.streaks is None:
        return [c.sessions[:upto], c.values[:upto]]
    return [c.sessions[:upto], c.values[:upto], c.streaks[:upto]]


class ScenarioState:
    """Everything one scenario needs to resume: kept in the faust table, keyed by scenario id."""

    __slots__ = ("legs", "series", "armed", "metrics", "evaluated_ts", "last_event", "history_changed")

    def __init__(self) -> None:
        self.legs: dict[str, tuple[int, float]] = {}     # symbol -> (ts_ms, price) of its newest tick
        self.series: dict[str, SessionCloses] = {}       # series name -> closes
        self.armed: dict[str, bool | None] = {}          # rule name -> armed flag (None: never evaluated)
        self.metrics: dict[str, float | None] = {}       # rule name -> latest metric
        self.evaluated_ts: int = -1                      # event time of the last evaluation
        self.last_event: dict[str, Any] | None = None    # the trigger's latest event (for status)
        self.history_changed = True                      # past closes or last event differ from the stored copy

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "legs": {k: [t, p] for k, (t, p) in self.legs.items()},
            "series": {k: _parts(c) for k, c in self.series.items()},
            "armed": self.armed,
            "metrics": self.metrics,
            "evaluated_ts": self.evaluated_ts,
            "last_event": self.last_event,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], keep: Any) -> "ScenarioState":
        if d.get("v") != STATE_VERSION:
            raise ValueError(f"scenario state version {d.get('v')!r} is not {STATE_VERSION}")
        s = cls()
        s.legs = {k: (int(t), float(p)) for k, (t, p) in d["legs"].items()}
        s.series = {k: _closes(keep, k, parts) for k, parts in d["series"].items()}
        s.armed = dict(d["armed"])
        s.metrics = dict(d["metrics"])
        s.evaluated_ts = int(d["evaluated_ts"])
        s.last_event = d.get("last_event")
        return s

    # A stored state is split in two: the live part changes with every tick and stays small; the
    # history (past sessions' closes, the last event) changes only when a session rolls, a late
    # tick corrects a past close or an event fires, and is most of the bytes. Writing the history
    # only then keeps a state write small (the shipped IWM/SPY scenario: ~1 KB instead of ~40 KB).

    def live_dict(self) -> dict[str, Any]:
        return {
            "v": SPLIT_VERSION,
            "legs": self.legs,  # orjson writes the (ts, price) tuples as arrays
            "current": {k: [c.sessions[-1], c.values[-1]] for k, c in self.series.items() if c.sessions},
            "armed": self.armed,
            "metrics": self.metrics,
            "evaluated_ts": self.evaluated_ts,
        }

    def history_dict(self) -> dict[str, Any]:
        return {"v": SPLIT_VERSION, "series": {k: _parts(c, -1) for k, c in self.series.items()},
                "last_event": self.last_event}

    @classmethod
    def from_parts(cls, live: dict[str, Any], history: dict[str, Any] | None, keep: Any) -> "ScenarioState":
        """The state from its two stored parts (``history`` None: not written yet)."""
        for d in (live, history or {"v": SPLIT_VERSION}):
            if d.get("v") != SPLIT_VERSION:
                raise ValueError(f"scenario state version {d.get('v')!r} is not {SPLIT_VERSION}")
        s = cls()
        s.legs = {k: (int(t), float(p)) for k, (t, p) in live["legs"].items()}
        past = history["series"] if history else {}
        for k in set(past) | set(live["current"]):
            c = s.series[k] = _closes(keep, k, past.get(k, ([], [])))
            if k in live["current"]:
                # update() also mends a pair written at different moments (a worker killed
                # between the two writes): the live value wins for its session.
                session, value = live["current"][k]
                c.update(int(session), float(value))
        s.armed = dict(live["armed"])
        s.metrics = dict(live["metrics"])
        s.evaluated_ts = int(live["evaluated_ts"])
        s.last_event = history.get("last_event") if history else None
        s.history_changed = history is None
        return s
