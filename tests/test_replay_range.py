"""`replay --from/--to`: the days before --from warm the scenarios up in process, so a replay of a
range gives exactly the events the full backtest has in that range."""

from __future__ import annotations

from datetime import date

import orjson
import polars as pl
import pytest

from ratiowatch.backtest import run_backtest
from ratiowatch.cli import main
from ratiowatch.config import load_config
from ratiowatch.streams.history import load_history

pytestmark = pytest.mark.broker


def test_a_replayed_range_equals_the_full_backtest_within_it(history_dir, capsys):
    cfg = load_config()
    start, end = date(2020, 1, 1), date(2022, 12, 31)
    full = run_backtest(cfg, load_history(history_dir, cfg.symbols)).as_published()
    expected = [e for e in full if start.isoformat() <= e["at"][:10] <= end.isoformat()]
    assert len(expected) > 50  # the range has crossings to compare, triggers and confirmations
    assert any(e["rule"] == "trigger" for e in expected)

    assert main(["replay", "--data", str(history_dir), "--json", "--from", str(start), "--to", str(end)]) == 0
    out = capsys.readouterr()
    got = [orjson.loads(line) for line in out.out.splitlines()]
    assert got == expected
    days = load_history(history_dir, cfg.symbols).filter(pl.col("date").is_between(start, end))["date"].n_unique()
    assert f"replay: {days} dates," in out.err


def test_a_day_that_is_not_one_exits_2_saying_why(history_dir, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["replay", "--data", str(history_dir), "--from", "2022-13-01"])
    assert raised.value.code == 2
    assert "'2022-13-01' is not a day as YYYY-MM-DD" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["--from", "2022-06-01", "--to", "2022-01-01"], "--to 2022-01-01 is before --from 2022-06-01"),
    (["--from", "2090-01-01"], "has no day from 2090-01-01"),
])
def test_a_bad_range_exits_2_saying_why(history_dir, capsys, argv, needle):
    assert main(["replay", "--data", str(history_dir)] + argv) == 2
    assert needle in capsys.readouterr().err
