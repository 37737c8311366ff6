"""The backtest's outputs on the real history: forward returns, episodes, report, files, JSON contract.

Forward returns and episode lengths are recomputed here from the CSVs with plain Python (csv,
bisect), not from the backtest's frames. The event semantics themselves are proven in
tests/test_semantics.py.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import statistics
import struct
from datetime import date
from pathlib import Path

import jsonschema
import orjson
import pytest

from ratiowatch.agents.engine import ShardEngine
from ratiowatch.agents.events import canonical_order, load_schema
from ratiowatch.backtest import FORWARD_HORIZONS, run_backtest
from ratiowatch.cli import main
from ratiowatch.config import load_config
from ratiowatch.streams.history import daily_ticks, load_history

HISTORY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "history"


@pytest.fixture(scope="module")
def shipped():
    cfg = load_config()
    history = load_history(HISTORY, cfg.symbols)
    prices = {}
    for sym in cfg.symbols:
        with open(HISTORY / f"{sym}.csv", newline="") as f:
            prices[sym] = [(date.fromisoformat(r["date"]), float(r["close"])) for r in csv.DictReader(f)]
    return cfg, history, prices, run_backtest(cfg, history)


def _series(spec, prices) -> tuple[list[date], list[float]]:
    """The series' sessions: every date one of its legs has a row, legs carried forward."""
    by = {leg: dict(prices[leg]) for leg in spec.legs}
    last, dates, values = {}, [], []
    for d in sorted({d for leg in spec.legs for d in by[leg]}):
        last.update({leg: by[leg][d] for leg in spec.legs if d in by[leg]})
        if len(last) == len(spec.legs):
            a = last[spec.legs[0]]
            b = last[spec.legs[1]] if len(spec.legs) > 1 else None
            dates.append(d)
            values.append(a / b if spec.kind == "ratio" else a - b if spec.kind == "spread" else a)
    return dates, values


def _fwd(dates, values, d, h, diff):
    """Change from the last session at or before d to the session h later; None past the data."""
    i = bisect.bisect_right(dates, d) - 1
    if i < 0 or i + h >= len(values):
        return None
    return values[i + h] - values[i] if diff else values[i + h] / values[i] - 1.0


def _close(a, b):
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12,
                                                                                           abs_tol=1e-12))


def test_forward_returns_of_series_and_legs(shipped):
    cfg, _, prices, res = shipped
    for sc in cfg.scenarios:
        spec = sc.trigger.series
        sdates, svalues = _series(spec, prices)
        legs = {leg: ([d for d, _ in prices[leg]], [p for _, p in prices[leg]]) for leg in spec.legs}
        rows = res.table.filter(res.table["scenario"] == sc.id).to_dicts()
        assert len(rows) == sum(1 for e in res.events if e["scenario"] == sc.id)
        for r in rows:
            for h in FORWARD_HORIZONS:
                assert _close(r[f"fwd_{h}"], _fwd(sdates, svalues, r["date"], h, spec.kind == "spread")), (sc.id, r, h)
                for k, leg in enumerate(spec.legs, 1):
                    assert r[f"leg{k}"] == leg
                    got = r[f"leg{k}_fwd_{h}"]
                    assert _close(got, _fwd(*legs[leg], r["date"], h, spec.kind == "spread")), (sc.id, r, leg, h)
            if len(spec.legs) == 1:
                assert r["leg2"] is None and r["leg2_fwd_21"] is None
    # The end of the data: the 2026-02-19 firing has 1 and 3 months of future, not 6 or 12.
    last = res.table.filter((res.table["scenario"] == "small-caps-outperform") & (res.table["rule"] == "trigger")
                            & (res.table["date"] == date(2026, 2, 19))).to_dicts()[0]
    assert last["fwd_21"] is not None and last["fwd_63"] is not None
    assert last["fwd_126"] is None and last["fwd_252"] is None


def test_summaries_count_episodes_and_medians(shipped):
    cfg, _, prices, res = shipped
    for sc, s in zip(cfg.scenarios, res.summaries):
        trig = [e for e in res.events if e["scenario"] == sc.id and e["rule"] == "trigger"]
        fired = [date.fromisoformat(e["at"][:10]) for e in trig if e["kind"] == "fired"]
        rearmed = [date.fromisoformat(e["at"][:10]) for e in trig if e["kind"] == "rearmed"]
        assert (s.fired, s.rearmed) == (len(fired), len(rearmed))
        sdates, svalues = _series(sc.trigger.series, prices)
        # Events alternate fired/rearmed, starting with fired (a rule starts armed or must re-arm first).
        expected = []
        for f in fired:
            r = next((x for x in rearmed if x > f), None)
            end = r if r is not None else sdates[-1]
            expected.append((f, r, sdates.index(end) - sdates.index(f)))
        assert [(e.fired, e.rearmed, e.sessions) for e in s.episodes] == expected
        closed = [n for _, r, n in expected if r is not None]
        assert s.median_episode_sessions == (statistics.median(closed) if closed else None)
        for h in FORWARD_HORIZONS:
            vals = [v for v in (_fwd(sdates, svalues, f, h, sc.trigger.series.kind == "spread") for f in fired)
                    if v is not None]
            assert s.forward_n[h] == len(vals)
            assert _close(s.forward_median[h], statistics.median(vals) if vals else None)
    byid = {s.scenario: s for s in res.summaries}
    # The curve un-inverted in Aug 2024 and has not re-inverted by the end of the data: an open episode.
    open_ep = byid["curve-uninverts"].episodes[-1]
    assert open_ep.rearmed is None and byid["curve-uninverts"].armed is False


def test_backtest_equals_streaming_engine_on_shipped_config(shipped):
    cfg, history, _, res = shipped
    eng, states, events = ShardEngine(cfg.scenarios, cfg.settings), {}, []
    for _, ticks in daily_ticks(history, cfg.settings.session_timezone):
        events.extend(eng.apply(states, ticks[0].ts_ms, ticks)[0])
    events = canonical_order(events, cfg)
    # Byte for byte, as a replay through the streaming path will be compared.
    assert [orjson.dumps(e) for e in events] == [orjson.dumps(e) for e in res.events]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_cli_report_files_and_charts(shipped, tmp_path, capsys):
    cfg, _, _, res = shipped
    out = tmp_path / "bt"
    assert main(["backtest", "--data", str(HISTORY), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for sc in cfg.scenarios:
        assert f"== {sc.id}: {sc.title}" in text
        assert _png_size((out / f"{sc.id}.png").read_bytes()) == (1000, 500)
    assert "2020-11-23  fired" in text  # a small-caps-outperform firing, with its forward changes
    assert "open since 2024-08-27" in text
    with open(out / "events.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(res.events)
    summary = json.loads((out / "summary.json").read_text())
    assert [s["scenario"] for s in summary] == [sc.id for sc in cfg.scenarios]
    assert summary[0]["fired"] == res.summaries[0].fired


def test_cli_json_is_the_events_contract(shipped, tmp_path, capsys):
    _, _, _, res = shipped
    assert main(["backtest", "--data", str(HISTORY), "--out", str(tmp_path), "--json", "--no-charts"]) == 0
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert lines == [orjson.dumps(e).decode() for e in res.as_published()]
    assert all(orjson.loads(line)["origin"] == "replay" for line in lines)
    validator = jsonschema.Draft202012Validator(load_schema())
    for line in lines:
        validator.validate(json.loads(line))
    assert f"{len(lines)} events" in cap.err  # the note goes to stderr, stdout stays pure JSON lines
    assert not list(tmp_path.glob("*.png"))
