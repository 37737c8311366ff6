"""Rendering per medium and the chart, on events the real engine finds in the real history.
The numbers shown are checked against an independent polars computation from the CSV files."""

from __future__ import annotations

import html.parser
import json
import re
import struct
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from ratiowatch.agents.engine import ScenarioEngine
from ratiowatch.config import load_config, parse_config
from ratiowatch.notifiers.chart import chart_png, history_from_folder, metric_series
from ratiowatch.notifiers.facts import fmt_value
from ratiowatch.notifiers.render import render, render_email, render_json, render_push, render_slack, render_text
from ratiowatch.notifiers.route import FIRING, RESOLVED, Notice
from ratiowatch.streams.history import daily_ticks, load_history

HISTORY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "history"
TZ = "America/New_York"


@pytest.fixture(scope="module")
def config():
    return load_config()


def trigger_events(config, scenario_id):
    """The trigger events the engine finds for one scenario over the whole history."""
    sc = config.scenario(scenario_id)
    eng = ScenarioEngine(sc, config.settings)
    st = eng.new_state()
    out = []
    for _d, ticks in daily_ticks(load_history(HISTORY, sc.symbols), TZ):
        out += [e for e in eng.apply(st, ticks[0].ts_ms, ticks) if e["rule"] == "trigger"]
    return out


@pytest.fixture(scope="module")
def small_caps(config):
    evs = trigger_events(config, "small-caps-outperform")
    assert len(evs) > 10
    return evs


def series_closes(series: str) -> pl.DataFrame:
    """Independent of the code under test: date, value of a series with each leg forward-filled."""
    if "/" in series or "-" in series:
        op = "/" if "/" in series else "-"
        a, b = series.split(op)
        fa = pl.read_csv(HISTORY / f"{a}.csv", try_parse_dates=True).rename({"close": "a"})
        fb = pl.read_csv(HISTORY / f"{b}.csv", try_parse_dates=True).rename({"close": "b"})
        df = fa.join(fb, on="date", how="full", coalesce=True).sort("date").fill_null(strategy="forward").drop_nulls()
        expr = pl.col("a") / pl.col("b") if op == "/" else pl.col("a") - pl.col("b")
        return df.select("date", expr.alias("v"))
    return pl.read_csv(HISTORY / f"{series}.csv", try_parse_dates=True).rename({"close": "v"})


def change_at(series: str, day, lookback: int | None) -> float:
    df = series_closes(series).filter(pl.col("date") <= day)
    v = df["v"].to_list()
    if lookback is None:
        return v[-1]
    return v[-1] - v[-1 - lookback] if "-" in series else v[-1] / v[-1 - lookback] - 1


def session_day(ev):
    return datetime.fromtimestamp(ev["ts_ms"] / 1000, ZoneInfo(TZ)).date()


def numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"[+-]?\d[\d,]*\.\d+", text)]


# ------------------------------------------------------------------ numbers

def test_number_formats_per_series_kind():
    assert fmt_value(0.10423, "IWM/SPY", 63) == "+10.42%"
    assert fmt_value(-0.05, "HYG", 21) == "-5.00%"        # a level's change is relative
    assert fmt_value(0.35, "DGS10-DGS2", 63) == "+0.35 pp"  # a spread's change is a difference, in points
    assert fmt_value(-0.05, "DGS10-DGS2", None) == "-0.05"  # a level rule shows the value
    assert fmt_value(99.8, "DXY", None) == "99.80"
    assert fmt_value(None, "DXY", None) == "n/a"


# ------------------------------------------------------------------ Slack, from real history

