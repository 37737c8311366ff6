"""The ``source`` role: every configured tick source, concurrently, into ``ticks`` / ``ticks.dlq``.

Sources: websocket feeds (``--feed``, repeatable: plain, polygon, alpaca, finnhub, coinbase),
daily-series pollers (``--poll fred:DGS10,DGS2``, ``--poll stooq:IWM,SPY``, repeatable), and the
simulated market when neither is given (unless ``--no-sim``). ``ratiowatch source`` runs this role
alone over a plain Kafka producer; ``ratiowatch run`` runs it in-process over its faust topics.
How records are keyed: :mod:`ratiowatch.streams.sources.sinks`. Documentation: docs/sources.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ratiowatch.streams.feed import FeedClient, redact_url
from ratiowatch.streams.feed_formats import FORMATS
from ratiowatch.streams.sources.calendar import Calendar
from ratiowatch.streams.sources.poller import DEFAULT_URLS, Poller, Series, series_from_spec
from ratiowatch.streams.sources.sinks import KafkaTickSink, MeteredSink, TickSink

__all__ = ["FeedSpec", "SourceOptions", "add_source_arguments", "source_options_from_args", "run_sources",
           "TickSink", "KafkaTickSink", "MeteredSink", "VENDOR_FORMATS", "FEED_FORMATS", "feed_client",
           "SimStart", "SimStartRefused", "plan_sim_start", "newest_on_ticks"]

log = logging.getLogger(__name__)

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
        import json

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


def _protocol(spec: FeedSpec) -> Any:
    if spec.fmt == "alpaca":
        from ratiowatch.streams.sources.alpaca import AlpacaProtocol

        key, secret = spec.secrets
        return lambda symbols: AlpacaProtocol(symbols, key=key, secret=secret)
    if spec.fmt == "finnhub":
        from ratiowatch.streams.sources.finnhub import FinnhubProtocol

        return FinnhubProtocol
    if spec.fmt == "coinbase":
        from ratiowatch.streams.sources.coinbase import CoinbaseProtocol

        return CoinbaseProtocol
    return None


def feed_client(spec: FeedSpec, config: Any, publish: TickSink, **kw: Any) -> FeedClient:
    """The :class:`FeedClient` of one ``--feed``, publishing into ``publish``."""
    key = spec.label.encode()

    async def ticks(batch: list) -> None:
        await publish.send_ticks(batch, key)

    async def dlq(record: bytes) -> None:
        await publish.send_dlq(record, key)

    proto = _protocol(spec)
    return FeedClient(spec.url, fmt=spec.fmt if proto is None else "plain", symbols=list(spec.symbols),
                      publish_ticks=ticks, publish_dlq=dlq, subscribe=spec.subscribe, protocol=proto,
                      known_symbols=config.symbols, **kw)


async def _run_sim(opts: SourceOptions, config: Any, publish: TickSink, start: date | None,
                   levels: dict[str, float] | None) -> None:
    from ratiowatch.config import warn_unprovided_symbols
    from ratiowatch.streams.simfeed import DEFAULT_SYMBOLS, CalendarEnd, SimMarket

    # A symbol with neither a documented level nor a close in the history is simulated as a
    # generic stock: said at start, naming the file and where the config uses it.
    warn_unprovided_symbols(config, set(DEFAULT_SYMBOLS) | set(levels or {}),
                            "the simulated market's documented levels or the history (it is simulated as a generic stock)")
    # Loading the exchange calendar takes a second (pandas): off the event loop, which the engine
    # of `ratiowatch run` shares.
    sim = await asyncio.to_thread(lambda: SimMarket(tuple(sorted(config.symbols)), seed=opts.seed, levels=levels or {},
                                                    **({"start": start} if start else {})))
    log.info("simulated market: first session %s (NYSE calendar), %d prints a session at %g a second",
             sim.first_session, sim.steps_per_session, opts.sim_rate)
    interval = 1.0 / opts.sim_rate
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        try:
            batch = sim.step()
        except CalendarEnd as e:
            log.warning("%s: it stops", e)
            return
        await publish.send_ticks(batch, b"sim", "simulated")  # streams/origin.py
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - loop.time()))


class SimStartRefused(RuntimeError):
    """The simulated market cannot tell where the state it would join ends, so it does not start
    (it could start in that state's past). The message says why."""


@dataclass(frozen=True)
class SimStart:
    """Where the simulated market starts: its first session, its start levels, and why."""

    start: date
    levels: dict[str, float]
    why: str

    def describe(self) -> str:
        return f"simulated market starts {self.start.isoformat()}: {self.why}"


async def newest_on_ticks(bootstrap: str, *, sec: Any = None, timeout_s: float = 15.0,
                          scan_back: int = 64) -> tuple[int | None, dict[str, tuple[int, float]]]:
    """The newest event time on the ``ticks`` topic (epoch ms; None when the topic holds no
    record) and, per symbol, its newest (ts_ms, price) in the records read: the last record of
    each partition (one tick or a JSON array batch), or, for a partition whose last record holds
    no valid tick, its last ``scan_back`` records. Raises :class:`SimStartRefused` when that
    cannot be read (no broker within ``timeout_s``, no ``ticks`` topic, a partition without a
    valid tick at its end)."""
    from ratiowatch.streams.clients import aio_consumer

    consumer = aio_consumer(bootstrap, client_id="ratiowatch-sim-start", sec=sec, request_timeout_ms=10_000)
    try:
        return await asyncio.wait_for(_read_tails(consumer, scan_back), timeout_s)
    except SimStartRefused:
        raise
    except (asyncio.TimeoutError, TimeoutError):
        raise SimStartRefused(f"could not read the end of `ticks` at {bootstrap} within {timeout_s:g}s") from None
    except Exception as e:  # KafkaConnectionError and other client errors: the broker did not answer
        raise SimStartRefused(f"could not read `ticks` at {bootstrap} ({type(e).__name__}: {e})") from None
    finally:
        try:
            await consumer.stop()
        except Exception:  # never started
            pass


async def _read_tails(consumer: Any, scan_back: int) -> tuple[int | None, dict[str, tuple[int, float]]]:
    from aiokafka import TopicPartition

    from ratiowatch.streams.ticks import parse_ticks
    from ratiowatch.streams.topics import TICKS

    await consumer.start()
    parts = consumer.partitions_for_topic(TICKS)
    if not parts:  # as the web role does (roles/web.py): the client's metadata holds no topic yet
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(TICKS)
    if not parts:
        raise SimStartRefused("the broker has no `ticks` topic, so where the state it holds ends cannot be "
                              "read; create the topics first (`ratiowatch topics --create`, or start an engine)")
    tps = [TopicPartition(TICKS, p) for p in sorted(parts)]
    consumer.assign(tps)
    begin = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    newest: int | None = None
    last: dict[str, tuple[int, float]] = {}

    async def read(starts: dict[Any, int]) -> set[Any]:
        """Read each partition from its start to its end offset; the partitions with a valid tick."""
        nonlocal newest
        for tp in tps:
            consumer.seek(tp, starts.get(tp, end[tp]))
        found: set[Any] = set()
        todo = dict(starts)
        while todo:
            got = await consumer.getmany(*todo, timeout_ms=200)
            for tp, records in got.items():
                for rec in records:
                    ticks, _ = parse_ticks(rec.value) if rec.value is not None else ([], [])
                    for t in ticks:
                        found.add(tp)
                        newest = t.ts_ms if newest is None else max(newest, t.ts_ms)
                        if t.symbol not in last or t.ts_ms >= last[t.symbol][0]:
                            last[t.symbol] = (t.ts_ms, t.price)
            for tp in list(todo):
                if await consumer.position(tp) >= end[tp]:
                    del todo[tp]
        return found

    with_data = {tp: end[tp] - 1 for tp in tps if end[tp] > begin[tp]}
    found = await read(with_data)
    bare = {tp: max(begin[tp], end[tp] - scan_back) for tp in with_data if tp not in found}
    if bare:
        found |= await read(bare)
        still = sorted(tp.partition for tp in bare if tp not in found)
        if still:
            raise SimStartRefused(
                f"the last records of `ticks` partition(s) {', '.join(map(str, still))} hold no valid tick "
                f"(up to {scan_back} read back from the end), so the newest event time on the topic is unknown")
    return newest, last


async def plan_sim_start(config: Any, *, bootstrap: str | None = None, sec: Any = None, history_dir: Any = None,
                         timeout_s: float = 15.0) -> SimStart:
    """Where the simulated market starts, so that it never starts in the past of the state it
    joins: the session after the newest tick on ``ticks`` at ``bootstrap`` (None: a new embedded
    broker, known empty), from the newest prices there; else the session after ``history_dir``'s
    last date, from its last closes; else the default start, from the documented levels
    (``streams/simfeed.py``). Raises :class:`SimStartRefused` when the newest tick cannot be read."""
    from ratiowatch.streams.simfeed import (CALENDAR_END, DEFAULT_START, next_session_after,
                                            session_on_or_after)

    base: date | None = None
    levels: dict[str, float] = {}
    why = ""
    if history_dir is not None:
        last_day, closes = await asyncio.to_thread(_last_history_date, history_dir, config)  # polars: off the loop
        if last_day is not None:
            base, levels = last_day, dict(closes)
            why = f"the session after the history's last date ({last_day.isoformat()}), from its last closes"
    if bootstrap is not None:
        newest, last = await newest_on_ticks(bootstrap, sec=sec, timeout_s=timeout_s)
        if newest is not None:
            tz = ZoneInfo(config.settings.session_timezone)
            at = datetime.fromtimestamp(newest / 1000, tz)
            if base is None or at.date() >= base:
                base = at.date()
                levels.update({s: p for s, (_, p) in last.items()})
                why = (f"continuing after {base.isoformat()}, the newest tick on `ticks` ({at:%Y-%m-%d %H:%M %Z}), "
                       f"from its newest prices")
            else:
                why += f" (newer than the newest tick on `ticks`, {at:%Y-%m-%d %H:%M %Z})"
    if base is None:
        start = await asyncio.to_thread(session_on_or_after, DEFAULT_START)
        return SimStart(start, levels, ("`ticks` is empty" if bootstrap else "a new embedded broker") +
                        " and no --history: the default start, from the documented levels (streams/simfeed.py)")
    start = await asyncio.to_thread(next_session_after, base)
    if start is None:
        raise SimStartRefused(f"{base.isoformat()} is past the simulated market's calendar (it ends {CALENDAR_END})")
    return SimStart(start, levels, why)


def _last_history_date(history_dir: Any, config: Any) -> tuple[date | None, dict[str, float]]:
    from ratiowatch.streams.history import available_symbols, load_history

    syms = config.symbols & available_symbols(history_dir)
    h = load_history(history_dir, syms, config.settings.signed_symbols)
    if not h.height:
        return None, {}
    last = h.group_by("symbol").last()
    return h["date"].max(), dict(zip(last["symbol"].to_list(), last["close"].to_list()))


async def run_sources(opts: SourceOptions, config: Any, publish: TickSink, stop: asyncio.Event, *,
                      history_dir: Any = None, start: date | None = None,
                      levels: dict[str, float] | None = None) -> None:
    """Run every configured source until ``stop`` is set. A source that fails stops the others and
    its exception is raised here (a feed's :class:`FeedFatalError`, a publishing error). ``start``
    and ``levels``: where the simulated market begins (e.g. after a warm start); with
    ``history_dir`` and no ``start``, the day after the history's last date and its last closes."""
    last_day = None
    if history_dir is not None and (start is None or opts.polls):
        last_day, last_close = _last_history_date(history_dir, config)
        if start is None and last_day is not None:
            start, levels = last_day + timedelta(days=1), (levels or last_close)
    tasks: list[asyncio.Task] = []
    for spec in opts.feeds:
        tasks.append(asyncio.create_task(feed_client(spec, config, publish).run(), name=spec.label))
    by_vendor: dict[str, list[Series]] = {}
    for s in opts.polls:
        by_vendor.setdefault(s.vendor, []).append(s)
    since = opts.poll_since or ((last_day + timedelta(days=1)) if last_day else
                                datetime.now(timezone.utc).date() - timedelta(days=10))
    exchange = Calendar(config.settings.session_timezone)
    always = Calendar(opts.always_open_tz, always_open=True)
    for vendor, series in by_vendor.items():
        poller = Poller(series, base_url=opts.fred_url if vendor == "fred" else opts.stooq_url, sink=publish,
                        interval_s=opts.poll_interval_s, since=since,
                        calendar_for=lambda sym: always if sym in opts.always_open else exchange,
                        signed=config.settings.signed_symbols, known=config.symbols)
        tasks.append(asyncio.create_task(poller.run(), name=poller.source))
    if opts.sim:
        tasks.append(asyncio.create_task(_run_sim(opts, config, publish, start, levels), name="sim"))
    stopper = asyncio.create_task(stop.wait(), name="stop")
    try:
        pending = set(tasks)
        while pending:
            done, _ = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
            for t in done - {stopper}:
                if not t.cancelled() and t.exception() is not None:
                    log.error("source %s failed: %r", t.get_name(), t.exception())
                    raise t.exception()
            if stopper in done:
                return
            pending -= done
        await stopper  # nothing to run (--no-sim and no source): idle until stopped
    finally:
        for t in (*tasks, stopper):
            t.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
