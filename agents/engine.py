"""The scenario engine: as-of legs -> series values -> session closes -> metrics -> crossings. Pure.

The faust agent, the replay, the warm start and the benchmark all drive this same code; the batch
backtest (polars) is a second, independent implementation of the same semantics.

Semantics (see README, "Scenario semantics"):
- A series' value uses each leg's latest price at or before the evaluation time (as of).
- Ticks sharing a timestamp are applied together, then the scenario is evaluated once.
- A series advances only when one of its own legs ticked in the group; its value becomes the
  latest of the current session (session = local date of the event time).
- The metric is made from the current value and the closes before it by the rule's transform
  (``model.metric``: value, lookback, ma, high, low, streak).
- Rules step through :mod:`agents.rules` (hysteresis). Confirmations are updated before the
  trigger is judged, so a trigger event reports them as of the same moment. A trigger with
  ``require: k`` fires only when at least k of them are met; until then it stays armed.
- A tick older than the scenario's last evaluation (but within the allowed lateness, checked by
  the caller) corrects its leg if it is the leg's newest price, and the scenario is re-evaluated
  at its last evaluation time: a late leg can correct a value, it cannot rewrite the past.

Why this module is long (~400 lines): ScenarioEngine.apply is the worker's innermost loop, with
the value and lookback rules of model.metric written out in it; the prepared series it reads and
the ShardEngine that feeds it are kept beside it so that the hot path reads in one place.
"""

from __future__ import annotations

from typing import AbstractSet, Any, Iterable, Sequence

from ratiowatch.model import Rule, Scenario, SeriesSpec, Settings

from .rules import is_met, step
from .events import build_event
from ratiowatch.model.metric import change, round12, rule_metric
from ratiowatch.model.spec import rules_version
from ratiowatch.model.sessions import session_of
from .sessions import SessionCloses
from .state import SPLIT_VERSION, STATE_VERSION, ScenarioState  # noqa: F401  (re-exported)
from .status import scenario_status

__all__ = ["ScenarioState", "ScenarioEngine", "ShardEngine", "SessionClock", "TickRow"]

# A tick as the engine reads it: (symbol, price, ts_ms) by position, so a Tick, a plain tuple and
# the list decoded from a shard record all work without building an object per tick.
TickRow = Sequence[Any]


