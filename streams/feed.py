"""The websocket feed client: a vendor's price stream in, ticks (and dead letters) out.

One :class:`FeedClient` holds one connection (``ws://`` or ``wss://``) and keeps it alive:

1. connect, then send the subscribe message(s) rendered for the configured symbols;
2. for each message: decode JSON, map it with the chosen format (:mod:`.feed_formats`), validate
   every item with :func:`~ratiowatch.streams.ticks.parse_tick_obj` (the same reasons as the
   ``ticks`` topic), publish the valid ticks as one batch (the production ingest shape) and every
   rejected item to the dead-letter sink, as a ``ticks.dlq`` record;
3. on a drop, an error or a silent connection (no message for ``silence_s``: the socket may look
   alive while the vendor sends nothing), reconnect with exponential backoff and jitter, and
   subscribe again.

A vendor with a handshake (authenticate, then subscribe, then acknowledgements and errors: Alpaca,
Finnhub, Coinbase) is driven by a ``protocol`` object (:mod:`.sources.base`), created afresh for
each connection: it says what to send and when, and which vendor errors are fatal. A fatal one
(authentication failed, an HTTP 401/403 at the handshake, a plan limit) ends :meth:`run` with
:class:`~.sources.base.FeedFatalError` instead of reconnecting: a retry storm against the vendor
fixes nothing.

Ticks missed while disconnected or while the feed was quiet are reported as a ``gap`` status,
never papered over with made-up prices. Publishing errors (e.g. Kafka unavailable) end :meth:`run`
with the error: a tick that cannot be published must not be acknowledged by moving on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import ssl as _ssl
import time
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from .feed_formats import get_format
from .feed_subscribe import SubscribeTemplate, render_subscribe
from .sources.base import FeedFatalError, ProtocolFactory, Reply
from .ticks import Rejected, Tick, dlq_record, parse_tick_obj

__all__ = ["FeedClient", "redact_url", "kafka_sinks"]

log = logging.getLogger(__name__)

PublishTicks = Callable[[list[Tick]], Awaitable[None]]
PublishDlq = Callable[[bytes], Awaitable[None]]


class _NoFrames(logging.Filter):
    """websockets logs every frame and the request line at DEBUG: an auth frame carries a key, a
    request line a token. Those records are dropped; the rest of websockets' logging stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(("> ", "< ")))


_ws_log = logging.getLogger("ratiowatch.streams.feed.websockets")
_ws_log.addFilter(_NoFrames())


def redact_url(url: str) -> str:
    """``url`` without credentials: user:password and the query (vendors put API keys there) go."""
    p = urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    netloc = host + (f":{p.port}" if p.port else "")
    return urlunsplit((p.scheme, netloc, p.path, "", ""))


