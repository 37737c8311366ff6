"""`ratiowatch history fetch` as a user runs it, against a local FRED/Stooq stand-in serving the
real daily history: files that `backtest --data` accepts, resumable, validated."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from source_vendors import VendorHTTP

RW = [str(Path(sys.executable).with_name("ratiowatch"))]

CURVE = """\
settings: {session_timezone: America/New_York}
scenarios:
  - id: curve-uninverts
    title: The 10y-2y curve un-inverts
    trigger: {series: DGS10-DGS2, above: 0.0}
"""


def rows(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as f:
        return [(r["date"], r["close"]) for r in csv.DictReader(f)]


def fetch(server: VendorHTTP, out: Path, *extra: str, source: str = "fred") -> subprocess.CompletedProcess:
    return subprocess.run(RW + ["history", "fetch", "--source", source, f"--{source}-url", server.url, *extra,
                                "--to", str(out)], capture_output=True, text=True, timeout=120)


def test_fred_fetch_writes_what_backtest_accepts_and_a_second_run_appends_nothing(tmp_path, history_dir):
    real = {s: rows(history_dir / f"{s}.csv")[-800:] for s in ("DGS10", "DGS2")}
    with VendorHTTP() as fred:
        for s, r in real.items():
            # FRED marks a day without a value with "."; those rows are left out of the file.
            fred.series[s] = r[:-300] + [(r[-300][0], ".")] + r[-299:-100]
        out = tmp_path / "hist"
        first = fetch(fred, out, "DGS10", "DGS2")
        assert first.returncode == 0, first.stderr
        for s, r in real.items():
            assert rows(out / f"{s}.csv") == r[:-300] + r[-299:-100]
            assert f"{s}: +{len(r) - 101} rows" in first.stdout
        # Later: the vendor has 100 more days; a second run appends only those, a third nothing.
        for s, r in real.items():
            fred.series[s] = r[:-300] + r[-299:]
        second = fetch(fred, out, "DGS10", "DGS2")
        assert second.returncode == 0, second.stderr
        assert "DGS10: +100 rows" in second.stdout and "DGS2: +100 rows" in second.stdout
        assert fred.requests[-1][1]["cosd"] > real["DGS2"][-101][0]     # asked only for the new dates
        third = fetch(fred, out, "DGS10", "DGS2")
        assert "DGS10: +0 rows" in third.stdout and "DGS2: +0 rows" in third.stdout
        for s, r in real.items():
            assert rows(out / f"{s}.csv") == r[:-300] + r[-299:]
    cfg = tmp_path / "curve.yaml"
    cfg.write_text(CURVE)
    bt = subprocess.run(RW + ["backtest", "--config", str(cfg), "--data", str(out), "--json"],
                        capture_output=True, text=True, timeout=120)
    assert bt.returncode == 0, bt.stderr
    docs = [json.loads(line) for line in bt.stdout.splitlines() if line.strip()]
    assert any(d.get("scenario") == "curve-uninverts" and d.get("kind") == "fired" for d in docs), bt.stdout[:2000]


def test_bad_data_is_refused_with_the_reason_and_nothing_is_written(tmp_path):
    with VendorHTTP() as fred:
        fred.series["T10Y2Y"] = [("2026-01-02", "0.65"), ("2026-01-05", "-0.10")]
        fred.series["DGS2"] = [("2026-01-02", "3.47"), ("2026-01-05", "x")]
        out = tmp_path / "h"
        r = fetch(fred, out, "T10Y2Y", "DGS2")
        assert r.returncode == 1
        assert "T10Y2Y: FAILED" in r.stdout and "needs --signed" in r.stdout
        assert "DGS2: FAILED" in r.stdout and "'x' is not a number" in r.stdout
        assert not (out / "T10Y2Y.csv").exists() and not (out / "DGS2.csv").exists()
        ok = fetch(fred, out, "T10Y2Y", "--signed", "T10Y2Y")
        assert ok.returncode == 0 and rows(out / "T10Y2Y.csv") == [("2026-01-02", "0.65"), ("2026-01-05", "-0.1")]
        (out / "DGS10.csv").write_text("date,close\n2026-01-05,4.1\n2026-01-02,4.2\n")
        fred.series["DGS10"] = [("2026-01-06", "4.0")]
        bad = fetch(fred, out, "DGS10")
        assert bad.returncode == 1 and "dates must ascend" in bad.stdout


def test_stooq_fetch_maps_symbols_to_files(tmp_path):
    with VendorHTTP() as stooq:
        stooq.series["iwm.us"] = [("2026-01-02", "250.1"), ("2026-01-05", "251.5")]
        r = fetch(stooq, tmp_path, "IWM", "NOPE", source="stooq")
        assert r.returncode == 1 and "NOPE: FAILED" in r.stdout and "no data" in r.stdout.lower()
        assert rows(tmp_path / "IWM.csv") == [("2026-01-02", "250.1"), ("2026-01-05", "251.5")]
