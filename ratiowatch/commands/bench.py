"""``ratiowatch bench``: throughput, latency, memory and scaling of the engine against the bare
consumer and the faust idiom, and the cost of event time (ticks keyed by source against keyed by
symbol), on the embedded broker. See docs/performance.md."""

from __future__ import annotations

import argparse
import sys

import orjson

__all__ = ["NAME", "HELP", "add_arguments", "run"]

NAME = "bench"
HELP = ("benchmark the engine against a bare consumer and the faust idiom (throughput, latency, memory, event time; "
        "--peers: Bytewax and Quix Streams)")
DESCRIPTION = ("Runs, on the embedded broker and the same generated ticks: a bare aiokafka consumer (the limit), "
               "the idiomatic faust agent (the baseline) and ratiowatch's pipeline (the engine), each in a fresh "
               "process; then the engine's tick-to-event latency at a fixed offered rate, its throughput with "
               "10, 1,000 and 10,000 scenarios, and what event time costs: throughput, latency and the "
               "watermark's buffer with the ticks keyed by source and keyed by symbol. Checks that every tick "
               "sent was processed.")


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(x.replace("_", "")) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected counts >= 1, got {text!r}")
    return counts


def _positive(text: str) -> int:
    try:
        n = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {n}")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ratiowatch.bench.run import DEFAULTS

    p.add_argument("--ticks", type=_positive, default=DEFAULTS["ticks"],
                   help=f"ticks per throughput phase (default {DEFAULTS['ticks']:,}; the faust idiom gets at most "
                        f"{DEFAULTS['baseline_ticks']:,}, each scenario-count run half)")
    p.add_argument("--scenarios", type=_counts, default=DEFAULTS["scenarios"], metavar="N,N,...",
                   help="scenario counts for the scaling runs, over 2,000 symbols (default 10,1000,10000)")
    p.add_argument("--latency-seconds", type=float, default=DEFAULTS["latency_seconds"], metavar="S",
                   help=f"length of the latency phase at {DEFAULTS['latency_rate']:,} ticks/s offered "
                        f"(default {DEFAULTS['latency_seconds']:g})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--peers", action="store_true",
                   help="also run Bytewax and Quix Streams on the one-tick-per-record stream, each as a ratio to "
                        "the limit (pip install 'ratiowatch[peers]'; a peer not installed is reported as such)")
    p.add_argument("--peers-python", metavar="PYTHON", default=None,
                   help="the interpreter that runs the peers (default: this one); Quix Streams 3.28.1 needs an "
                        "environment of its own (its confluent-kafka pin is older than ratiowatch's)")
    p.add_argument("--profile", metavar="DIR", default=None,
                   help="profile the engine phases with pyinstrument into DIR (pip install 'ratiowatch[profile]')")


def run(args: argparse.Namespace) -> int:
    from ratiowatch.bench.phase import BenchError
    from ratiowatch.bench.report import format_table
    from ratiowatch.bench.run import run_bench

    if args.latency_seconds <= 0:
        print("ratiowatch bench: --latency-seconds must be > 0", file=sys.stderr)
        return 2
    if args.peers_python and not args.peers:
        print("ratiowatch bench: --peers-python needs --peers", file=sys.stderr)
        return 2
    if args.profile:
        import importlib.util
        import os

        if importlib.util.find_spec("pyinstrument") is None:
            print("ratiowatch bench: --profile needs pyinstrument (pip install 'ratiowatch[profile]')", file=sys.stderr)
            return 2
        os.makedirs(args.profile, exist_ok=True)

    def log(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    try:
        result = run_bench(ticks=args.ticks, scenarios=args.scenarios, latency_seconds=args.latency_seconds,
                           profile_dir=args.profile, peers=args.peers, peers_python=args.peers_python, log=log)
    except BenchError as e:
        print(f"ratiowatch bench: {e}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
    else:
        print(format_table(result))
    return 0