class FeedClient:
    """A resilient websocket feed client. See the module docstring for the flow.

    ``on_status`` (sync or async) receives ``{"type": "feed", "state": "connected" | "reconnecting"
    | "gap", "source": ..., "at_ms": ..., ...}``. A gap is reported at the first tick after a lost
    connection, or after more than ``gap_s`` (default: ``silence_s``) without ticks. ``clock``
    returns wall time in seconds (the ``at_ms`` of dead letters and statuses, and gap lengths);
    it is a parameter so tests can pin it.
    """

    def __init__(self, url: str, *, fmt: str = "plain", symbols: Iterable[str], publish_ticks: PublishTicks,
                 publish_dlq: PublishDlq, subscribe: SubscribeTemplate = None, silence_s: float = 10.0,
                 backoff: tuple[float, float] = (0.5, 30.0), on_status: Callable[[dict], Any] | None = None,
                 known_symbols: Iterable[str] | None = None, gap_s: float | None = None,
                 ping_interval: float = 20.0, max_message_bytes: int = 8 * 2**20,
                 ssl: _ssl.SSLContext | None = None, clock: Callable[[], float] = time.time,
                 protocol: ProtocolFactory | None = None) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("ws", "wss"):
            raise ValueError(f"feed url must start with ws:// or wss://, got {redact_url(url)!r}")
        # A vendor protocol replaces the stateless format and the subscribe template.
        self.protocol = protocol
        self._format = get_format(fmt) if protocol is None else None  # KeyError naming the choices
        lo, hi = backoff
        if not 0 < lo <= hi:
            raise ValueError(f"backoff must be (initial, maximum) with 0 < initial <= maximum, got {backoff!r}")
        if silence_s <= 0:
            raise ValueError(f"silence_s must be > 0, got {silence_s!r}")
        if not ping_interval or ping_interval <= 0:
            raise ValueError("ping_interval must be > 0: keepalive pings detect dead connections")
        self.url = url
        self.fmt = fmt
        self.symbols = list(symbols)
        self.source = "feed:" + redact_url(url)
        self.subscribe_messages = render_subscribe(subscribe, self.symbols)  # fails early on a bad template
        self.publish_ticks = publish_ticks
        self.publish_dlq = publish_dlq
        self.silence_s = float(silence_s)
        self.gap_s = float(gap_s) if gap_s is not None else self.silence_s
        self.backoff = (float(lo), float(hi))
        self.on_status = on_status
        self.known = frozenset(s.upper() for s in known_symbols) if known_symbols is not None else None
        self.ping_interval = float(ping_interval)
        self.max_message_bytes = max_message_bytes
        self.ssl = ssl
        self.clock = clock
        # Counters.
        self.messages = 0      # messages received
        self.ticks = 0         # valid ticks published
        self.rejected = 0      # items sent to the dead-letter sink
        self.reconnects = 0    # times the connection (or an attempt) was lost and retried
        self.gaps = 0          # gap statuses reported
        self.connections = 0   # successful connections (each one subscribes)
        self._last_tick_at: float | None = None   # wall time of the last published tick
        self._last_tick_ts: int | None = None     # its event time
        self._lost_since_tick = False             # a connection was lost after the last tick
        self._attempt = 0                         # failed attempts since the last healthy connection

    def stats(self) -> dict[str, int]:
        return {"messages": self.messages, "ticks": self.ticks, "rejected": self.rejected,
                "reconnects": self.reconnects, "gaps": self.gaps, "connections": self.connections}

    async def run(self) -> None:
        """Connect, read and reconnect until cancelled."""
        self._attempt = 0
        while True:
            try:
                ws = await connect(self.url, ping_interval=self.ping_interval, ping_timeout=self.ping_interval,
                                   close_timeout=min(5.0, self.silence_s), open_timeout=10.0,
                                   max_size=self.max_message_bytes, logger=_ws_log,
                                   **({"ssl": self.ssl} if self.ssl is not None else {}))
            except InvalidURI:  # its message quotes the URL, which may carry a key: say it without
                raise ValueError(f"feed url is invalid: {redact_url(self.url)!r}") from None
            except InvalidStatus as e:
                code = e.response.status_code
                if code in (401, 403):
                    await self._status("failed", reason=f"HTTP {code} at the handshake")
                    raise FeedFatalError(f"feed {self.source}: the server refused the connection with HTTP {code}: "
                                         f"authentication failed; check the key in the environment") from None
                reason = f"connect failed: HTTP {code}"
            except (OSError, InvalidHandshake, TimeoutError) as e:
                reason = f"connect failed: {type(e).__name__}: {e}"
            else:
                try:
                    reason = await self._read(ws)
                finally:
                    await ws.close()
            if self._last_tick_at is not None:
                self._lost_since_tick = True
            self.reconnects += 1
            lo, hi = self.backoff
            delay = min(hi, lo * 2 ** self._attempt) * random.uniform(0.5, 1.0)  # jitter spreads a herd of clients
            self._attempt += 1
            log.warning("feed %s: %s; reconnecting in %.2fs", self.source, reason, delay)
            await self._status("reconnecting", reason=reason, delay_s=round(delay, 3), attempt=self._attempt)
            await asyncio.sleep(delay)

    async def _read(self, ws: Any) -> str:
        """Subscribe and handle messages until the connection drops or goes silent; returns why.
        Only connection errors are caught here: a publishing error propagates and ends :meth:`run`."""
        self.connections += 1
        proto = self.protocol(self.symbols) if self.protocol is not None else None
        first_frames = proto.start() if proto is not None else self.subscribe_messages
        try:
            for text in first_frames:
                await ws.send(text)
        except ConnectionClosed as e:
            return f"closed while subscribing: {e}"
        await self._status("connected", connection=self.connections, subscribed=len(first_frames))
        first = True
        while True:
            try:
                async with asyncio.timeout(self.silence_s):
                    msg = await ws.recv()
            except TimeoutError:
                return f"silent for {self.silence_s:g}s"
            except ConnectionClosed as e:
                return f"closed: {e}"
            if first:
                first = False
                self._attempt = 0  # the connection proved healthy: start the backoff afresh
            reply = await self._handle(msg, proto)
            if reply is None:
                continue
            if reply.status:
                missing = proto.missing() if reply.status == "subscribed" and hasattr(proto, "missing") else []
                await self._status(reply.status, **({"missing": missing} if missing else {}))
            if reply.fatal:
                await self._status("failed", reason=reply.fatal)
                raise FeedFatalError(f"feed {self.source}: {reply.fatal}")
            try:
                for text in reply.send:
                    await ws.send(text)
            except ConnectionClosed as e:
                return f"closed while sending: {e}"
            if reply.retry:
                return reply.retry

    async def _handle(self, msg: str | bytes, proto: Any = None) -> Reply | None:
        self.messages += 1
        reply = None
        good: list[Tick] = []
        bad: list[Rejected] = []
        try:
            doc = orjson.loads(msg)
        except orjson.JSONDecodeError as e:
            text = msg.decode("utf-8", "replace") if isinstance(msg, (bytes, bytearray)) else msg
            bad.append(Rejected("not_json", f"not JSON: {e}", text[:2000]))
        else:
            try:
                if proto is not None:
                    reply = proto.handle(doc)
                    items = reply.items
                else:
                    items = self._format(doc)
            except Exception as e:  # a format bug must not take the feed down: dead-letter the message
                log.exception("feed format %s failed", self.fmt)
                items = []
                bad.append(Rejected("bad_format", f"format {self.fmt} failed: {type(e).__name__}: {e}", doc))
            for it in items:
                r = it.tick if isinstance(it.tick, Rejected) else parse_tick_obj(it.tick, self.known)
                if isinstance(r, Rejected):
                    bad.append(r._replace(item=it.raw))  # the dlq keeps what the vendor sent
                else:
                    good.append(r)
        now = self.clock()
        if good:
            await self._check_gap(now)
            await self.publish_ticks(good)
            self.ticks += len(good)
            self._last_tick_at, self._last_tick_ts = now, max(t.ts_ms for t in good)
            self._lost_since_tick = False
        for r in bad:
            await self.publish_dlq(dlq_record(r, source=self.source, at_ms=int(now * 1000)))
            self.rejected += 1
        return reply

    async def _check_gap(self, now: float) -> None:
        last = self._last_tick_at
        if last is None:
            return
        quiet = now - last
        if self._lost_since_tick or quiet > self.gap_s:
            self.gaps += 1
            await self._status("gap", from_ms=int(last * 1000), to_ms=int(now * 1000), seconds=round(quiet, 3),
                               last_tick_ts_ms=self._last_tick_ts,
                               reason="connection lost" if self._lost_since_tick else "no ticks")

    async def _status(self, state: str, **fields: Any) -> None:
        if self.on_status is None:
            return
        try:
            r = self.on_status({"type": "feed", "state": state, "source": self.source,
                                "at_ms": int(self.clock() * 1000), **fields})
            if inspect.isawaitable(r):
                await r
        except Exception:  # a status is a side channel: its consumer failing must not stop the prices
            log.exception("feed %s: on_status failed", self.source)


def kafka_sinks(producer: Any, *, key: str | bytes) -> tuple[PublishTicks, PublishDlq]:
    """``publish_ticks`` / ``publish_dlq`` writing to the ``ticks`` and ``ticks.dlq`` topics through a
    started aiokafka producer. Records are keyed by ``key`` (the feed's source id): a batch is
    keyed by its source, as the ticks topic expects."""
    from .ticks import encode_ticks
    from .topics import TICKS, TICKS_DLQ

    k = key.encode() if isinstance(key, str) else key

    async def publish_ticks(ticks: list[Tick]) -> None:
        await producer.send_and_wait(TICKS, encode_ticks(ticks), key=k)

    async def publish_dlq(record: bytes) -> None:
        await producer.send_and_wait(TICKS_DLQ, record, key=k)

    return publish_ticks, publish_dlq
