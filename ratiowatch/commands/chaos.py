"""``ratiowatch chaos``: the real pipeline under faults, bad input and worker kills, compared with
the batch computation. Exit 0 only when nothing was lost, missing or duplicated (1 otherwise).

The embedded broker, the notification endpoint and the garbage feed live in this process; the
worker is a child process it SIGKILLs and restarts. See docs/faults.md for what is counted how.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import orjson

from ._common import add_config, for_users

NAME = "chaos"
HELP = "run the pipeline under injected faults and bad input; check nothing is lost or repeated"
DESCRIPTION = for_users(__doc__)

__all__ = ["NAME", "HELP", "add_arguments", "run"]


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ratiowatch.chaos.plan import FAULT_KINDS

    add_config(p)
    p.add_argument("--duration", type=_positive, default=300.0, metavar="SECONDS",
                   help="how long ticks are sent and faults injected (default 300; then a drain)")
    p.add_argument("--seed", type=int, default=1, help="seed of the ticks, the garbage and the fault schedule")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="folder of SYMBOL.csv daily closes (default: $RATIOWATCH_HISTORY, else shared/data/history "
                        "beside the repository, ../shared/data/history from its root, wherever the command runs)")
    p.add_argument("--pace", type=_positive, default=12.0, metavar="DATES_PER_S",
                   help="history dates sent per second (default 12; slower when the history is shorter)")
    p.add_argument("--partitions", type=int, default=None,
                   help="engine partitions (default: settings.partitions of --config)")
    p.add_argument("--faults", default=",".join(FAULT_KINDS), metavar="KIND,...",
                   help=f"fault kinds to inject (default all: {', '.join(FAULT_KINDS)})")
    p.add_argument("--drain-timeout", type=_positive, default=None, metavar="SECONDS",
                   help="after the run, how long to wait for the outputs to complete (default: 120 or half "
                        "the duration, whichever is longer)")
    p.add_argument("--workdir", metavar="DIR", default=None, help="keep the worker's data and log here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from ratiowatch.chaos.options import ChaosOptions
    from ratiowatch.chaos.plan import FAULT_KINDS
    from ratiowatch.chaos.report import format_report
    from ratiowatch.chaos.run import run_chaos

    kinds = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown or not kinds:
        print(f"ratiowatch chaos: unknown fault kind {unknown[0] if unknown else '(none)'!r} "
              f"(choose from {', '.join(FAULT_KINDS)})", file=sys.stderr)
        return 2
    if args.partitions is not None and args.partitions < 1:
        print("ratiowatch chaos: --partitions must be >= 1", file=sys.stderr)
        return 2
    if args.verbose == 0:
        # This process's own Kafka clients retry through the faults on purpose; their warnings are noise.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    opts = ChaosOptions(duration_s=args.duration, seed=args.seed, data=args.data, config=args.config, pace=args.pace,
                        partitions=args.partitions, kinds=kinds, drain_timeout_s=args.drain_timeout,
                        workdir=args.workdir)
    report = asyncio.run(run_chaos(opts))
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_report(report))
    return 0 if report["passed"] else 1
