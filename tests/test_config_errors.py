"""A bad scenario file fails at start with exit code 2 and a message naming file, place and problem.

Each fixture in ``fixtures/bad_configs/`` starts with ``# expect: <message>``: the exact text
after ``<file>: `` that ``ratiowatch backtest`` must print. The history is the real one, so a
series naming a symbol without a CSV is caught against the real folder. A channel secret that is
not set is an error only for a command that notifies (a backtest does not need it), so that fixture
runs ``ratiowatch replay --notify``, which fails at the same point, before it starts anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ratiowatch.cli import main

HISTORY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "history"
BAD = Path(__file__).resolve().parent / "fixtures" / "bad_configs"
FIXTURES = sorted(BAD.glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message>'"
    return first[len("# expect: "):]


# Fixtures whose error only a command that notifies gives.
NOTIFYING = {"unset_env"}


def _run(capsys, *argv: str, command: tuple[str, ...] = ("backtest",)) -> tuple[int, str, str]:
    rc = main([*command, *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_fixture_folder_is_complete():
    names = {p.stem for p in FIXTURES}
    # The cases the brief asks for, plus the rest of the folder.
    assert {"unknown_key", "missing_threshold", "above_and_below", "unknown_symbol", "lookback_zero",
            "unknown_channel", "rearm_wrong_side", "duplicate_id", "bad_yaml", "empty"} <= names


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_bad_config_exits_2_with_exact_message(path, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("RATIOWATCH_TEST_SURELY_UNSET_SLACK_URL", raising=False)
    if path.stem in NOTIFYING:
        rc, out, err = _run(capsys, "--config", str(path), "--data", str(HISTORY), command=("replay", "--notify"))
    else:
        rc, out, err = _run(capsys, "--config", str(path), "--data", str(HISTORY), "--out", str(tmp_path / "out"))
    assert rc == 2
    assert err == f"ratiowatch: config error: {path}: {_expected(path)}\n"
    assert out == ""
    assert not (tmp_path / "out").exists()  # failed before doing anything


def test_missing_config_file(capsys, tmp_path):
    missing = tmp_path / "nope.yaml"
    rc, _, err = _run(capsys, "--config", str(missing), "--data", str(HISTORY), "--out", str(tmp_path))
    assert (rc, err) == (2, f"ratiowatch: config error: {missing}: file not found\n")


def test_config_path_is_a_folder(capsys, tmp_path):
    rc, _, err = _run(capsys, "--config", str(tmp_path), "--data", str(HISTORY), "--out", str(tmp_path))
    assert (rc, err) == (2, f"ratiowatch: config error: {tmp_path}: not a file\n")


def test_missing_history_folder(capsys, tmp_path):
    missing = tmp_path / "no-history"
    rc, _, err = _run(capsys, "--data", str(missing), "--out", str(tmp_path))
    assert (rc, err) == (2, f"ratiowatch: config error: {missing}: history folder not found\n")


def test_malformed_history_csv_names_the_file(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for sym in ("IWM", "SPY"):
        (data / f"{sym}.csv").write_text((HISTORY / f"{sym}.csv").read_text())
    (data / "SPY.csv").write_text("date,close\n2024-01-02,470.1\n2024-01-03,-1\n")
    cfg = tmp_path / "one.yaml"
    cfg.write_text("scenarios:\n  - id: one\n    trigger: {series: IWM/SPY, lookback: 2, above: 0.1}\n")
    rc, _, err = _run(capsys, "--config", str(cfg), "--data", str(data), "--out", str(tmp_path / "out"))
    assert (rc, err) == (2, f"ratiowatch: config error: {data / 'SPY.csv'}: 1 rows with a bad date or a "
                            "non-positive close (a series that may go negative belongs in settings.signed_symbols)\n")


def test_data_is_required(capsys):
    with pytest.raises(SystemExit) as e:
        main(["backtest"])
    assert e.value.code == 2
    assert "--data" in capsys.readouterr().err
