"""The scenario engine: as-of legs -> series values -> session closes -> metrics -> crossings. Pure.

The faust agent, the replay, the warm start and the benchmark all drive this same code; the batch
backtest (polars) is a second, independent implementation of the same semantics.

Semantics (see README, "Scenario semantics"):
- A series' value uses each leg's latest price at or before the evaluation time (as of).
- Ticks sharing a timestamp are applied together, then the scenario is evaluated once.
- A series advances only when one of its own legs ticked in the group; its value becomes the
  latest of the current session (session = local date of the event time).
- The metric compares the current value with the close ``lookback`` sessions before.
- Rules step through :mod:`agents.rules` (hysteresis). Confirmations are updated before the
  trigger is judged, so a trigger event reports them as of the same moment.
- A tick older than the scenario's last evaluation (but within the allowed lateness, checked by
  the caller) corrects its leg if it is the leg's newest price, and the scenario is re-evaluated
  at its last evaluation time: a late leg can correct a value, it cannot rewrite the past.
"""

from __future__ import annotations

from typing import Any, Iterable

from ratiowatch.config import Rule, Scenario, SeriesSpec, Settings
from ratiowatch.streams.ticks import Tick

from . import rules as R
from .events import build_event
from .sessions import SessionCloses, iso_utc, session_of

__all__ = ["ScenarioState", "ScenarioEngine", "ShardEngine", "group_by_ts"]

STATE_VERSION = 1


class ScenarioState:
    """Everything one scenario needs to resume: kept in the faust table, keyed by scenario id."""

    __slots__ = ("legs", "series", "armed", "metrics", "evaluated_ts", "offset", "last_event")

    def __init__(self) -> None:
        self.legs: dict[str, tuple[int, float]] = {}     # symbol -> (ts_ms, price) of its newest tick
        self.series: dict[str, SessionCloses] = {}       # series name -> closes
        self.armed: dict[str, bool | None] = {}          # rule name -> armed flag (None: never evaluated)
        self.metrics: dict[str, float | None] = {}       # rule name -> latest metric
        self.evaluated_ts: int = -1                      # event time of the last evaluation
        self.offset: int = -1                            # last applied offset of the shard topic
        self.last_event: dict[str, Any] | None = None    # the latest event (for status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "legs": {k: [t, p] for k, (t, p) in self.legs.items()},
            "series": {k: [c.sessions, c.values] for k, c in self.series.items()},
            "armed": self.armed,
            "metrics": self.metrics,
            "evaluated_ts": self.evaluated_ts,
            "offset": self.offset,
            "last_event": self.last_event,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], keep: int) -> "ScenarioState":
        if d.get("v") != STATE_VERSION:
            raise ValueError(f"scenario state version {d.get('v')!r} is not {STATE_VERSION}")
        s = cls()
        s.legs = {k: (int(t), float(p)) for k, (t, p) in d["legs"].items()}
        s.series = {k: SessionCloses(keep, list(ss), list(vv)) for k, (ss, vv) in d["series"].items()}
        s.armed = dict(d["armed"])
        s.metrics = dict(d["metrics"])
        s.evaluated_ts = int(d["evaluated_ts"])
        s.offset = int(d["offset"])
        s.last_event = d.get("last_event")
        return s


