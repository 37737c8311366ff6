"""Triggers traders use: ma, high, low, streak and ``require``, held to an independent computation.

The reference is test_semantics' plain loop over dates (``reference_events``), whose metrics come
from ``reference_metric`` / ``next_streak`` there: written from the table in README "Scenario
semantics", on full lists of closes, importing nothing from the engine or the backtest. Here:
- on the real history, every transform (ratios, levels, the DGS10-DGS2 spread with ma and high)
  and require: engine = backtest = reference, event for event, and metric for metric every day;
- an intraday new high crossed inside a session;
- hand-made require cases; hypothesis random walks for each transform.
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_semantics import (FIXTURES, HISTORY, _all_paths, _days, assert_same_events, engine_events,
                            next_streak, read_csv_history, reference_events, reference_metric)

from ratiowatch.agents.engine import ScenarioState, ShardEngine
from ratiowatch.backtest import metric_frame, series_frame
from ratiowatch.cli import main
from ratiowatch.config import load_config, parse_config
from ratiowatch.streams.history import daily_ticks, load_history
from ratiowatch.streams.ticks import Tick

NY = ZoneInfo("America/New_York")
CONFIG = FIXTURES / "triggers_scenarios.yaml"


@pytest.fixture(scope="module")
def real():
    cfg = load_config(CONFIG, known_symbols={p.stem for p in HISTORY.glob("*.csv")})
    prices = read_csv_history(HISTORY, cfg.symbols)
    return cfg, prices, reference_events(cfg, prices)


# --------------------------------------------------------------------------- real history, events

def test_fixture_covers_every_transform_and_require(real):
    cfg, _, ref = real
    rules = [r for sc in cfg.scenarios for r in sc.rules]
    assert {r.transform for r in rules} == {"value", "lookback", "ma", "high", "low", "streak"}
    fired = {(e["scenario"], e["rule"]) for e in ref if e["kind"] == "fired"}
    # Every rule fires at least once in the history, so every transform's crossings are compared.
    assert {(sc.id, r.name) for sc in cfg.scenarios for r in sc.rules} == fired
    # The spread with ma and with high, and a level and a ratio with each transform.
    spread = {(r.transform, r.series.kind) for r in rules if r.series.name == "DGS10-DGS2"}
    assert {("ma", "spread"), ("high", "spread"), ("low", "spread"), ("streak", "spread")} <= spread
    assert {(r.transform, r.series.kind) for r in rules} >= {
        ("ma", "ratio"), ("ma", "level"), ("high", "ratio"), ("low", "level"), ("streak", "ratio"), ("streak", "level")}


def test_backtest_json_equals_reference(real, tmp_path, capsys):
    _, _, ref = real
    rc = main(["backtest", "--config", str(CONFIG), "--data", str(HISTORY), "--json", "--no-charts",
               "--out", str(tmp_path)])
    got = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0
    # The reference evaluates; where the ticks came from is the published record's addition.
    assert {e.pop("origin") for e in got} == {"replay"}
    assert_same_events(got, ref, "backtest --json")


def test_streaming_engine_equals_reference(real):
    cfg, _, ref = real
    assert_same_events(engine_events(cfg, load_history(HISTORY, cfg.symbols)), ref, "engine")


def test_require_waits_for_confirmations_on_real_history(real):
    cfg, prices, ref = real
    sc = cfg.scenario("small-caps-outperform")
    fires = [e for e in ref if e["scenario"] == sc.id and e["rule"] == "trigger" and e["kind"] == "fired"]
    assert all(sum(c["met"] is True for c in e["confirmations"]) >= 4 for e in fires)
    assert all(e["require"] == 4 for e in fires)
    # Without require it fires 13 times (README); with it, nine. In July 2003 it crossed +10% on the
    # 8th with 2 of 7 met, stayed armed (never below the +8% re-arm level), went back over +10%
    # several times short of confirmations, and fired on the 31st, once 4 were met.
    assert [e["at"][:10] for e in fires] == ["2003-07-31", "2003-08-21", "2003-09-15", "2003-11-05", "2008-08-01",
                                            "2008-09-23", "2009-06-04", "2020-11-23", "2026-02-19"]
    dates = sorted(set(prices["IWM"]) & set(prices["SPY"]))
    ratio = [prices["IWM"][d] / prices["SPY"][d] for d in dates]
    i0, i1 = dates.index(date(2003, 7, 8)), dates.index(date(2003, 7, 31))
    change = [ratio[i] / ratio[i - 63] - 1 for i in range(i0, i1 + 1)]
    assert change[0] >= 0.10 and change[-1] >= 0.10 and min(change) >= 0.08
    assert sum(1 for c in change if c >= 0.10) > 5
    plain = reference_events(parse_config({"scenarios": [{"id": "plain", "trigger": {
        "series": "IWM/SPY", "lookback": 63, "above": 0.10, "rearm": 0.08}}]}), prices)
    assert "2003-07-08" in [e["at"][:10] for e in plain if e["kind"] == "fired"]


# --------------------------------------------------------------------------- real history, metrics

def _engine_metrics(cfg, history):
    """Each rule's metric after every daily group, from the engine's own state."""
    eng, states, out = ShardEngine(cfg.scenarios, cfg.settings), {}, []
    for d, ticks in daily_ticks(history, cfg.settings.session_timezone):
        eng.apply(states, ticks[0].ts_ms, ticks)
        out.append((d, {sid: dict(st.metrics) for sid, st in states.items()}))
    return out


def test_every_rule_metric_equals_reference_every_day(real):
    """Not only at crossings: every rule's metric, every session, on both paths."""
    cfg, prices, _ = real
    history = load_history(HISTORY, cfg.symbols)
    for sc in cfg.scenarios:
        for r in sc.rules:
            legs = r.series.legs
            last, hist, streak, want = {}, [], [], {}
            for d in sorted({d for s in legs for d in prices[s]}):
                today = {s: prices[s][d] for s in legs if d in prices[s]}
                last.update(today)
                if not all(s in last for s in legs):
                    continue
                a, b = last[legs[0]], last[legs[-1]]
                hist.append(a / b if r.series.kind == "ratio" else a - b if r.series.kind == "spread" else a)
                streak.append(next_streak(streak, hist))
                want[d] = reference_metric(r, hist, streak)
            got = dict(metric_frame(series_frame(history, r.series), r).select("date", "metric").iter_rows())
            assert got.keys() == want.keys(), (sc.id, r.name)
            for d, m in want.items():
                assert (m is None and got[d] is None) or got[d] == pytest.approx(m, rel=1e-12, abs=1e-12), (sc.id, r.name, d)
    # And the engine's latest metric for each rule, on each date its series advanced.
    engine_day = dict(_engine_metrics(cfg, history))
    for sc in cfg.scenarios[:4]:
        r = sc.trigger
        frame = metric_frame(series_frame(history, r.series), r).drop_nulls("metric")
        for d, m in frame.select("date", "metric").iter_rows():
            assert engine_day[d][sc.id]["trigger"] == pytest.approx(m, rel=1e-12, abs=1e-12), (sc.id, d)


