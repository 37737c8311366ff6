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

from typing import AbstractSet, Any, Iterable, Sequence

from ratiowatch.config import Rule, Scenario, SeriesSpec, Settings

from . import rules as R
from .events import build_event
from .sessions import SessionCloses, iso_utc, session_of

__all__ = ["ScenarioState", "ScenarioEngine", "ShardEngine", "SessionClock", "TickRow"]

STATE_VERSION = 1
SPLIT_VERSION = 2

# A tick as the engine reads it: (symbol, price, ts_ms) by position, so a Tick, a plain tuple and
# the list decoded from a shard record all work without building an object per tick.
TickRow = Sequence[Any]


class ScenarioState:
    """Everything one scenario needs to resume: kept in the faust table, keyed by scenario id."""

    __slots__ = ("legs", "series", "armed", "metrics", "evaluated_ts", "offset", "last_event", "history_changed")

    def __init__(self) -> None:
        self.legs: dict[str, tuple[int, float]] = {}     # symbol -> (ts_ms, price) of its newest tick
        self.series: dict[str, SessionCloses] = {}       # series name -> closes
        self.armed: dict[str, bool | None] = {}          # rule name -> armed flag (None: never evaluated)
        self.metrics: dict[str, float | None] = {}       # rule name -> latest metric
        self.evaluated_ts: int = -1                      # event time of the last evaluation
        self.offset: int = -1                            # last applied offset of the shard topic
        self.last_event: dict[str, Any] | None = None    # the trigger's latest event (for status)
        self.history_changed = True                      # past closes or last event differ from the stored copy

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
            "offset": self.offset,
        }

    def history_dict(self) -> dict[str, Any]:
        return {"v": SPLIT_VERSION, "series": {k: [c.sessions[:-1], c.values[:-1]] for k, c in self.series.items()},
                "last_event": self.last_event}

    @classmethod
    def from_parts(cls, live: dict[str, Any], history: dict[str, Any] | None, keep: int) -> "ScenarioState":
        """The state from its two stored parts (``history`` None: not written yet)."""
        for d in (live, history or {"v": SPLIT_VERSION}):
            if d.get("v") != SPLIT_VERSION:
                raise ValueError(f"scenario state version {d.get('v')!r} is not {SPLIT_VERSION}")
        s = cls()
        s.legs = {k: (int(t), float(p)) for k, (t, p) in live["legs"].items()}
        past = history["series"] if history else {}
        for k in set(past) | set(live["current"]):
            ss, vv = past.get(k, ([], []))
            c = s.series[k] = SessionCloses(keep, list(ss), list(vv))
            if k in live["current"]:
                # update() also mends a pair written at different moments (a worker killed
                # between the two writes): the live value wins for its session.
                session, value = live["current"][k]
                c.update(int(session), float(value))
        s.armed = dict(live["armed"])
        s.metrics = dict(live["metrics"])
        s.evaluated_ts = int(live["evaluated_ts"])
        s.offset = int(live["offset"])
        s.last_event = history.get("last_event") if history else None
        s.history_changed = history is None
        return s


def _value(ser: "_Series", legs: dict[str, tuple[int, float]]) -> float | None:
    """SeriesSpec.value on the legs' latest prices; None while a leg has no price yet, or for a
    ratio over a zero leg (undefined: the series does not advance)."""
    leg_a = legs.get(ser.a)
    if leg_a is None:
        return None
    if ser.b is None:
        return leg_a[1]
    leg_b = legs.get(ser.b)
    if leg_b is None:
        return None
    if ser.ratio:
        return leg_a[1] / leg_b[1] if leg_b[1] != 0 else None
    return leg_a[1] - leg_b[1]


class _Series:
    """One distinct series of a scenario, prepared for the hot loop: its name (a property on
    SeriesSpec, formatted on every call), its legs and the rules judged on it, in order."""

    __slots__ = ("name", "spec", "a", "b", "ratio", "diff", "rules")

    def __init__(self, spec: SeriesSpec, rules: list[Rule]) -> None:
        self.name = spec.name
        self.spec = spec
        self.a = spec.legs[0]
        self.b = spec.legs[1] if len(spec.legs) > 1 else None
        self.ratio = spec.kind == "ratio"
        self.diff = spec.kind == "spread"   # a spread's lookback change is a difference
        self.rules = tuple(rules)


