"""The polling source for daily series (FRED, Stooq): fetch on a schedule, send what is new.

Each round, for every series: GET its CSV (:func:`series_url`), parse it (:mod:`.csvseries`),
keep what the policy says to send (:class:`.csvseries.SeriesTracker`), stamp each observation at
its date's session close (:mod:`.calendar`), validate it as any tick is validated, publish the
series' ticks as one batch keyed by the symbol, then record them as sent.

Errors: a connection error, a timeout, HTTP 429 or 5xx is retried a few times with backoff within
the round; what still fails, and any other HTTP status, becomes one ``ticks.dlq`` record
(``fetch_failed`` / ``http_error``, with the status and the URL) and the series is tried again next
round: nothing was marked sent, so nothing is lost. Bad rows are dead-lettered with their reason.
A publishing error (Kafka) ends :meth:`Poller.run` with the error.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import date
from typing import Any, Callable, Iterable, NamedTuple
from urllib.parse import quote

from ..feed import redact_url
from ..ticks import Rejected, Tick, dlq_record, parse_tick_obj
from .calendar import Calendar
from .csvseries import SeriesTracker, parse_fred_csv, parse_stooq_csv

__all__ = ["Series", "series_from_spec", "Poller", "series_url", "fetch_text", "FetchError", "DEFAULT_URLS"]

log = logging.getLogger(__name__)

DEFAULT_URLS = {"fred": "https://fred.stlouisfed.org", "stooq": "https://stooq.com"}


class Series(NamedTuple):
    vendor: str     # fred | stooq
    symbol: str     # the tick symbol (DGS10, IWM)
    remote: str     # the vendor's id (DGS10, iwm.us)


def series_from_spec(vendor: str, item: str) -> Series:
    """``DGS10`` (FRED id = symbol), ``IWM`` (Stooq: ``iwm.us``), ``IWM.US`` or ``^SPX`` (Stooq ids,
    symbol before the dot), or ``SYMBOL=ID`` for any other mapping."""
    sym, eq, remote = item.partition("=")
    if not eq:
        remote = item
        if vendor == "stooq":
            sym = item.split(".")[0]
            remote = item.lower() if "." in item or item.startswith("^") else f"{item.lower()}.us"
    return Series(vendor, sym.strip().upper(), remote.strip())


class FetchError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


def series_url(base: str, s: Series, since: date | None = None) -> str:
    """The CSV URL of a series under ``base`` (the vendor's site, or a mirror / test server)."""
    base = base.rstrip("/")
    if s.vendor == "fred":
        return f"{base}/graph/fredgraph.csv?id={quote(s.remote)}" + (f"&cosd={since.isoformat()}" if since else "")
    if s.vendor == "stooq":
        return f"{base}/q/d/l/?s={quote(s.remote)}&i=d" + (f"&d1={since.strftime('%Y%m%d')}" if since else "")
    raise ValueError(f"unknown poll source {s.vendor!r} (choose fred or stooq)")


def parse_series(s: Series, text: str):
    return parse_fred_csv(text, s.remote) if s.vendor == "fred" else parse_stooq_csv(text, s.remote)


async def fetch_text(session: Any, url: str, *, attempts: int = 3, backoff: float = 0.5,
                     timeout_s: float = 30.0) -> str:
    """GET ``url`` as text. Retries connection errors, timeouts, 429 and 5xx (``attempts`` in all,
    exponential backoff with jitter); raises :class:`FetchError` with a reason otherwise."""
    import aiohttp

    shown = redact_url(url)
    last = ""
    for i in range(attempts):
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
                if r.status == 200:
                    return await r.text(errors="replace")
                last = f"HTTP {r.status} from {shown}"
                if r.status != 429 and r.status < 500:
                    raise FetchError("http_error", last)
        except (aiohttp.ClientError, TimeoutError) as e:
            last = f"{type(e).__name__} fetching {shown}: {e}"
        if i + 1 < attempts:
            delay = backoff * 2 ** i * random.uniform(0.5, 1.0)
            log.warning("%s; retry %d/%d in %.2fs", last, i + 1, attempts - 1, delay)
            await asyncio.sleep(delay)
    raise FetchError("fetch_failed", f"{last} (after {attempts} attempts)")


class Poller:
    """Polls several series of one vendor every ``interval_s`` seconds. ``sink``: a TickSink
    (``send_ticks(ticks, key)``, ``send_dlq(record, key)``). ``calendar_for(symbol)`` gives each
    symbol's session calendar; ``since``: the first date sent on the first round (None: all)."""

    def __init__(self, series: Iterable[Series], *, base_url: str, sink: Any, interval_s: float,
                 calendar_for: Callable[[str], Calendar], since: date | None = None,
                 signed: frozenset[str] = frozenset(), known: frozenset[str] | None = None,
                 attempts: int = 3, backoff: float = 0.5, clock: Callable[[], float] = time.time) -> None:
        self.series = list(series)
        if not self.series:
            raise ValueError("a poller needs at least one series")
        self.vendor = self.series[0].vendor
        self.base_url = base_url
        self.sink = sink
        self.interval_s = float(interval_s)
        self.calendar_for = calendar_for
        self.signed, self.known = signed, known
        self.attempts, self.backoff = attempts, backoff
        self.clock = clock
        self.source = f"poll:{self.vendor}:" + redact_url(base_url)
        self.trackers = {s.symbol: SeriesTracker(since) for s in self.series}
        self.since = since
        self.counters = {"rounds": 0, "ticks": 0, "dead_lettered": 0, "revisions_sent": 0,
                         "revisions_ignored": 0, "fetch_errors": 0}

    async def run(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            while True:
                await self.poll_once(session)
                await asyncio.sleep(self.interval_s)

    async def poll_once(self, session: Any) -> None:
        for s in self.series:
            await self._poll_series(session, s)
        self.counters["rounds"] += 1

    async def _dlq(self, rej: Rejected, key: bytes) -> None:
        await self.sink.send_dlq(dlq_record(rej, source=self.source, at_ms=int(self.clock() * 1000)), key)
        self.counters["dead_lettered"] += 1

    async def _poll_series(self, session: Any, s: Series) -> None:
        key = s.symbol.encode()
        tracker = self.trackers[s.symbol]
        since = tracker.newest or self.since
        url = series_url(self.base_url, s, since)
        try:
            text = await fetch_text(session, url, attempts=self.attempts, backoff=self.backoff)
        except FetchError as e:
            self.counters["fetch_errors"] += 1
            log.warning("poll %s %s: %s", s.vendor, s.remote, e.detail)
            await self._dlq(Rejected(e.reason, f"{s.vendor} {s.remote}: {e.detail}", {"series": s.remote, "url": redact_url(url)}), key)
            return
        obs, bad = parse_series(s, text)
        for r in bad:
            await self._dlq(r, key)
        ch = tracker.changes(obs)
        cal = self.calendar_for(s.symbol)
        ticks: list[Tick] = []
        for o in ch.send:
            row = {"symbol": s.symbol, "price": o.value, "ts_ms": cal.close_ts_ms(o.day)}
            t = parse_tick_obj(row, self.known, self.signed)
            if isinstance(t, Rejected):
                await self._dlq(t._replace(item={**row, "date": o.day.isoformat(), "series": s.remote}), key)
            else:
                ticks.append(t)
        if ticks:
            await self.sink.send_ticks(ticks, key)
            self.counters["ticks"] += len(ticks)
        for o in ch.ignored:
            log.warning("poll %s %s: %s revised to %g; not sent (only the newest date's revision is)",
                        s.vendor, s.remote, o.day, o.value)
        self.counters["revisions_sent"] += len(ch.revised)
        self.counters["revisions_ignored"] += len(ch.ignored)
        tracker.commit(ch)