def _value(ser: "_Series", legs: dict[str, tuple[int, float]]) -> float | None:
    """The series value (``model.metric.series_value``, written out: this runs for every series a
    tick touches) on the legs' latest prices; None while a leg has no price yet, or for a ratio over
    a zero leg (undefined: the series does not advance)."""
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
    SeriesSpec, formatted on every call), its legs, how many closes it keeps and the rules judged
    on it, in order, as ``(rule, lookback, other, deferred)``: ``lookback`` None and ``other``
    False is a value rule, an int a lookback rule (both written out in the hot loop); ``other``
    True goes through ``model.metric.rule_metric``."""

    __slots__ = ("name", "spec", "kind", "a", "b", "ratio", "diff", "rules", "keep", "streak")

    def __init__(self, spec: SeriesSpec, rules: list[Rule], keep: int, deferred: Rule | None) -> None:
        self.name = spec.name
        self.spec = spec
        self.kind = spec.kind
        self.a = spec.legs[0]
        self.b = spec.legs[1] if len(spec.legs) > 1 else None
        self.ratio = spec.kind == "ratio"
        self.diff = spec.kind == "spread"   # a spread's change is a difference
        self.rules = tuple((r, r.sessions if r.transform == "lookback" else None,
                            r.transform not in ("value", "lookback"), r is deferred) for r in rules)
        self.keep = keep
        self.streak = any(r.transform == "streak" for r in rules)


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
        # Stored with the state: a state written under other rules is not carried over (checkpoint).
        self.rules_version = rules_version(scenario)
        self.tz = settings.session_timezone
        self._session = (clock or SessionClock(self.tz)).session
        self.keep = scenario.max_lookback + 1
        # Only the closes each series' rules need (and the windows, on the trigger's series).
        trig = scenario.trigger
        self.keep_by_series: dict[str, int] = {}
        for r in scenario.rules:
            need = r.earlier_closes + 1
            if r is trig:
                need = max([need] + [w + 1 for w in scenario.windows])
            self.keep_by_series[r.series.name] = max(self.keep_by_series.get(r.series.name, 1), need)
        # With ``require`` the trigger reads the confirmations: it is judged after every series of
        # the evaluation has been updated (see apply).
        self.require = scenario.require
        deferred = trig if scenario.require is not None else None
        series: dict[str, SeriesSpec] = {}
        for r in scenario.rules:
            series.setdefault(r.series.name, r.series)
        rules_by_series: dict[str, list[Rule]] = {}
        for r in scenario.confirmations + (trig,):  # confirmations first: see module doc
            rules_by_series.setdefault(r.series.name, []).append(r)
        self._series_by_symbol: dict[str, list[_Series]] = {}
        for name, spec in series.items():
            prepared = _Series(spec, rules_by_series.get(name, []), self.keep_by_series[name], deferred)
            for leg in spec.legs:
                self._series_by_symbol.setdefault(leg, []).append(prepared)
        # The trigger's track record over the history (``ratiowatch.track_record``), shown on the
        # status card; set by whoever computed it, None without history.
        self.track_record: dict[str, Any] | None = None

    def new_state(self) -> ScenarioState:
        return ScenarioState()

    def metric(self, state: ScenarioState, rule: Rule) -> float | None:
        """The rule's metric on the state's closes now (None while undefined)."""
        closes = state.series.get(rule.series.name)
        if closes is None or closes.current is None:
            return None
        spread = rule.series.kind == "spread"
        if rule.transform == "value":
            return closes.current
        if rule.transform == "lookback":
            past = closes.past(rule.sessions)
            return None if past is None else change(spread, closes.current, past)
        if rule.transform == "streak" and closes.streaks is None:
            return None
        # A copy of the streaks: reading a metric must not write the state.
        streaks = None if closes.streaks is None else list(closes.streaks)
        return rule_metric(rule.transform, rule.sessions, spread, closes.values, {}, streaks)

    def windows(self, state: ScenarioState) -> dict[int, float | None]:
        closes = state.series.get(self.scenario.trigger.series.name)
        spread = self.scenario.trigger.series.kind == "spread"
        out: dict[int, float | None] = {}
        for w in self.scenario.windows:
            past = closes.past(w) if closes else None
            out[w] = None if past is None else change(spread, closes.current, past)
        return out

    def met_count(self, state: ScenarioState) -> int:
        """Confirmations met now; one whose metric is not yet defined counts as not met."""
        metrics = state.metrics
        return sum(1 for c in self.scenario.confirmations if is_met(c, metrics.get(c.name)))

    def confirmations(self, state: ScenarioState) -> list[dict[str, Any]]:
        out = []
        for c in self.scenario.confirmations:
            m = state.metrics.get(c.name)
            out.append({"label": c.name, "series": c.series.name, "met": is_met(c, m),
                        "value": round12(m), "threshold": c.threshold,
                        "direction": c.direction, "lookback": c.lookback,
                        "transform": c.transform, "transform_sessions": c.sessions})
        return out

    def apply(self, state: ScenarioState, ts_ms: int, ticks: Iterable[TickRow]) -> list[dict[str, Any]]:
        """Apply ticks that share event time ``ts_ms`` (only this scenario's symbols matter), evaluate,
        and return the events it produced, in order."""
        # This is the innermost loop of the worker (once per scenario per timestamp group), so the
        # value and lookback rules of model.metric are written out here with the same float
        # operations; the semantics tests hold it to the reference computation.
        legs = state.legs
        by_symbol = self._series_by_symbol
        touched: Sequence[_Series]
        if len(ticks) == 1:
            # Most calls carry one tick: its symbol's series are distinct already, no dict needed.
            tick = ticks[0]  # (symbol, price, ts_ms); the evaluate stage may append its record offset
            sym, price, ts = tick[0], tick[1], tick[2]
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
        advanced = False
        # One pass per series: its value, its closes, then its rules. A rule reads only its own
        # series (and the events, built after the pass, read the metrics of all), so this is the
        # same as updating every series first. A trigger with ``require`` is the exception: it is
        # judged after the pass.
        for ser in touched:
            closes = series.get(ser.name)
            value = _value(ser, legs)
            if value is not None:
                advanced = True
                if closes is None:
                    closes = series[ser.name] = SessionCloses(ser.keep, streaks=[] if ser.streak else None)
                sessions = closes.sessions
                if sessions and sessions[-1] == session:
                    closes.values[-1] = value  # SessionCloses.update's common case, without the call
                else:
                    state.history_changed = True  # a session rolled or a past close is corrected
                    closes.keep = ser.keep  # a state loaded with one keep for all is right-sized here
                    if ser.streak and closes.streaks is None:
                        closes.track_streaks()
                    closes.update(session, value)
            if closes is None or not closes.values:
                continue
            values = closes.values
            current = values[-1]
            for rule, lookback, other, deferred in ser.rules:
                if other:
                    if ser.streak and closes.streaks is None:
                        closes.track_streaks()
                    m = rule_metric(rule.transform, rule.sessions, ser.diff, values, closes.agg, closes.streaks)
                    if m is None:
                        continue
                elif lookback is None:
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
                if deferred:
                    continue
                now_armed, transition = step(rule, armed.get(rule.name), m)
                armed[rule.name] = now_armed
                if transition is not None:
                    if fired is None:
                        fired = []
                    fired.append((rule, transition, m))
        if self.require is not None and advanced:
            # Judged at every evaluation in which a series of the scenario advanced: a trigger past
            # its threshold waits, armed, for its confirmations.
            m = metrics.get("trigger")
            if m is not None:
                trig = self.scenario.trigger
                now_armed, transition = step(trig, armed.get("trigger"), m,
                                               confirmed=self.met_count(state) >= self.require)
                armed["trigger"] = now_armed
                if transition is not None:
                    if fired is None:
                        fired = []
                    fired.append((trig, transition, m))
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
        return scenario_status(self, state, spark)


class ShardEngine:
    """All scenarios of one shard: routes a group of ticks to the scenarios that use their symbols,
    so the cost of a tick grows with the scenarios using its symbol, not with all scenarios."""

    def __init__(self, scenarios: Iterable[Scenario], settings: Settings) -> None:
        self.settings = settings
        self.clock = SessionClock(settings.session_timezone)
        self.engines: dict[str, ScenarioEngine] = {}
        self.by_symbol: dict[str, list[ScenarioEngine]] = {}
        self.set_scenarios(scenarios)

    def set_scenarios(self, scenarios: Iterable[Scenario]) -> None:
        """Evaluate ``scenarios`` from now on (a live change keeps the engines of the scenarios that
        did not change). States and track records are the caller's (:meth:`set_track_records`)."""
        old = self.engines
        self.engines = {}
        for s in scenarios:
            e = old.get(s.id)
            if e is None or e.scenario != s:
                e = ScenarioEngine(s, self.settings, self.clock)
            self.engines[s.id] = e
        self.by_symbol = {}
        for e in self.engines.values():
            for sym in sorted(e.scenario.symbols):
                self.by_symbol.setdefault(sym, []).append(e)

    def set_track_records(self, records: dict[str, dict[str, Any]] | None) -> None:
        """Hand each scenario its track record (``ratiowatch.track_record.track_records``) for the
        status card; None clears them."""
        for sid, e in self.engines.items():
            e.track_record = (records or {}).get(sid)

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
