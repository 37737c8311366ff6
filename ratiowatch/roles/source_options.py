"""The ``source`` role's options: the command-line flags (``--feed``, ``--poll``, the simulated
market's), checked against the config and read into :class:`SourceOptions`. A bad flag prints
what is wrong and exits with code 2. Documentation: docs/sources.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ratiowatch.streams.feed import redact_url
from ratiowatch.streams.feed_formats import FORMATS
from ratiowatch.streams.sources.poller import DEFAULT_URLS, Series, series_from_spec

__all__ = ["FeedSpec", "SourceOptions", "add_source_arguments", "source_options_from_args", "VENDOR_FORMATS",
           "FEED_FORMATS"]

VENDOR_FORMATS = ("alpaca", "finnhub", "coinbase")
FEED_FORMATS = tuple(sorted(FORMATS)) + VENDOR_FORMATS
# A vendor named without a URL connects here (or to RATIOWATCH_<VENDOR>_URL: a mirror, a test server).
VENDOR_URLS = {"alpaca": "wss://stream.data.alpaca.markets/v2/iex", "finnhub": "wss://ws.finnhub.io",
               "coinbase": "wss://ws-feed.exchange.coinbase.com"}


@dataclass(frozen=True)
class FeedSpec:
    fmt: str
    url: str = field(repr=False)                 # may carry a key (finnhub ?token=): never printed
    symbols: tuple[str, ...]
    subscribe: Any = None                         # plain/polygon subscribe template
    secrets: tuple[str, ...] = field(default=(), repr=False)   # alpaca (key, secret)

    @property
    def label(self) -> str:
        return f"feed:{self.fmt}:{redact_url(self.url)}"


@dataclass(frozen=True)
class SourceOptions:
    feeds: tuple[FeedSpec, ...] = ()
    polls: tuple[Series, ...] = ()
    poll_interval_s: float = 3600.0
    poll_since: date | None = None               # None: 10 days back, or the day after the history
    fred_url: str = DEFAULT_URLS["fred"]
    stooq_url: str = DEFAULT_URLS["stooq"]
    no_sim: bool = False
    sim_rate: float = 40.0
    seed: int = 7
    always_open: frozenset[str] = frozenset()
    always_open_tz: str = "UTC"

    @property
    def sim(self) -> bool:
        return not self.feeds and not self.polls and not self.no_sim


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tick sources (default: the simulated market)")
    g.add_argument("--feed", action="append", default=[], metavar="[FORMAT:]URL",
                   help="a websocket feed, repeatable: FORMAT:ws(s)://... with FORMAT one of "
                        f"{', '.join(FEED_FORMATS)}; a bare URL uses --feed-format; a bare vendor name "
                        "(alpaca) uses env RATIOWATCH_<VENDOR>_URL or the vendor's URL. "
                        "Default: env RATIOWATCH_FEED (space-separated)")
    g.add_argument("--feed-format", default="plain", help="format of bare --feed URLs (default plain)")
    g.add_argument("--feed-subscribe", default=None, metavar="JSON",
                   help="subscribe template for plain/polygon feeds, {symbols} is replaced")
    g.add_argument("--feed-symbols", action="append", default=[], metavar="FORMAT=SYM,SYM",
                   help="the symbols the FORMAT feed subscribes to (default: the config's symbols that "
                        "no poll and no other --feed-symbols covers)")
    g.add_argument("--poll", action="append", default=[], metavar="SOURCE:SERIES,...",
                   help="poll daily series, repeatable: fred:DGS10,DGS2 or stooq:IWM,SPY (SYMBOL=ID maps "
                        "a vendor id to a symbol, e.g. stooq:IWM=iwm.us)")
    g.add_argument("--poll-interval", type=float, default=3600.0, metavar="SECONDS",
                   help="seconds between polls (default 3600)")
    g.add_argument("--poll-since", default=None, metavar="YYYY-MM-DD",
                   help="first date the first poll sends (default: 10 days back, or the day after --history)")
    g.add_argument("--fred-url", default=os.environ.get("RATIOWATCH_FRED_URL") or DEFAULT_URLS["fred"],
                   help="FRED base URL (env RATIOWATCH_FRED_URL; default %(default)s)")
    g.add_argument("--stooq-url", default=os.environ.get("RATIOWATCH_STOOQ_URL") or DEFAULT_URLS["stooq"],
                   help="Stooq base URL (env RATIOWATCH_STOOQ_URL; default %(default)s)")
    g.add_argument("--always-open", default="", metavar="SYM,SYM",
                   help="symbols of 24/7 markets (crypto): a session is a day in --always-open-tz")
    g.add_argument("--always-open-tz", default="UTC", help="the day of 24/7 symbols (default UTC)")
    g.add_argument("--no-sim", action="store_true", help="no simulated market")
    g.add_argument("--sim-rate", type=float, default=40.0, metavar="STEPS_PER_S",
                   help="simulated prints per second, each a batch of every symbol (default 40)")
    g.add_argument("--seed", type=int, default=7, help="simulated market seed (default 7)")


def _fail(msg: str) -> None:
    print(f"ratiowatch: {msg}", file=sys.stderr)
    raise SystemExit(2)


def _split_feed(spec: str, default_fmt: str) -> tuple[str, str]:
    if spec.startswith(("ws://", "wss://")):
        return default_fmt, spec
    if spec.startswith(("http://", "https://")):
        _fail(f"--feed must be a ws:// or wss:// URL (optionally FORMAT:URL), got {redact_url(spec)!r}")
    fmt, colon, url = spec.partition(":")
    if not colon:
        if fmt in VENDOR_FORMATS:
            return fmt, os.environ.get(f"RATIOWATCH_{fmt.upper()}_URL") or VENDOR_URLS[fmt]
        _fail(f"--feed must be FORMAT:ws(s)://..., a ws(s):// URL or a vendor name ({', '.join(VENDOR_FORMATS)}), "
              f"got {redact_url(spec)!r}")
    return fmt, url


def _feed_secrets(fmt: str, url: str) -> tuple[str, tuple[str, ...]]:
    if fmt == "alpaca":
        key, secret = os.environ.get("APCA_API_KEY_ID"), os.environ.get("APCA_API_SECRET_KEY")
        if not key or not secret:
            _fail("--feed alpaca needs APCA_API_KEY_ID and APCA_API_SECRET_KEY in the environment")
        return url, (key, secret)
    if fmt == "finnhub":
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        if "token" not in query:
            token = os.environ.get("FINNHUB_API_KEY")
            if not token:
                _fail("--feed finnhub needs FINNHUB_API_KEY in the environment")
            query["token"] = token
            url = urlunsplit(parts._replace(query=urlencode(query)))
    return url, ()


def source_options_from_args(args: argparse.Namespace, config: Any) -> SourceOptions:
    """Validated :class:`SourceOptions`; a bad flag prints what is wrong and exits with code 2."""
    symbols = set(config.symbols)
    specs = list(args.feed) or os.environ.get("RATIOWATCH_FEED", "").split()
    if args.feed_format not in FEED_FORMATS:
        _fail(f"--feed-format must be one of {', '.join(FEED_FORMATS)}, got {args.feed_format!r}")
    subscribe = None
    if args.feed_subscribe is not None:
        try:
            subscribe = json.loads(args.feed_subscribe)
        except json.JSONDecodeError as e:
            _fail(f"--feed-subscribe is not JSON: {e}")
    polls: list[Series] = []
    for spec in args.poll:
        vendor, colon, rest = spec.partition(":")
        if vendor not in DEFAULT_URLS or not colon or not rest.strip(","):
            _fail(f"--poll must be fred:SERIES[,SERIES] or stooq:SYMBOL[,SYMBOL], got {spec!r}")
        for item in filter(None, (x.strip() for x in rest.split(","))):
            s = series_from_spec(vendor, item)
            if s.symbol not in symbols:
                _fail(f"--poll {spec}: no scenario uses {s.symbol} (symbols: {', '.join(sorted(symbols))})")
            polls.append(s)
    assigned: dict[str, tuple[str, ...]] = {}
    for fs in args.feed_symbols:
        fmt, eq, syms = fs.partition("=")
        if not eq or fmt not in FEED_FORMATS:
            _fail(f"--feed-symbols must be FORMAT=SYM,SYM with FORMAT one of {', '.join(FEED_FORMATS)}, got {fs!r}")
        assigned[fmt] = tuple(s.strip().upper() for s in syms.split(",") if s.strip())
        unused = [s for s in assigned[fmt] if s not in symbols]
        if unused:
            _fail(f"--feed-symbols {fs}: no scenario uses {', '.join(unused)} (symbols: {', '.join(sorted(symbols))})")
    rest_syms = tuple(sorted(symbols - {p.symbol for p in polls} - {s for v in assigned.values() for s in v}))
    feeds = []
    for spec in specs:
        fmt, url = _split_feed(spec, args.feed_format)
        if fmt not in FEED_FORMATS:
            _fail(f"--feed format must be one of {', '.join(FEED_FORMATS)}, got {fmt!r}")
        if not url.startswith(("ws://", "wss://")):
            _fail(f"--feed must be a ws:// or wss:// URL, got {redact_url(url)!r}")
        url, secrets = _feed_secrets(fmt, url)
        syms = assigned.get(fmt, rest_syms)
        if not syms:
            _fail(f"--feed {fmt}: no symbols left to subscribe to (see --feed-symbols)")
        feeds.append(FeedSpec(fmt, url, syms, subscribe if fmt in FORMATS else None, secrets))
    for flag, v in (("--poll-interval", args.poll_interval), ("--sim-rate", args.sim_rate)):
        if not v > 0:
            _fail(f"{flag} must be > 0, got {v!r}")
    since = None
    if args.poll_since:
        try:
            since = date.fromisoformat(args.poll_since)
        except ValueError:
            _fail(f"--poll-since must be YYYY-MM-DD, got {args.poll_since!r}")
    for flag, u in (("--fred-url", args.fred_url), ("--stooq-url", args.stooq_url)):
        if not u.startswith(("http://", "https://")):
            _fail(f"{flag} must be an http:// or https:// URL, got {redact_url(u)!r}")
    try:
        ZoneInfo(args.always_open_tz)
    except (ZoneInfoNotFoundError, ValueError):
        _fail(f"--always-open-tz: unknown time zone {args.always_open_tz!r}")
    return SourceOptions(tuple(feeds), tuple(polls), args.poll_interval, since, args.fred_url, args.stooq_url,
                         bool(args.no_sim), args.sim_rate, args.seed,
                         frozenset(s.strip().upper() for s in args.always_open.split(",") if s.strip()),
                         args.always_open_tz)