class ScenarioEngine:
    """Evaluates one scenario; holds no state of its own (the state is passed in)."""

    def __init__(self, scenario: Scenario, settings: Settings) -> None:
        self.scenario = scenario
        self.tz = settings.session_timezone
        self.keep = scenario.max_lookback + 1
        # Distinct series, each computed once even when several rules use it.
        self._series: dict[str, SeriesSpec] = {}
        for r in scenario.rules:
            self._series.setdefault(r.series.name, r.series)
        self._series_by_symbol: dict[str, list[SeriesSpec]] = {}
        for spec in self._series.values():
            for leg in spec.legs:
                self._series_by_symbol.setdefault(leg, []).append(spec)
        self._rules_by_series: dict[str, list[Rule]] = {}
        for r in scenario.confirmations + (scenario.trigger,):  # confirmations first: see module doc
            self._rules_by_series.setdefault(r.series.name, []).append(r)
        self._session_cache = (0, -1, 0)  # (start_ms, end_ms, session) of the last session seen

    def new_state(self) -> ScenarioState:
        return ScenarioState()

    def _session(self, ts_ms: int) -> int:
        lo, hi, s = self._session_cache
        if lo <= ts_ms < hi:
            return s
        s = session_of(ts_ms, self.tz)
        # Cache the UTC-hour-aligned slice around ts that surely lies inside this session: a whole
        # day would be wrong across DST changes, an hour on either side is always safe.
        base = ts_ms - ts_ms % 3_600_000
        if session_of(base, self.tz) == s and session_of(base + 3_599_999, self.tz) == s:
            self._session_cache = (base, base + 3_600_000, s)
        return s

    def metric(self, state: ScenarioState, rule: Rule) -> float | None:
        closes = state.series.get(rule.series.name)
        if closes is None or closes.current is None:
            return None
        if rule.lookback is None:
            return closes.current
        past = closes.past(rule.lookback)
        return None if past is None else rule.series.change(closes.current, past)

    def windows(self, state: ScenarioState) -> dict[int, float | None]:
        closes = state.series.get(self.scenario.trigger.series.name)
        out: dict[int, float | None] = {}
        for w in self.scenario.windows:
            past = closes.past(w) if closes else None
            out[w] = None if past is None else self.scenario.trigger.series.change(closes.current, past)
        return out

    def confirmations(self, state: ScenarioState) -> list[dict[str, Any]]:
        out = []
        for c in self.scenario.confirmations:
            m = state.metrics.get(c.name)
            out.append({"label": c.name, "series": c.series.name, "met": R.is_met(c, m),
                        "value": None if m is None else float(f"{m:.12g}"), "threshold": c.threshold,
                        "direction": c.direction, "lookback": c.lookback})
        return out

    def apply(self, state: ScenarioState, ts_ms: int, ticks: Iterable[Tick]) -> list[dict[str, Any]]:
        """Apply ticks that share event time ``ts_ms`` (only this scenario's symbols matter), evaluate,
        and return the events it produced, in order."""
        touched: dict[str, SeriesSpec] = {}
        legs = state.legs
        for t in ticks:
            specs = self._series_by_symbol.get(t.symbol)
            if specs is None:
                continue
            cur = legs.get(t.symbol)
            if cur is None or t.ts_ms >= cur[0]:
                legs[t.symbol] = (t.ts_ms, t.price)
            for spec in specs:
                touched[spec.name] = spec
        if not touched:
            return []
        at = ts_ms if ts_ms > state.evaluated_ts else state.evaluated_ts
        state.evaluated_ts = at
        session = self._session(at)
        for name, spec in touched.items():
            if not all(leg in legs for leg in spec.legs):
                continue  # a series is defined once every leg has a price
            value = spec.value({leg: legs[leg][1] for leg in spec.legs})
            if value is None:
                continue  # undefined (a ratio over a zero leg): the series does not advance
            closes = state.series.get(name)
            if closes is None:
                closes = state.series[name] = SessionCloses(self.keep)
            closes.update(session, value)
        events: list[dict[str, Any]] = []
        fired: list[tuple[Rule, str, float]] = []
        for name in touched:
            if name not in state.series:
                continue
            for rule in self._rules_by_series[name]:
                m = self.metric(state, rule)
                if m is None:
                    continue
                state.metrics[rule.name] = m
                armed, transition = R.step(rule, state.armed.get(rule.name), m)
                state.armed[rule.name] = armed
                if transition is not None:
                    fired.append((rule, transition, m))
        for rule, transition, m in fired:
            is_trigger = rule is self.scenario.trigger
            ev = build_event(self.scenario, rule, transition, at, m, state.series[rule.series.name].current,
                             self.windows(state) if is_trigger else {},
                             self.confirmations(state) if is_trigger else None)
            events.append(ev)
            state.last_event = ev
        return events

    def status(self, state: ScenarioState, spark: int = 252) -> dict[str, Any]:
        """Where the scenario stands now: for the status page, the live stream and `status` commands."""
        sc, trig = self.scenario, self.scenario.trigger
        m = state.metrics.get("trigger")
        closes = state.series.get(trig.series.name)
        armed = state.armed.get("trigger")
        distance = None if m is None else trig.threshold - m
        progress = None
        if m is not None and trig.lookback is not None and trig.threshold != 0:
            progress = max(0.0, min(1.0, m / trig.threshold))
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
                "value": closes.current if closes else None, "metric": m,
                "distance": distance, "progress": progress,
                "armed": armed, "state": {None: "warming up", True: "armed", False: "fired"}[armed],
            },
            "windows": {str(w): v for w, v in self.windows(state).items()},
            "confirmations": self.confirmations(state),
            "last_event": state.last_event,
            "sparkline": list(closes.values[-spark:]) if closes else [],
        }


def group_by_ts(ticks: Iterable[Tick]) -> list[tuple[int, list[Tick]]]:
    """Group ticks by event time, ascending; arrival order is kept within a timestamp."""
    groups: dict[int, list[Tick]] = {}
    for t in ticks:
        groups.setdefault(t.ts_ms, []).append(t)
    return sorted(groups.items())


class ShardEngine:
    """All scenarios of one shard: routes a group of ticks to the scenarios that use their symbols,
    so the cost of a tick grows with the scenarios using its symbol, not with all scenarios."""

    def __init__(self, scenarios: Iterable[Scenario], settings: Settings) -> None:
        self.settings = settings
        self.engines: dict[str, ScenarioEngine] = {s.id: ScenarioEngine(s, settings) for s in scenarios}
        self.by_symbol: dict[str, list[ScenarioEngine]] = {}
        for e in self.engines.values():
            for sym in sorted(e.scenario.symbols):
                self.by_symbol.setdefault(sym, []).append(e)

    def apply(self, states: dict[str, ScenarioState], ts_ms: int, ticks: list[Tick]) -> tuple[list[dict[str, Any]], set[str]]:
        """Apply one same-timestamp group. Returns (events, ids of scenarios whose state changed).
        Missing states are created in ``states``."""
        affected: dict[str, ScenarioEngine] = {}
        for t in ticks:
            for e in self.by_symbol.get(t.symbol, ()):
                affected[e.scenario.id] = e
        events: list[dict[str, Any]] = []
        for sid, e in affected.items():
            st = states.get(sid)
            if st is None:
                st = states[sid] = e.new_state()
            events.extend(e.apply(st, ts_ms, ticks))
        return events, set(affected)
