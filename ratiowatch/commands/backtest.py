"""``ratiowatch backtest``: every scenario over a folder of daily history, in one vectorized pass.

Prints a report per scenario (or, with ``--json``, the events exactly as the ``events`` topic
carries them, one per line) and writes to ``--out``: ``events.csv`` (every event with forward
changes), ``summary.json`` and one PNG chart per scenario.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from datetime import date
from pathlib import Path

import orjson

from ratiowatch.backtest import run_backtest
from ratiowatch.backtest.report import format_report, scenario_chart_png
from ratiowatch.config import load_config
from ratiowatch.streams.history import available_symbols, load_history

from ._common import add_config, add_history

__all__ = ["NAME", "HELP", "add_arguments", "run"]

NAME = "backtest"
HELP = "run the scenarios over daily history: events, forward returns, episodes, charts"
DESCRIPTION = ("Run every scenario over daily history (the same semantics as the streaming engine, computed "
               "in one vectorized pass). Prints a report, or with --json one events-topic record per line; "
               "writes events.csv, summary.json and a chart per scenario to --out.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config(p)
    add_history(p, "--data", required=True)
    p.add_argument("--json", action="store_true",
                   help="print the events as JSON lines, field for field the records of the events topic")
    p.add_argument("--out", metavar="DIR", default="backtest-out",
                   help="folder for events.csv, summary.json and the charts (default: ./backtest-out)")
    p.add_argument("--no-charts", action="store_true", help="skip the PNG charts (faster)")


def _summary_json(summaries) -> bytes:
    def default(o):
        if isinstance(o, date):
            return o.isoformat()
        raise TypeError
    # orjson wants string keys: the horizon and met-count dicts are keyed by int.
    return orjson.dumps(_str_keys([dataclasses.asdict(s) for s in summaries]), default=default,
                        option=orjson.OPT_INDENT_2)


def _str_keys(o):
    if isinstance(o, dict):
        return {str(k): _str_keys(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_str_keys(v) for v in o]
    return o


def run(args: argparse.Namespace) -> int:
    # Symbols first, so a series naming a symbol without a CSV fails at load with file, scenario and key.
    # Channel secrets are not required: a backtest never notifies (unset channels load disabled).
    cfg = load_config(args.config, known_symbols=available_symbols(args.data), require_channels=False)
    result = run_backtest(cfg, load_history(args.data, cfg.symbols, cfg.settings.signed_symbols))

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        result.table.write_csv(out / "events.csv")
        (out / "summary.json").write_bytes(_summary_json(result.summaries))
        if not args.no_charts:
            for sc in cfg.scenarios:
                (out / f"{sc.id}.png").write_bytes(scenario_chart_png(result, sc))
    except OSError as e:
        print(f"ratiowatch: cannot write to {out}: {e}", file=sys.stderr)
        return 2

    try:
        if args.json:
            for ev in result.as_published():
                sys.stdout.write(orjson.dumps(ev).decode() + "\n")
            print(f"{len(result.events)} events; wrote {out}/", file=sys.stderr)
        else:
            print(format_report(cfg, result))
            print(f"{len(result.events)} events; wrote {out}/events.csv, summary.json"
                  + ("" if args.no_charts else " and a chart per scenario"))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error. Point stdout at devnull so the
        # interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