def test_slack_message_numbers_match_an_independent_computation(config, small_caps):
    sc = config.scenario("small-caps-outperform")
    ev = next(e for e in reversed(small_caps) if e["kind"] == "fired")
    day = session_day(ev)
    text = render_slack([Notice(ev, FIRING, sc)], TZ)
    lines = text.splitlines()
    assert lines[0] == ":rotating_light: *Small caps outperform large caps*"
    # the reading and its trigger
    value, threshold, rearm = numbers(lines[1])[:3]
    assert value == pytest.approx(change_at("IWM/SPY", day, 63) * 100, abs=0.006)
    assert (threshold, rearm) == (10.0, 8.0) and "crossed above the trigger" in lines[1]
    assert day.isoformat() in lines[1]
    # 1/3/6/12-month readings
    readings = next(x for x in lines if x.startswith("*Readings*"))
    assert [lbl in readings for lbl in ("1 month", "3 months", "6 months", "12 months")] == [True] * 4
    got = numbers(readings)
    want = [change_at("IWM/SPY", day, w) * 100 for w in (21, 63, 126, 252)]
    assert got == pytest.approx(want, abs=0.006)
    # confirmations: met or not, recomputed from the CSVs
    conf_lines = [x for x in lines if x.startswith("• ")]
    assert len(conf_lines) == len(sc.confirmations) == 7
    met = 0
    for rule, line in zip(sc.confirmations, conf_lines):
        m = change_at(rule.series.name, day, rule.lookback)
        ok = m >= rule.threshold if rule.direction == "up" else m <= rule.threshold
        met += ok
        assert line.startswith(f"• {':white_check_mark:' if ok else ':x:'} {rule.name}:"), line
        shown = numbers(line)[0]
        scale = 100 if rule.lookback is not None and rule.series.kind != "spread" else 1
        assert shown == pytest.approx(m * scale, abs=0.006), line
    assert f"*Confirmations*: {met} of 7 met" in text
    # the plain-words summary, escaped for mrkdwn
    assert "> Small caps (IWM) beat the S&amp;P 500 (SPY)" in text


def test_spread_and_level_rules_render_plain_numbers(config):
    evs = trigger_events(config, "curve-uninverts")
    ev = next(e for e in reversed(evs) if e["kind"] == "fired")
    sc = config.scenario("curve-uninverts")
    text = render_slack([Notice(ev, FIRING, sc)], TZ)
    head = text.splitlines()[1]
    assert "%" not in head and f"*{ev['value']:,.2f}*" in head
    assert numbers(head)[0] == pytest.approx(change_at("DGS10-DGS2", session_day(ev), None), abs=0.006)
    readings = next(x for x in text.splitlines() if x.startswith("*Readings*"))
    assert "%" not in readings  # a spread's changes are differences, in percentage points of yield
    got = numbers(readings)
    want = [change_at("DGS10-DGS2", session_day(ev), w) for w in (21, 63, 126, 252)]
    assert got == pytest.approx(want, abs=0.006)


# ------------------------------------------------------------------ escaping

HOSTILE = parse_config({"scenarios": [{
    "id": "hostile", "title": "R&D <b>leads</b>\nBcc: x@evil.example",
    "description": "<script>alert(1)</script> & <@U123> <!channel>",
    "trigger": {"series": "IWM/SPY", "lookback": 63, "above": 0.1, "rearm": 0.08},
    "confirmations": [{"label": "<http://evil.example|click> & co", "series": "RSP/SPY", "lookback": 63,
                       "above": 0.0}],
}]})


def hostile_event(kind="fired", eid="b" * 32):
    sc = HOSTILE.scenarios[0]
    return {"schema_version": 1, "event_id": eid, "scenario": sc.id, "title": sc.title, "rule": "trigger",
            "kind": kind, "series": "IWM/SPY", "direction": "up" if kind == "fired" else "down",
            "at": "2024-07-16T20:00:00Z", "ts_ms": 1721160000000, "value": 0.1042 if kind == "fired" else 0.079,
            "threshold": 0.1 if kind == "fired" else 0.08, "lookback": 63, "series_value": 0.35,
            "description": "IWM/SPY 63-session change >= +10.00%",
            "windows": {"21": 0.05, "63": 0.1042, "126": 0.03, "252": None},
            "confirmations": [{"label": sc.confirmations[0].name, "series": "RSP/SPY", "met": False,
                               "value": -0.01, "threshold": 0.0, "direction": "up", "lookback": 63}]}


def test_slack_escapes_data_so_it_cannot_mention_link_or_format():
    text = render_slack([Notice(hostile_event(), FIRING, HOSTILE.scenarios[0])], TZ)
    for raw in ("<script>", "<@U123>", "<!channel>", "<http://", "<b>", " & "):
        assert raw not in text, raw
    assert "R&amp;D &lt;b&gt;leads&lt;/b&gt; Bcc: x@evil.example" in text
    assert "&lt;@U123&gt;" in text and "&lt;http://evil.example|click&gt; &amp; co" in text
    assert "12 months *n/a*" in text
    # for apprise's slack:// plugin, which escapes by itself, the same text unescaped
    raw = render_slack([Notice(hostile_event(), FIRING, HOSTILE.scenarios[0])], TZ, escape=False)
    escaped_by_apprise = raw.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # the only difference: the quote marker, which Slack reads as a quote in either spelling
    assert "<script>" in raw and escaped_by_apprise.replace("\n&gt; ", "\n> ") == text