class SessionClock:
    """Event time -> session, remembering the slice of time around the last answer. One clock
    serves all the scenarios of a shard: they evaluate the same timestamps, so one of them pays
    for ``session_of`` (~2 µs) and the others hit the cache."""

    __slots__ = ("tz", "_cache")

    def __init__(self, tz: str) -> None:
        self.tz = tz
        self._cache = (0, -1, 0)  # (start_ms, end_ms, session) of the last session seen

    def session(self, ts_ms: int) -> int:
        lo, hi, s = self._cache
        if lo <= ts_ms < hi:
            return s
        s = session_of(ts_ms, self.tz)
        # Cache the UTC-hour-aligned slice around ts that surely lies inside this session: a whole
        # day would be wrong across DST changes, an hour on either side is always safe.
        base = ts_ms - ts_ms % 3_600_000
        if session_of(base, self.tz) == s and session_of(base + 3_599_999, self.tz) == s:
            self._cache = (base, base + 3_600_000, s)
        return s


class ScenarioEngine:
    """Evaluates one scenario; holds no state of its own (the state is passed in)."""

    def __init__(self, scenario: Scenario, settings: Settings, clock: SessionClock | None = None) -> None:
        self.scenario = scenario
        self.id = scenario.id
        self.tz = settings.session_timezone
        self._session = (clock or SessionClock(self.tz)).session
        self.keep = scenario.max_lookback + 1
        # Distinct series, each computed once even when several rules use it.
        self._series: dict[str, SeriesSpec] = {}
        for r in scenario.rules:
            self._series.setdefault(r.series.name, r.series)
        self._rules_by_series: dict[str, list[Rule]] = {}
        for r in scenario.confirmations + (scenario.trigger,):  # confirmations first: see module doc
            self._rules_by_series.setdefault(r.series.name, []).append(r)
        self._series_by_symbol: dict[str, list[_Series]] = {}
        for name, spec in self._series.items():
            prepared = _Series(spec, self._rules_by_series.get(name, []))
            for leg in spec.legs:
                self._series_by_symbol.setdefault(leg, []).append(prepared)

    def new_state(self) -> ScenarioState:
        return ScenarioState()

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

    def apply(self, state: ScenarioState, ts_ms: int, ticks: Iterable[TickRow]) -> list[dict[str, Any]]:
        """Apply ticks that share event time ``ts_ms`` (only this scenario's symbols matter), evaluate,
        and return the events it produced, in order."""
        # This is the innermost loop of the worker (once per scenario per timestamp group), so the
        # steps of SeriesSpec.value/change and metric() are written out here with the same float
        # operations; the semantics tests hold it to the reference computation.
        legs = state.legs
        by_symbol = self._series_by_symbol
        touched: Sequence[_Series]
        if len(ticks) == 1:
            # Most calls carry one tick: its symbol's series are distinct already, no dict needed.
            sym, price, ts = ticks[0]
            touched = by_symbol.get(sym, ())
            if not touched:
                return []
            cur = legs.get(sym)
            if cur is None or ts >= cur[0]:
                legs[sym] = (ts, price)
        else:
            seen: dict[str, _Series] = {}
            for t in ticks:
                sym = t[0]
                prepared = by_symbol.get(sym)
                if prepared is None:
                    continue
                cur = legs.get(sym)
                if cur is None or t[2] >= cur[0]:
                    legs[sym] = (t[2], t[1])
                for ser in prepared:
                    seen[ser.name] = ser
            if not seen:
                return []
            touched = list(seen.values())
        at = ts_ms if ts_ms > state.evaluated_ts else state.evaluated_ts
        state.evaluated_ts = at
        session = self._session(at)
        series, metrics, armed = state.series, state.metrics, state.armed
        fired: list[tuple[Rule, str, float]] | None = None
        # One pass per series: its value, its closes, then its rules. A rule reads only its own
        # series (and the events, built after the pass, read the metrics of all), so this is the
        # same as updating every series first.
        for ser in touched:
            closes = series.get(ser.name)
            value = _value(ser, legs)
            if value is not None:
                if closes is None:
                    closes = series[ser.name] = SessionCloses(self.keep)
                sessions = closes.sessions
                if sessions and sessions[-1] == session:
                    closes.values[-1] = value  # SessionCloses.update's common case, without the call
                else:
                    state.history_changed = True  # a session rolled or a past close is corrected
                    closes.update(session, value)
            if closes is None or not closes.values:
                continue
            values = closes.values
            current = values[-1]
            for rule in ser.rules:
                lookback = rule.lookback
                if lookback is None:
                    m = current
                elif len(values) <= lookback:
                    continue
                else:
                    past = values[-1 - lookback]
                    if ser.diff:
                        m = current - past
                    elif past > 0:
                        m = current / past - 1.0
                    else:
                        continue  # a relative change from a value <= 0 is undefined
                metrics[rule.name] = m
                now_armed, transition = R.step(rule, armed.get(rule.name), m)
                armed[rule.name] = now_armed
                if transition is not None:
                    if fired is None:
                        fired = []
                    fired.append((rule, transition, m))
        events: list[dict[str, Any]] = []
        if fired is None:
            return events
        for rule, transition, m in fired:
            is_trigger = rule is self.scenario.trigger
            ev = build_event(self.scenario, rule, transition, at, m, state.series[rule.series.name].current,
                             self.windows(state) if is_trigger else {},
                             self.confirmations(state) if is_trigger else None)
            events.append(ev)
            if is_trigger:
                state.last_event = ev  # the status card's "last crossing" is the trigger's
            state.history_changed = True
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


