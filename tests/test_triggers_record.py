"""Alerts carry their own history, and a rule shows in its own terms everywhere it shows.

The track record, the per-rule backtest summary and the split by confirmations met are checked
against a computation written here from the CSVs and the reference events (test_semantics), not
against the backtest's own table.
"""

from __future__ import annotations

import io
import statistics
from bisect import bisect_right
from datetime import date

import pytest
from test_semantics import HISTORY, read_csv_history, reference_events

from ratiowatch.agents.engine import ShardEngine
from ratiowatch.backtest import FORWARD_HORIZONS, run_backtest
from ratiowatch.config import load_config
from ratiowatch.notifiers.render import render, render_email, render_slack, render_text
from ratiowatch.notifiers.route import FIRING, RESOLVED, Notice
from ratiowatch.notifiers.service import NotificationService
from ratiowatch.streams.history import daily_ticks, load_history
from ratiowatch.track_record import track_records


@pytest.fixture(scope="module")
def shipped():
    cfg = load_config(known_symbols={p.stem for p in HISTORY.glob("*.csv")})
    prices = read_csv_history(HISTORY, cfg.symbols)
    result = run_backtest(cfg, load_history(HISTORY, cfg.symbols))
    return cfg, prices, reference_events(cfg, prices), result


def _series_closes(prices, spec):
    """(dates, values): the series on every date one of its legs has a close, legs as of."""
    legs, last, dates, values = spec.legs, {}, [], []
    for d in sorted({d for s in legs for d in prices[s]}):
        last.update({s: prices[s][d] for s in legs if d in prices[s]})
        if all(s in last for s in legs):
            a, b = last[legs[0]], last[legs[-1]]
            dates.append(d)
            values.append(a / b if spec.kind == "ratio" else a - b if spec.kind == "spread" else a)
    return dates, values


def _forward(dates, values, day, h, spread):
    i = bisect_right(dates, day) - 1  # the last close at or before the event
    if i + h >= len(values):
        return None
    return values[i + h] - values[i] if spread else values[i + h] / values[i] - 1


def _expected_outcome(dates, values, fires, spread):
    out = {}
    for h in FORWARD_HORIZONS:
        xs = [x for x in (_forward(dates, values, d, h, spread) for d in fires) if x is not None]
        out[str(h)] = (len(xs), statistics.median(xs) if xs else None,
                       sum(1 for x in xs if x > 0) / len(xs) if xs else None)
    return out


def test_track_records_equal_a_plain_computation(shipped):
    cfg, prices, ref, result = shipped
    records = track_records(cfg, result)
    assert list(records) == [sc.id for sc in cfg.scenarios]
    for sc in cfg.scenarios:
        fires = [date.fromisoformat(e["at"][:10]) for e in ref
                 if e["scenario"] == sc.id and e["rule"] == "trigger" and e["kind"] == "fired"]
        rec = records[sc.id]
        assert rec["fired"] == len(fires) and rec["fired"] > 0, sc.id
        assert rec["last_fired"] == str(fires[-1])
        spec = sc.trigger.series
        spread = spec.kind == "spread"
        wanted = [(spec.name, _series_closes(prices, spec))]
        if len(spec.legs) > 1:
            wanted += [(leg, (sorted(prices[leg]), [prices[leg][d] for d in sorted(prices[leg])])) for leg in spec.legs]
        assert [o["name"] for o in rec["outcomes"]] == [name for name, _ in wanted]
        for o, (name, (dates, values)) in zip(rec["outcomes"], wanted):
            exp = _expected_outcome(dates, values, fires, spread)
            for h in FORWARD_HORIZONS:
                got = o["by_horizon"][str(h)]
                n, med, pos = exp[str(h)]
                assert got["n"] == n, (sc.id, name, h)
                assert (got["median"] is None and med is None) or got["median"] == pytest.approx(med, rel=1e-9, abs=1e-12)
                assert (got["positive"] is None and pos is None) or got["positive"] == pytest.approx(pos)


def test_summary_per_rule_and_split_by_confirmations_met(shipped):
    cfg, prices, ref, result = shipped
    for sc, s in zip(cfg.scenarios, result.summaries):
        assert [r.rule for r in s.rules] == [r.name for r in sc.rules]
        for rs, rule in zip(s.rules, sc.rules):
            kinds = [e["kind"] for e in ref if e["scenario"] == sc.id and e["rule"] == rule.name]
            assert (rs.fired, rs.rearmed) == (kinds.count("fired"), kinds.count("rearmed")), (sc.id, rule.name)
            assert rs.transform == rule.transform and rs.description == rule.describe()
            assert len(rs.episodes) == rs.fired
            # Forward change of the rule's own series after it fired.
            dates, values = _series_closes(prices, rule.series)
            fires = [date.fromisoformat(e["at"][:10]) for e in ref
                     if e["scenario"] == sc.id and e["rule"] == rule.name and e["kind"] == "fired"]
            exp = _expected_outcome(dates, values, fires, rule.series.kind == "spread")
            for h in FORWARD_HORIZONS:
                assert rs.forward_n[h] == exp[str(h)][0]
                if exp[str(h)][1] is not None:
                    assert rs.forward_median[h] == pytest.approx(exp[str(h)][1], rel=1e-9, abs=1e-12)
        if not sc.confirmations:
            assert s.forward_by_met == {}
            continue
        trig = [e for e in ref if e["scenario"] == sc.id and e["rule"] == "trigger" and e["kind"] == "fired"]
        dates, values = _series_closes(prices, sc.trigger.series)
        by: dict[int, list[date]] = {}
        for e in trig:
            by.setdefault(sum(1 for c in e["confirmations"] if c["met"] is True), []).append(date.fromisoformat(e["at"][:10]))
        assert sorted(s.forward_by_met) == sorted(by), sc.id
        for k, fires in by.items():
            part = s.forward_by_met[k]
            assert part["n"] == len(fires)
            exp = _expected_outcome(dates, values, fires, sc.trigger.series.kind == "spread")
            for h in FORWARD_HORIZONS:
                med = exp[str(h)][1]
                assert (part["median"][h] is None and med is None) or part["median"][h] == pytest.approx(med, rel=1e-9)
    small = result.summaries[0]
    assert small.require == 4 and min(small.forward_by_met) >= 4  # require: no firing with fewer met


