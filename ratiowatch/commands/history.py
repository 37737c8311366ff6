"""``ratiowatch history fetch``: daily series from FRED or Stooq into SYMBOL.csv files."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import date
from pathlib import Path

NAME = "history"
HELP = "daily history files: `history fetch --source fred|stooq SYMBOL... --to DIR`"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ratiowatch.streams.sources.poller import DEFAULT_URLS

    sub = p.add_subparsers(dest="history_command", metavar="ACTION", required=True)
    f = sub.add_parser("fetch", help="download daily closes into DIR/SYMBOL.csv (date,close); resumable",
                       description="Fetch daily series into DIR/SYMBOL.csv (date,close) for warm start "
                                   "(run --history) and backtests (backtest --data). Appends only dates "
                                   "after a file's last one. See docs/sources.md.")
    f.add_argument("--source", required=True, choices=["fred", "stooq"], help="where the series come from")
    f.add_argument("symbols", nargs="+", metavar="SYMBOL",
                   help="FRED series ids (DGS10) or Stooq symbols (IWM, IWM.US, ^SPX; SYMBOL=ID maps an id)")
    f.add_argument("--to", required=True, metavar="DIR", help="folder of SYMBOL.csv files (created if missing)")
    f.add_argument("--since", default=None, metavar="YYYY-MM-DD", help="first date of a new file (default: all)")
    f.add_argument("--signed", default="", metavar="SYM,SYM",
                   help="series that may be <= 0 (e.g. T10Y2Y); also settings.signed_symbols of --config")
    f.add_argument("--config", default=None, metavar="FILE", help="scenario file whose signed_symbols apply")
    f.add_argument("--fred-url", default=os.environ.get("RATIOWATCH_FRED_URL") or DEFAULT_URLS["fred"],
                   help="FRED base URL (env RATIOWATCH_FRED_URL; default %(default)s)")
    f.add_argument("--stooq-url", default=os.environ.get("RATIOWATCH_STOOQ_URL") or DEFAULT_URLS["stooq"],
                   help="Stooq base URL (env RATIOWATCH_STOOQ_URL; default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from ratiowatch.streams.sources.poller import series_from_spec

    since = None
    if args.since:
        try:
            since = date.fromisoformat(args.since)
        except ValueError:
            print(f"ratiowatch history fetch: --since must be YYYY-MM-DD, got {args.since!r}", file=sys.stderr)
            return 2
    base = args.fred_url if args.source == "fred" else args.stooq_url
    if not base.startswith(("http://", "https://")):
        print(f"ratiowatch history fetch: --{args.source}-url must be an http(s):// URL", file=sys.stderr)
        return 2
    signed = {s.strip().upper() for s in args.signed.split(",") if s.strip()}
    if args.config:
        from ratiowatch.config import load_config

        signed |= load_config(args.config, require_channels=False).settings.signed_symbols
    series = [series_from_spec(args.source, s) for s in args.symbols]
    return asyncio.run(_fetch(series, base, Path(args.to), frozenset(signed), since))


async def _fetch(series: list, base: str, folder: Path, signed: frozenset[str], since: date | None) -> int:
    import aiohttp
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ratiowatch.streams.sources.fetch import HistoryFileError, fetch_into
    from ratiowatch.streams.sources.poller import FetchError

    failed = 0
    console = Console(stderr=True)
    async with aiohttp.ClientSession() as session:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
            task = bar.add_task(f"fetching {len(series)} series", total=len(series))
            for s in series:
                bar.update(task, description=f"{s.symbol:>8}")
                try:
                    r = await fetch_into(session, base, s, folder, signed=signed, since=since)
                except (FetchError, HistoryFileError) as e:
                    failed += 1
                    print(f"{s.symbol}: FAILED: {e}", flush=True)
                else:
                    print(f"{s.symbol}: +{r.appended} rows, through {r.last or 'no data'} -> {folder / (s.symbol + '.csv')}",
                          flush=True)
                bar.advance(task)
    return 1 if failed else 0
