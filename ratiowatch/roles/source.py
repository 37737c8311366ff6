"""The ``source`` role: every configured tick source, concurrently, into ``ticks`` / ``ticks.dlq``.

Sources: websocket feeds (``--feed``, repeatable: plain, polygon, alpaca, finnhub, coinbase),
daily-series pollers (``--poll fred:DGS10,DGS2``, ``--poll stooq:IWM,SPY``, repeatable), and the
simulated market when neither is given (unless ``--no-sim``). ``ratiowatch source`` runs this role
alone over a plain Kafka producer; ``ratiowatch run`` runs it in-process over its faust topics.
How records are keyed: :mod:`ratiowatch.streams.sources.sinks`. The flags: :mod:`.source_options`;
where the simulated market starts: :mod:`.sim_start`. Documentation: docs/sources.md.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timedelta, timezone
from typing import Any

from ratiowatch.config import warn_unprovided_symbols
from ratiowatch.streams.feed import FeedClient
from ratiowatch.streams.simfeed import DEFAULT_SYMBOLS, SimMarket
from ratiowatch.streams.sim_calendar import CalendarEnd
from ratiowatch.streams.sources.calendar import Calendar
from ratiowatch.streams.sources.poller import Poller, Series
from ratiowatch.streams.sources.sinks import TickSink

from .sim_start import last_history_date
from .source_options import FeedSpec, SourceOptions

__all__ = ["run_sources", "feed_client"]

log = logging.getLogger(__name__)


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


async def run_sources(opts: SourceOptions, config: Any, publish: TickSink, stop: asyncio.Event, *,
                      history_dir: Any = None, start: date | None = None,
                      levels: dict[str, float] | None = None) -> None:
    """Run every configured source until ``stop`` is set. A source that fails stops the others and
    its exception is raised here (a feed's :class:`FeedFatalError`, a publishing error). ``start``
    and ``levels``: where the simulated market begins (e.g. after a warm start); with
    ``history_dir`` and no ``start``, the day after the history's last date and its last closes."""
    last_day = None
    if history_dir is not None and (start is None or opts.polls):
        last_day, last_close = last_history_date(history_dir, config)
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