class ShardEngine:
    """All scenarios of one shard: routes a group of ticks to the scenarios that use their symbols,
    so the cost of a tick grows with the scenarios using its symbol, not with all scenarios."""

    def __init__(self, scenarios: Iterable[Scenario], settings: Settings) -> None:
        self.settings = settings
        clock = SessionClock(settings.session_timezone)
        self.engines: dict[str, ScenarioEngine] = {s.id: ScenarioEngine(s, settings, clock) for s in scenarios}
        self.by_symbol: dict[str, list[ScenarioEngine]] = {}
        for e in self.engines.values():
            for sym in sorted(e.scenario.symbols):
                self.by_symbol.setdefault(sym, []).append(e)

    def apply(self, states: dict[str, ScenarioState], ts_ms: int,
              ticks: Sequence[TickRow]) -> tuple[list[dict[str, Any]], AbstractSet[str]]:
        """Apply one same-timestamp group at ``ts_ms``. Returns (events, ids of scenarios whose
        state changed). Missing states are created in ``states``."""
        changed: set[str] = set()
        return self._apply(states, ticks, changed, ts_ms), changed

    def apply_sorted(self, states: dict[str, ScenarioState], ticks: Sequence[TickRow],
                     changed: set[str]) -> list[dict[str, Any]]:
        """Apply ticks sorted by event time (arrival order kept within a timestamp): each group of
        ticks sharing a timestamp is applied together, in ascending time, scenario by scenario.
        Adds the ids of the scenarios whose state changed to ``changed``; returns the events, each
        scenario's in order (scenarios are independent, so their events interleave freely)."""
        return self._apply(states, ticks, changed, None)

    def _apply(self, states: dict[str, ScenarioState], ticks: Sequence[TickRow], changed: set[str],
               group_ts: int | None) -> list[dict[str, Any]]:
        # Each scenario gets only the ticks of its own symbols, sorted out once for the whole
        # batch rather than per timestamp group (a group is ~3 ticks on a busy feed): its cost
        # follows its ticks, not the size of the batch.
        by_symbol = self.by_symbol
        mine: dict[ScenarioEngine, list[TickRow]] = {}
        for t in ticks:
            for e in by_symbol.get(t[0], ()):
                lst = mine.get(e)
                if lst is None:
                    mine[e] = [t]
                else:
                    lst.append(t)
        events: list[dict[str, Any]] = []
        add = changed.add
        for e, own in mine.items():
            st = states.get(e.id)
            if st is None:
                st = states[e.id] = e.new_state()
            add(e.id)
            if group_ts is not None:
                events.extend(e.apply(st, group_ts, own))
                continue
            apply = e.apply
            i, n = 0, len(own)
            while i < n:  # the scenario's timestamp groups, in order
                ts = own[i][2]
                j = i + 1
                while j < n and own[j][2] == ts:
                    j += 1
                out = apply(st, ts, own[i:j])
                if out:
                    events.extend(out)
                i = j
        return events
