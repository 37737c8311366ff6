"""The live hub: where each scenario stands now, pushed to websocket clients and served as a page.

The engine calls :meth:`LiveHub.publish_status` and :meth:`LiveHub.publish_event`; both return at
once (they never await a client). :meth:`LiveHub.serve` starts one server on 127.0.0.1 with the
routes below; :meth:`LiveHub.routes` gives the same routes to mount on another server (the ops
server of ``ratiowatch.ops.http`` serves them beside ``/metrics`` on one port):

- ``/ws``     websocket: JSON messages, each with ``type`` ("status" | "event" | "dropped" |
              "subscribed" | "error"). A client may send ``{"subscribe": ["scenario-id", ...]}``
              (or ``"*"``) to receive only those scenarios.
- ``/``       the status page (``web/status.html``, plain JS that renders from ``/ws``).
- ``/status`` the same data as JSON: ``{"scenarios": [status, ...]}``.

Fan-out rules:

1. Status at most once per ``min_interval_ms`` per scenario; a newer one in between replaces the
   pending one (the latest wins) and goes out when the interval has passed.
2. Every event goes to every interested client as it happens.
3. Each client has its own writer task and queue, so a slow client only slows itself. Its pending
   statuses are one slot per scenario (an older one is replaced by the latest, never queued
   twice); its events are bounded by ``queue_size``. When that is full the oldest event is
   dropped and the client is told so with ``{"type": "dropped", "events": N}`` before anything
   else: an event is never dropped silently.

Access (``live_http.py``, where the HTTP side lives): with a token, ``/``, ``/status`` and ``/ws``
require it (``?token=`` or ``Authorization: Bearer``); a bad one gets HTTP 401 or websocket close
1008 and is counted in :attr:`LiveHub.stats`. Browser pages from other origins are refused
(cross-site websocket hijacking), client messages are capped at ``max_message_bytes`` and
rate-limited per client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import insort
from collections import deque
from typing import Any, Callable, Iterable

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve

from .live_http import LiveRoutes

__all__ = ["LiveHub", "LiveRoutes", "ClientQueue"]


RECENT_EVENTS = 12  # the crossings a page opened now starts with (the page lists as many)

log = logging.getLogger(__name__)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


class ClientQueue:
    """What one client still has to receive, in sending order: control replies, the dropped
    notice, events (oldest first), then the latest status of each scenario marked dirty. Pure."""

    __slots__ = ("subs", "events", "dirty", "control", "dropped", "queue_size", "statuses", "wake",
                 "tokens", "refilled_at", "limited", "strikes")

    def __init__(self, queue_size: int, statuses: dict[str, str]) -> None:
        self.subs: frozenset[str] | None = None     # None: every scenario
        self.events: deque[tuple[str, str]] = deque()  # (scenario, text)
        self.dirty: dict[str, None] = {}            # scenarios whose latest broadcast status is unsent
        self.control: deque[str] = deque(maxlen=8)  # replies to the client's own messages
        self.dropped = 0                             # events dropped since the last notice
        self.queue_size = queue_size
        self.statuses = statuses                     # the hub's latest broadcast text per scenario
        self.wake = asyncio.Event()
        self.tokens = 0.0                            # rate limit bucket (see LiveHub._allow)
        self.refilled_at: float | None = None
        self.limited = False
        self.strikes = 0

    def wants(self, scenario: str) -> bool:
        return self.subs is None or scenario in self.subs

    def add_event(self, scenario: str, text: str) -> int:
        """Queue an event; returns how many older events had to be dropped (0 or 1)."""
        dropped = 0
        if len(self.events) >= self.queue_size:
            self.events.popleft()
            self.dropped += 1
            dropped = 1
        self.events.append((scenario, text))
        self.wake.set()
        return dropped

    def mark(self, scenario: str) -> bool:
        """A newer status of ``scenario`` is out; returns True if it replaced an unsent one."""
        replaced = scenario in self.dirty
        self.dirty[scenario] = None
        self.wake.set()
        return replaced

    def reply(self, obj: dict) -> None:
        self.control.append(_dumps(obj))
        self.wake.set()

    def resubscribe(self, subs: frozenset[str] | None) -> None:
        """Keep only what the new subscription wants (queued items included)."""
        self.subs = subs
        self.events = deque(e for e in self.events if self.wants(e[0]))
        self.dirty = {s: None for s in self.dirty if self.wants(s)}

    def next_message(self) -> str | None:
        """The next text to send, or None when nothing is pending."""
        if self.control:
            return self.control.popleft()
        if self.dropped:
            n, self.dropped = self.dropped, 0
            return _dumps({"type": "dropped", "events": n})
        if self.events:
            return self.events.popleft()[1]
        while self.dirty:
            sid = next(iter(self.dirty))
            del self.dirty[sid]
            if sid in self.statuses:
                return self.statuses[sid]
        return None


class LiveHub:
    """Latest status per scenario plus live fan-out to websocket clients. See the module docstring.

    ``now`` (monotonic seconds) paces statuses and rate limits; it is a parameter so tests can
    drive it. ``scenarios`` (ids) lets clients subscribe to scenarios that have no status yet and
    fixes the order of ``/status``. Call ``publish_*`` from the event loop's thread.
    """

    def __init__(self, *, min_interval_ms: float = 250, queue_size: int = 256,
                 now: Callable[[], float] = time.monotonic, scenarios: Iterable[str] | None = None,
                 max_message_bytes: int = 4096, client_rate: tuple[float, int] = (5.0, 20)) -> None:
        if min_interval_ms < 0 or queue_size < 1:
            raise ValueError("min_interval_ms must be >= 0 and queue_size >= 1")
        self.min_interval_s = min_interval_ms / 1000.0
        self.queue_size = queue_size
        self.max_message_bytes = max_message_bytes
        self.client_rate = client_rate  # (messages per second, burst)
        self._now = now
        self._order = list(dict.fromkeys(scenarios or ()))
        self._latest: dict[str, dict] = {}       # newest status per scenario: snapshot() and /status
        self._sent: dict[str, str] = {}          # status text last broadcast per scenario
        self._sent_at: dict[str, float] = {}
        self._pending: set[str] = set()          # scenarios with a newer status waiting for its interval
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._clients: set[ClientQueue] = set()
        # The latest crossings by event time: a page opened now starts with them rather than with
        # an empty list (the web role feeds the tail of the events topic in at start).
        self._recent: list[tuple[int, str, str]] = []  # (ts_ms, scenario, text), oldest first
        # More routes for the same server: the web role's silence API (ratiowatch/roles/silence_api.py),
        # which OpsServer mounts through routes(); None for none.
        self.api: Any = None
        self.stats: dict[str, int] = {
            "clients": 0, "connections": 0, "unauthorized": 0, "bad_origin": 0, "oversized": 0,
            "rate_limited": 0, "bad_messages": 0, "statuses": 0, "statuses_coalesced": 0,
            "events": 0, "events_dropped": 0,
        }

    # --- engine side: never awaits ------------------------------------------------------------

    def publish_status(self, status: dict) -> None:
        """The latest status of one scenario (``ScenarioEngine.status()``'s shape)."""
        sid = status.get("scenario")
        if not isinstance(sid, str):
            raise ValueError("a status needs its scenario id under 'scenario'")
        self._latest[sid] = status
        self.stats["statuses"] += 1
        t = self._now()
        last = self._sent_at.get(sid)
        if last is None or t - last >= self.min_interval_s:
            self._broadcast(sid, t)
            return
        if sid in self._pending:
            self.stats["statuses_coalesced"] += 1
        self._pending.add(sid)
        self._arm(last + self.min_interval_s - t)

    def publish_event(self, event: dict) -> None:
        """A crossing event (agents/events.py JSON); sent with ``type: "event"`` added."""
        sid = event.get("scenario")
        if not isinstance(sid, str):
            raise ValueError("an event needs its scenario id under 'scenario'")
        self.stats["events"] += 1
        text = _dumps({**event, "type": "event"})
        ts = event.get("ts_ms") if isinstance(event.get("ts_ms"), int) else 0
        insort(self._recent, (ts, sid, text))
        del self._recent[:-RECENT_EVENTS]
        for c in self._clients:
            if c.wants(sid):
                self.stats["events_dropped"] += c.add_event(sid, text)

    def snapshot(self) -> dict[str, dict]:
        """scenario id -> its latest status."""
        order = self._order + [s for s in self._latest if s not in self._order]
        return {s: self._latest[s] for s in order if s in self._latest}

    def flush_due(self) -> None:
        """Send every pending status whose interval has passed (the timer calls this)."""
        self._timer = None
        t = self._now()
        soonest: float | None = None
        for sid in list(self._pending):
            wait = self._sent_at[sid] + self.min_interval_s - t
            if wait <= 0:
                self._broadcast(sid, t)
            else:
                soonest = wait if soonest is None else min(soonest, wait)
        if soonest is not None:
            self._arm(soonest)

    def attach(self) -> ClientQueue:
        """A new client queue, starting with the current status of every scenario. The websocket
        handler drains it; tests can drain it directly."""
        c = ClientQueue(self.queue_size, self._sent)
        for sid in self.snapshot():  # in the configured order: the page lays out cards as they come
            if sid in self._sent:
                c.mark(sid)
        for _, sid, text in self._recent:  # oldest first: the page lists the newest on top
            c.add_event(sid, text)
        self._clients.add(c)
        self.stats["clients"] = len(self._clients)
        return c

    def detach(self, c: ClientQueue) -> None:
        self._clients.discard(c)
        self.stats["clients"] = len(self._clients)

    def close(self) -> None:
        """Stop the pacing timer (pending statuses stay in the snapshot)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _broadcast(self, sid: str, t: float) -> None:
        self._pending.discard(sid)
        self._sent[sid] = _dumps({**self._latest[sid], "type": "status"})
        self._sent_at[sid] = t
        for c in self._clients:
            if c.wants(sid) and c.mark(sid):
                self.stats["statuses_coalesced"] += 1

    def _arm(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next publish or flush_due() sends it
        due = loop.time() + max(delay, 0.001)
        if self._timer is not None:
            if self._timer_due <= due:
                return
            self._timer.cancel()
        self._timer = loop.call_at(due, self.flush_due)
        self._timer_due = due

    # --- client side ----------------------------------------------------------------------------

    def _known(self) -> set[str]:
        return set(self._order) | set(self._latest)

    def _allow(self, c: ClientQueue) -> bool:
        """Token bucket: ``rate`` messages per second with bursts of ``burst``."""
        rate, burst = self.client_rate
        t = self._now()
        if c.refilled_at is None:
            c.tokens = float(burst)
        else:
            c.tokens = min(float(burst), c.tokens + (t - c.refilled_at) * rate)
        c.refilled_at = t
        if c.tokens >= 1.0:
            c.tokens -= 1.0
            c.limited = False
            return True
        return False

    def _on_message(self, c: ClientQueue, raw: str | bytes) -> bool:
        """Handle one client message; returns False when the client should be disconnected."""
        if not self._allow(c):
            self.stats["rate_limited"] += 1
            c.strikes += 1
            if not c.limited:  # one notice per burst of excess, not one per message
                c.limited = True
                c.reply({"type": "error", "error": f"rate limit: at most {self.client_rate[0]:g} messages per second"})
            return c.strikes < 100
        error = self._subscribe(c, raw)
        if error is not None:
            self.stats["bad_messages"] += 1
            c.reply({"type": "error", "error": error})
        return True

    def _subscribe(self, c: ClientQueue, raw: str | bytes) -> str | None:
        """Apply a subscribe message; returns the error text, or None when applied."""
        if isinstance(raw, bytes):
            return 'send JSON text, e.g. {"subscribe": ["scenario-id"]}'
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return 'not JSON; send {"subscribe": ["scenario-id", ...]} or {"subscribe": "*"}'
        if not isinstance(msg, dict) or set(msg) != {"subscribe"}:
            return 'the only message is {"subscribe": ["scenario-id", ...]} (or "*" for all)'
        want = msg["subscribe"]
        if want == "*":
            subs = None
        else:
            if not isinstance(want, list) or not want or not all(isinstance(s, str) for s in want):
                return "subscribe takes a non-empty list of scenario ids, or \"*\""
            known = self._known()
            unknown = [s for s in want if s not in known]
            if unknown:
                return f"unknown scenario {unknown[0][:80]!r} (known: {', '.join(sorted(known))[:2000]})"
            subs = frozenset(want)
        c.resubscribe(subs)
        c.reply({"type": "subscribed", "scenarios": "*" if subs is None else sorted(subs)})
        for sid in self._sent:  # the current state of what it now follows
            if c.wants(sid):
                c.mark(sid)
        return None

    async def _write(self, ws: ServerConnection, c: ClientQueue) -> None:
        while True:
            await c.wake.wait()
            c.wake.clear()
            while (text := c.next_message()) is not None:
                await ws.send(text)  # waits only for this client's socket

    # --- HTTP and websocket ----------------------------------------------------------------------

    def routes(self, token: str | None = None) -> LiveRoutes:
        """The page, ``/status`` and ``/ws`` for one token, to mount on a websockets server:
        :meth:`serve` does, and so does the ops server (ratiowatch.ops.http) on its own port."""
        return LiveRoutes(self, token)

    async def serve(self, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> Server:
        """Start a server of its own (``port=0``: any free port, see ``server.sockets``). Close it
        with ``server.close(); await server.wait_closed()``. Binds 127.0.0.1 unless told otherwise."""
        routes = self.routes(token)
        return await serve(routes.handle, host, port, process_request=routes.process_request,
                           **routes.server_options())