class _Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.chunks = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.chunks.append(data)


def test_email_escapes_html_and_keeps_the_subject_on_one_line():
    subject, body = render_email([Notice(hostile_event(), FIRING, HOSTILE.scenarios[0])], TZ)
    assert "\n" not in subject and subject.startswith("R&D <b>leads</b> Bcc: x@evil.example: IWM/SPY 3-month change +10.42%")
    p = _Text()
    p.feed(body)
    assert "script" not in p.tags and "b" in p.tags  # our own <b>, none from the data
    text = "".join(p.chunks)
    assert "<script>alert(1)</script> & <@U123> <!channel>" in text  # shown literally
    assert "R&D <b>leads</b> Bcc: x@evil.example" in text
    assert "&#10008; not met" in body and "needs ≥ +0.00%" in text


def test_push_is_one_line_and_json_carries_the_events():
    n = Notice(hostile_event(), FIRING, HOSTILE.scenarios[0])
    title, line = render_push([n], TZ)
    assert "\n" not in title + line
    assert line == "IWM/SPY 3-month change +10.42%: crossed above the trigger +10.00% · 0/1 confirmations"
    doc = json.loads(render_json([n], TZ))
    assert doc["status"] == "firing" and doc["events"][0]["event_id"] == "b" * 32 and doc["summary"] == line


def test_resolved_and_grouped_messages():
    sc = HOSTILE.scenarios[0]
    r = Notice(hostile_event("rearmed"), RESOLVED, sc)
    text = render_text([r], TZ)
    assert text.startswith("Resolved: R&D <b>leads</b> Bcc: x@evil.example\n")
    assert "fell back below the re-arm level +8.00%" in text and "Confirmations" not in text
    many = [Notice(hostile_event(eid=f"{i:032x}"), FIRING, sc) for i in range(12)]
    slack = render_slack(many, TZ)
    assert "(12 updates)" in slack.splitlines()[0] and "_…and 2 more_" in slack
    assert slack.count("*Readings*") == 10
    assert render_push(many, TZ)[1].endswith("(+11 more)")
    m = render("email", many, TZ)
    assert m.wants_chart and m.body_format == "html" and m.title.endswith("(12 updates)")


# ------------------------------------------------------------------ chart

@pytest.mark.parametrize("series, lookback", [("IWM/SPY", 63), ("DGS10-DGS2", 63), ("HYG", 21), ("DXY", None)])
def test_chart_metric_matches_polars(series, lookback):
    df = series_closes(series).tail(600)
    if lookback is None:
        want = df["v"].to_list()
    elif "-" in series:
        want = (df["v"] - df["v"].shift(lookback)).to_list()
    else:
        want = (df["v"] / df["v"].shift(lookback) - 1).to_list()
    kind = "spread" if "-" in series else "ratio" if "/" in series else "level"
    got = metric_series(df["v"].to_list(), kind, lookback)
    assert len(got) == len(want) == 600
    assert [g is None for g in got] == [w is None for w in want]
    assert [g for g in got if g is not None] == pytest.approx([w for w in want if w is not None], rel=1e-12)


def test_relative_change_from_zero_or_below_is_undefined():
    assert metric_series([-0.5, 0.2, 0.0, 0.4], "level", 1) == [None, None, pytest.approx(-1.0), None]
    assert metric_series([-0.5, 0.2], "spread", 1) == [None, pytest.approx(0.7)]


def test_chart_from_real_history_ends_at_the_crossing(config, small_caps):
    sc = config.scenario("small-caps-outperform")
    ev = next(e for e in reversed(small_caps) if e["kind"] == "fired")
    dates, values = history_from_folder(HISTORY, TZ)(ev)
    assert dates[-1] == session_day(ev) and len(dates) == 252 + 63
    metric = metric_series(values, "ratio", 63)
    assert metric[-1] == pytest.approx(ev["value"], rel=1e-9)  # the engine's value at the crossing
    png = chart_png(Notice(ev, FIRING, sc), dates, values)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1000, 500)