def test_backtest_report_shows_rules_and_the_split(shipped, tmp_path, capsys):
    from ratiowatch.cli import main
    assert main(["backtest", "--data", str(HISTORY), "--out", str(tmp_path), "--no-charts"]) == 0
    text = capsys.readouterr().out
    assert "QQQ/SPY vs its 252-session high >= +0.00%" in text
    assert "by confirmations met at firing (require 4)" in text
    assert "confirmation 'Credit at a 1-year low': HYG vs its 252-session low <= +0.00%" in text
    summary = (tmp_path / "summary.json").read_text()
    assert '"forward_by_met"' in summary and '"rules"' in summary


# --------------------------------------------------------------------------- words everywhere

def _trigger_event(result, scenario, kind="fired"):
    return next(e for e in reversed(result.events) if e["scenario"] == scenario and e["rule"] == "trigger"
                and e["kind"] == kind)


def test_notifications_say_which_transform_fired_and_carry_the_record(shipped):
    cfg, _, _, result = shipped
    records = track_records(cfg, result)
    high = _trigger_event(result, "tech-new-high")
    n = Notice(high, FIRING, cfg.scenario("tech-new-high"))
    text = render_text([n], track_records=records)
    assert f"QQQ/SPY vs its 252-session high is {high['value'] * 100:+.2f}%: crossed above the trigger +0.00%" in text
    rec = records["tech-new-high"]
    assert f"Track record: fired {rec['fired']} times since {rec['first']}, last on {rec['last_fired']}." in text
    assert "After firing, QQQ/SPY: median 21 sessions" in text and "After firing, QQQ:" in text
    assert "Tech above its average vs utilities: XLK/XLU vs its 200-session average" in text
    assert "Track record" in render_slack([n], track_records=records)
    assert "Track record" in render_email([n], track_records=records)[1]
    assert "Track record" not in render_text([n])  # no history, no record
    assert "Track record" not in render_text([Notice(_trigger_event(result, "tech-new-high", "rearmed"), RESOLVED,
                                                     cfg.scenario("tech-new-high"))], track_records=records)
    streak = _trigger_event(result, "small-caps-streak")
    text = render_text([Notice(streak, FIRING, cfg.scenario("small-caps-streak"))])
    assert f"IWM/SPY streak is {int(streak['value'])} sessions up: crossed above the trigger 6 (re-arms at 0)" in text
    ma = _trigger_event(result, "curve-above-average")
    push = render("push", [Notice(ma, FIRING, cfg.scenario("curve-above-average"))]).body
    assert push.startswith(f"DGS10-DGS2 vs its 50-session average {ma['value']:+,.2f} pp: crossed above the trigger +0.15 pp")


async def test_service_passes_the_track_record_to_messages(shipped, tmp_path):
    cfg, _, _, result = shipped
    out = io.StringIO()

    async def publish(topic, key, value):
        pass

    records = track_records(cfg, result)
    svc = NotificationService(cfg, publish, store_path=tmp_path / "n.sqlite", out=out, track_records=records)
    await svc.start()
    try:
        await svc.handle(_trigger_event(result, "small-caps-outperform"))
        assert await svc.drain(timeout=30)
    finally:
        await svc.stop()
    assert f"Track record: fired {records['small-caps-outperform']['fired']} times" in out.getvalue()


def test_status_shows_distance_in_the_rules_terms_and_the_record(shipped):
    cfg, prices, _, result = shipped
    eng, states = ShardEngine(cfg.scenarios, cfg.settings), {}
    history = load_history(HISTORY, cfg.symbols)
    for _, ticks in daily_ticks(history, cfg.settings.session_timezone):
        eng.apply(states, ticks[0].ts_ms, ticks)
    records = track_records(cfg, result)
    eng.set_track_records(records)
    st = eng.engines["tech-new-high"].status(states["tech-new-high"])
    assert st["track_record"] == records["tech-new-high"]
    # The distance from the CSVs: the ratio now against the highest of the 252 closes before.
    dates = sorted(set(prices["QQQ"]) | set(prices["SPY"]))
    last, ratio = {}, []
    for d in dates:
        last.update({s: prices[s][d] for s in ("QQQ", "SPY") if d in prices[s]})
        if len(last) == 2:
            ratio.append(last["QQQ"] / last["SPY"])
    m = ratio[-1] / max(ratio[-253:-1]) - 1
    side = "below" if m < 0 else "above"
    assert st["trigger"]["distance_text"].startswith(f"{abs(m) * 100:.1f}% {side} its 252-session high, fires at +0.00%")
    streak = eng.engines["small-caps-streak"].status(states["small-caps-streak"])["trigger"]
    assert streak["transform"] == "streak"
    assert streak["distance_text"].endswith("fires at 6") or "(fired; re-arms below 0)" in streak["distance_text"]
    small = eng.engines["small-caps-outperform"].status(states["small-caps-outperform"])
    assert small["require"] == 4 and 0 <= small["met"] <= 7
    assert all("reading" in c for c in small["confirmations"])
    eng.set_track_records(None)
    assert eng.engines["tech-new-high"].status(states["tech-new-high"])["track_record"] is None