# --------------------------------------------------------------------------- intraday

def _ts(d: date, hh: int, mm: int = 0) -> int:
    return int(datetime.combine(d, time(hh, mm), NY).timestamp() * 1000)


def test_intraday_new_high_fires_inside_the_session():
    """QQQ/SPY on the real closes up to a day, then that day's ticks: the rule fires the moment
    the ratio passes the highest of the 252 closes before (computed here from the CSVs), once."""
    cfg = parse_config({"scenarios": [{"id": "qqq-high", "windows": [21],
                                       "trigger": {"series": "QQQ/SPY", "high": 252, "above": 0, "rearm": -0.03}}]})
    prices = read_csv_history(HISTORY, {"QQQ", "SPY"})
    dates = sorted(set(prices["QQQ"]) & set(prices["SPY"]))
    day = date(2024, 6, 12)
    i = dates.index(day)
    closes = [prices["QQQ"][d] / prices["SPY"][d] for d in dates[:i]]
    high = max(closes[-252:])
    assert closes[-1] < high  # yesterday was below the high: the rule is armed this morning
    eng, states = ShardEngine(cfg.scenarios, cfg.settings), {}
    history = load_history(HISTORY, {"QQQ", "SPY"})
    for _, ticks in daily_ticks(history.filter(history["date"] < day), cfg.settings.session_timezone):
        eng.apply(states, ticks[0].ts_ms, ticks)
    st = states["qqq-high"]
    assert st.armed["trigger"] is True
    spy = prices["SPY"][dates[i - 1]]
    below, above = high * 0.995 * spy, high * 1.004 * spy
    engine = eng.engines["qqq-high"]

    def tick(hh, mm, qqq):
        return eng.apply(states, _ts(day, hh, mm), [Tick("SPY", spy, _ts(day, hh, mm)),
                                                    Tick("QQQ", qqq, _ts(day, hh, mm))])[0]

    assert tick(10, 0, below) == []
    status = engine.status(st)
    assert status["trigger"]["distance_text"].startswith(f"{0.5:.1f}% below its 252-session high")
    evs = tick(11, 30, above)
    assert [(e["kind"], e["at"]) for e in evs] == [("fired", datetime.combine(day, time(11, 30), NY)
                                                   .astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ"))]
    assert evs[0]["value"] == pytest.approx((above / spy) / high - 1, rel=1e-12)
    assert evs[0]["transform"] == "high" and evs[0]["transform_sessions"] == 252
    # A wobble back under the high and over it again in the same session does not fire twice.
    assert tick(12, 0, below) == [] and tick(13, 0, above) == []
    # The intraday value is today's, not a close: the 252 closes before are still the same ones.
    assert engine.metric(st, cfg.scenarios[0].trigger) == pytest.approx((above / spy) / high - 1, rel=1e-12)


def test_intraday_moving_average_includes_the_current_value():
    cfg = parse_config({"scenarios": [{"id": "ma", "windows": [1],
                                       "trigger": {"series": "X", "ma": 3, "above": 0.05, "rearm": 0.0}}]})
    eng, states = ShardEngine(cfg.scenarios, cfg.settings), {}
    d = _days(4, date(2024, 3, 4))
    for k, p in enumerate([100.0, 100.0, 100.0]):  # the third close defines the metric (0): armed
        eng.apply(states, _ts(d[k], 16), [Tick("X", p, _ts(d[k], 16))])
    assert states["ma"].armed["trigger"] is True
    # 104 intraday: mean (100 + 100 + 104) / 3 -> +2.6%, under the threshold, nothing happens;
    # against the closes before alone (100) it would be +4%, and 106 would fire at +6%.
    assert eng.apply(states, _ts(d[3], 10), [Tick("X", 104.0, _ts(d[3], 10))])[0] == []
    assert eng.apply(states, _ts(d[3], 10, 30), [Tick("X", 106.0, _ts(d[3], 10, 30))])[0] == []
    # 110: mean 103.33 -> +6.45% fires.
    evs = eng.apply(states, _ts(d[3], 11), [Tick("X", 110.0, _ts(d[3], 11))])[0]
    assert [e["kind"] for e in evs] == ["fired"]
    assert evs[0]["value"] == pytest.approx(110.0 / (310.0 / 3) - 1)


# --------------------------------------------------------------------------- require, by hand

def _req_cfg(require=1, rearm=1.0, conf=None):
    return parse_config({"scenarios": [{"id": "req", "windows": [1], "require": require,
                                        "trigger": {"series": "A", "above": 10, "rearm": rearm},
                                        "confirmations": [conf or {"label": "B high", "series": "B", "above": 5}]}]})


def _kinds(ref):
    return [(e["kind"], e["at"][:10]) for e in ref if e["rule"] == "trigger"]


def test_require_fires_when_the_confirmation_arrives_and_rearms_on_the_metric_alone():
    d = _days(8)
    # A crosses 10 on d1 with B unmet: armed, waiting. B is met on d3: fires then. A falls below the
    # re-arm level on d5 while B is still met: re-arms (the metric alone), crosses again on d6.
    prices = {"A": dict(zip(d, [5, 11, 12, 12, 11, 0.5, 11, 12])), "B": dict(zip(d, [1, 1, 1, 6, 6, 6, 6, 6]))}
    ref = _all_paths(_req_cfg(), prices)
    assert _kinds(ref) == [("fired", str(d[3])), ("rearmed", str(d[5])), ("fired", str(d[6]))]
    assert [sum(c["met"] is True for c in e["confirmations"]) for e in ref if e["rule"] == "trigger"] == [1, 1, 1]


def test_require_fires_on_a_date_only_the_confirmation_moved():
    # B trades on d2, A does not: the trigger, past its threshold since d1, fires on d2 with A's
    # latest metric (the legs and series are as of).
    d = _days(4)
    prices = {"A": {d[0]: 5, d[1]: 11, d[3]: 11}, "B": {d[0]: 1, d[1]: 1, d[2]: 6, d[3]: 6}}
    ref = _all_paths(_req_cfg(), prices)
    assert _kinds(ref) == [("fired", str(d[2]))]
    assert ref[-1]["series_value"] == 11.0 and ref[-1]["value"] == 11.0


def test_require_no_fire_if_the_metric_falls_back_first():
    d = _days(6)
    # Past 10 on d1 without B; back to 9 (above the re-arm level 1, so still armed) when B is met on
    # d3: no fire; over 10 again on d4 with B met: fires.
    prices = {"A": dict(zip(d, [5, 11, 12, 9, 11, 11])), "B": dict(zip(d, [1, 1, 1, 6, 6, 6]))}
    assert _kinds(_all_paths(_req_cfg(), prices)) == [("fired", str(d[4]))]


def test_require_counts_an_undefined_confirmation_as_not_met():
    d = _days(6)
    # B's 3-session change is undefined until d3 (and met from then on): no fire before.
    conf = {"label": "B up", "series": "B", "lookback": 3, "above": 0.0}
    prices = {"A": dict(zip(d, [5, 11, 11, 11, 11, 11])), "B": dict(zip(d, [1, 2, 3, 4, 5, 6]))}
    ref = _all_paths(_req_cfg(conf=conf), prices)
    assert _kinds(ref) == [("fired", str(d[3]))]
    # The same with a level confirmation that is met at once fires on the first crossing.
    ref = _all_paths(_req_cfg(conf={"label": "B", "series": "B", "above": 0.0}), prices)
    assert _kinds(ref) == [("fired", str(d[1]))]


def test_first_evaluation_never_fires_even_when_confirmed():
    d = _days(3)
    prices = {"A": dict(zip(d, [11, 11, 11])), "B": dict(zip(d, [6, 6, 6]))}
    assert _kinds(_all_paths(_req_cfg(), prices)) == []


# --------------------------------------------------------------------------- streak, by hand

def test_streak_counts_sessions_in_a_row():
    cfg = parse_config({"scenarios": [{"id": "run", "windows": [1],
                                       "trigger": {"series": "X", "streak": True, "above": 3, "rearm": 0}}]})
    d = _days(11)
    path = [10, 11, 12, 12, 13, 14, 15, 14, 15, 16, 17]
    # streaks:  -,  1,  2,  0,  1,  2,  3, -1,  1,  2,  3
    ref = _all_paths(cfg, {"X": dict(zip(d, path))})
    assert [(e["kind"], e["at"][:10], e["value"]) for e in ref] == [
        ("fired", str(d[6]), 3.0), ("rearmed", str(d[7]), -1.0), ("fired", str(d[10]), 3.0)]
    eng, states = ShardEngine(cfg.scenarios, cfg.settings), {}
    for k in range(5):
        eng.apply(states, _ts(d[k], 16), [Tick("X", float(path[k]), _ts(d[k], 16))])
    assert eng.engines["run"].status(states["run"])["trigger"]["distance_text"] == "1 session up, fires at 3"


# --------------------------------------------------------------------------- state and memory

def test_state_round_trip_mid_history_continues_identically(real):
    """Stored and reloaded (live + history parts, through JSON, with one keep for all series as the
    pipeline passes it) halfway through: the rest of the run is unchanged, streaks included."""
    cfg, _, ref = real
    history = load_history(HISTORY, cfg.symbols)
    groups = list(daily_ticks(history, cfg.settings.session_timezone))
    half = len(groups) // 2
    eng, states, events = ShardEngine(cfg.scenarios, cfg.settings), {}, []
    for _, ticks in groups[:half]:
        events += eng.apply(states, ticks[0].ts_ms, ticks)[0]
    reloaded = {}
    for sid, st in states.items():
        live = orjson.loads(orjson.dumps(st.live_dict()))
        past = orjson.loads(orjson.dumps(st.history_dict()))
        reloaded[sid] = ScenarioState.from_parts(live, past, eng.engines[sid].keep)
    full = {sid: ScenarioState.from_dict(orjson.loads(orjson.dumps(st.to_dict())), eng.engines[sid].keep)
            for sid, st in states.items()}
    other = ShardEngine(cfg.scenarios, cfg.settings)
    rest_a, rest_b = [], []
    for _, ticks in groups[half:]:
        rest_a += other.apply(reloaded, ticks[0].ts_ms, ticks)[0]
        rest_b += other.apply(full, ticks[0].ts_ms, ticks)[0]
    from ratiowatch.agents.events import canonical_order
    assert_same_events(canonical_order(events + rest_a, cfg), ref, "reloaded from parts")
    assert_same_events(canonical_order(events + rest_b, cfg), ref, "reloaded from to_dict")
    # Memory: each series keeps only what its rules (and the trigger's windows) need.
    for sid, st in reloaded.items():
        e = other.engines[sid]
        for name, closes in st.series.items():
            assert len(closes.values) == e.keep_by_series[name], (sid, name)
            assert closes.streaks is None or len(closes.streaks) == len(closes.values)
    assert other.engines["small-caps-streak"].keep_by_series == {"IWM/SPY": 6}  # windows [5]
    assert other.engines["tech-new-high"].keep_by_series == {"QQQ/SPY": 253}
    assert other.engines["curve-above-ma"].keep_by_series == {"DGS10-DGS2": 50}


# --------------------------------------------------------------------------- hypothesis

_SERIES = ["A/B", "A-B", "A", "B/C", "C-A", "C"]


@st.composite
def _walks(draw, transform):
    n = draw(st.integers(8, 45))
    days = _days(n, date(2023, 3, 1))
    prices = {}
    for sym in "ABC":
        present = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        steps = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
        p, by = float(draw(st.integers(20, 40))), {}
        for d, here, s in zip(days, present, steps):
            p = max(1.0, p + s)  # integers: values hit thresholds and each other exactly
            if here:
                by[d] = p
        if by:
            prices[sym] = by

    def rule(label=None, t=transform):
        series = draw(st.sampled_from(_SERIES))
        kind = "spread" if "-" in series else "ratio" if "/" in series else "level"
        up = draw(st.booleans())
        r = {"series": series}
        if t == "streak":
            r["streak"] = True
            x, band = float(draw(st.integers(-4, 4))), float(draw(st.integers(0, 3)))
        else:
            r[t] = draw(st.integers(1, 6))
            scale = 1.0 if kind == "spread" else 0.02
            x, band = scale * draw(st.integers(-4, 4)), scale * draw(st.integers(0, 3))
        r["above" if up else "below"] = x
        r["rearm"] = x - band if up else x + band
        if label:
            r["label"] = label
        return r

    confs = [rule(f"c{j}", draw(st.sampled_from(["ma", "high", "low", "streak", "lookback"])))
             for j in range(draw(st.integers(0, 3)))]
    sc = {"id": "s", "trigger": rule(), "confirmations": confs,
          "windows": draw(st.lists(st.integers(1, 6), max_size=2, unique=True))}
    if confs and draw(st.booleans()):
        sc["require"] = draw(st.integers(1, len(confs)))
    return parse_config({"scenarios": [sc]}), prices


_HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_HYP
@given(_walks("ma"))
def test_property_ma(case):
    _all_paths(*case)


@_HYP
@given(_walks("high"))
def test_property_high(case):
    _all_paths(*case)


@_HYP
@given(_walks("low"))
def test_property_low(case):
    _all_paths(*case)


@_HYP
@given(_walks("streak"))
def test_property_streak(case):
    _all_paths(*case)


def test_ma_values_by_hand():
    """The definitions worked by hand on a short path (the mean includes today's value; a mean of
    the closes before alone would give +50% on d4, not +33%)."""
    cfg = parse_config({"scenarios": [{"id": "s", "windows": [1],
                                       "trigger": {"series": "A", "ma": 3, "above": 0.0, "rearm": -0.01}}]})
    d = _days(8)
    ref = _all_paths(cfg, {"A": dict(zip(d, [10, 9, 8, 7, 12, 6, 5, 13]))})
    assert [(e["kind"], e["at"][:10], e["value"]) for e in ref] == [
        ("fired", str(d[4]), pytest.approx(12 / 9 - 1)), ("rearmed", str(d[5]), pytest.approx(6 / (25 / 3) - 1)),
        ("fired", str(d[7]), pytest.approx(13 / 8 - 1))]


# --------------------------------------------------------------------------- chart, schema, words

def test_chart_metric_series_equals_reference_for_every_transform(real):
    from ratiowatch.notifiers.chart import metric_series
    cfg, prices, _ = real
    for sc in cfg.scenarios:
        for r in sc.rules:
            legs = r.series.legs
            dates = sorted(set(prices[legs[0]]) & set(prices[legs[-1]]))[-400:]
            a, b = [prices[legs[0]][d] for d in dates], [prices[legs[-1]][d] for d in dates]
            values = [x / y if r.series.kind == "ratio" else x - y if r.series.kind == "spread" else x
                      for x, y in zip(a, b)]
            hist, streak, want = [], [], []
            for v in values:
                hist.append(v)
                streak.append(next_streak(streak, hist))
                want.append(reference_metric(r, hist, streak))
            got = metric_series(values, r.series.kind, r.lookback, r.transform, r.sessions)
            assert [x is None for x in got] == [x is None for x in want], (sc.id, r.name)
            assert [x for x in got if x is not None] == pytest.approx([x for x in want if x is not None],
                                                                      rel=1e-12, abs=1e-12), (sc.id, r.name)


def test_events_with_transforms_follow_the_schema(real):
    import jsonschema

    from ratiowatch.agents.events import load_schema
    _, _, ref = real
    validator = jsonschema.Draft202012Validator(load_schema())
    seen = set()
    for e in ref:
        if (e["transform"], e["rule"] == "trigger") not in seen:
            seen.add((e["transform"], e["rule"] == "trigger"))
            validator.validate(e)
    assert {t for t, _ in seen} == {"value", "lookback", "ma", "high", "low", "streak"}


def test_distance_words():
    from ratiowatch.agents.wording import distance_text, metric_name
    assert distance_text("QQQ/SPY", "high", 252, "up", 0.0, -0.03, -0.021, True) == \
        "2.1% below its 252-session high, fires at +0.00%"
    assert distance_text("SPY", "streak", None, "up", 6, 0, 4.0, True) == "4 sessions up, fires at 6"
    assert distance_text("SPY", "streak", None, "down", -5, -1, -2.0, True) == "2 sessions down, fires at 5 down"
    assert distance_text("DGS10-DGS2", "ma", 50, "up", 0.15, 0.0, 0.07, True) == \
        "0.07 pp above its 50-session average, fires at +0.15 pp"
    assert distance_text("HYG", "low", 252, "down", 0.0, 0.02, 0.013, False) == \
        "1.3% above its 252-session low, fires at +0.00% (fired; re-arms above +2.00%)"
    assert distance_text("DXY", "value", None, "down", 100, 101, 101.95, True) == "DXY is 101.95, fires at or below 100.00"
    assert distance_text("IWM/SPY", "lookback", 63, "up", 0.1, 0.08, None, None).startswith("warming up")
    assert metric_name("XLK/XLU", "ma", 200) == "XLK/XLU vs its 200-session average"
    assert metric_name("IWM/SPY", "lookback", 63) == "IWM/SPY 3-month change"


def test_status_before_any_data_and_a_warming_streak():
    cfg = load_config(CONFIG)
    eng = ShardEngine(cfg.scenarios, cfg.settings)
    for e in eng.engines.values():
        st = e.status(e.new_state())
        assert st["trigger"]["state"] == "warming up" and st["trigger"]["distance_text"].startswith("warming up")
