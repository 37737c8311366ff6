"""What the live hub sends each client, and when: the pure part of the hub.

It owns the fan-out rules of ``live.py``'s module docstring. It paces statuses: at most one per
``min_interval_s`` per scenario, and the latest one wins. It keeps the ring of recent crossings
and each client's queue (:mod:`.live_client`). It decides what a client gets when it connects,
applies subscriptions, and keeps the counters in ``stats``.

There are no sockets, HTTP, Kafka, event loop or clock here. A method that depends on time takes
``now`` (monotonic seconds). A status held back by pacing comes back as "due in N seconds", and
the caller schedules it. This is why the part stands apart from ``live.py`` (the :class:`LiveHub`
the engine publishes to, which reads the clock and runs the timer) and from ``live_http.py``
(the page, ``/status``, ``/ws`` and tokens): the rules are tested by calling them, with time as a
number.
"""

from __future__ import annotations

from bisect import insort
from typing import Callable, Iterable

from .live_client import BadMessage, ClientQueue, RateLimit, dumps, parse_subscribe

__all__ = ["LiveFanout", "RecentEvents", "RECENT_EVENTS"]


RECENT_EVENTS = 12  # the crossings a page opened now starts with (the page lists as many)

# The counters of one hub. The HTTP side adds to the first four (see live_http.py), and the ops
# metrics read them all at scrape time.
STATS_KEYS = ("connections", "unauthorized", "bad_origin", "oversized", "clients", "rate_limited",
              "bad_messages", "statuses", "statuses_coalesced", "events", "events_dropped")


class RecentEvents:
    """The latest ``size`` crossings by event time (``ts_ms``), oldest first. The order is event
    time, not arrival, because the web role feeds in the tail of every partition of the events
    topic at start, and those tails interleave."""

    __slots__ = ("size", "_items")

    def __init__(self, size: int = RECENT_EVENTS) -> None:
        self.size = size
        self._items: list[tuple[int, str, str]] = []  # (ts_ms, scenario, text)

    def add(self, ts_ms: int, scenario: str, text: str) -> None:
        insort(self._items, (ts_ms, scenario, text))
        del self._items[:-self.size]

    def __iter__(self):
        return ((sid, text) for _, sid, text in self._items)

    def __len__(self) -> int:
        return len(self._items)


class LiveFanout:
    """The latest status per scenario, paced, and fanned out to the clients' queues.

    ``scenarios`` (ids) lets clients subscribe to scenarios that have no status yet, and it fixes
    the order of :meth:`snapshot`. ``client_rate`` is ``(messages per second, burst)`` for what a
    client may send.
    """

    def __init__(self, *, min_interval_s: float = 0.25, queue_size: int = 256,
                 scenarios: Iterable[str] | None = None, client_rate: tuple[float, int] = (5.0, 20),
                 recent: int = RECENT_EVENTS) -> None:
        if min_interval_s < 0 or queue_size < 1:
            raise ValueError("min_interval_ms must be >= 0 and queue_size >= 1")
        self.min_interval_s = min_interval_s
        self.queue_size = queue_size
        self.client_rate = client_rate
        self._order = list(dict.fromkeys(scenarios or ()))
        self._latest: dict[str, dict] = {}    # newest status per scenario: snapshot() and /status
        self._sent: dict[str, str] = {}       # status text last broadcast per scenario
        self._sent_at: dict[str, float] = {}
        # Scenarios with a newer status waiting for its interval, in the order they were held: a
        # dict rather than a set, so that one flush sends them in an order that does not vary by run.
        self._pending: dict[str, None] = {}
        self._clients: set[ClientQueue] = set()
        self.recent = RecentEvents(recent)
        self.stats: dict[str, int] = dict.fromkeys(STATS_KEYS, 0)

    # --- what comes in from the engine -----------------------------------------------------------

    def publish_status(self, status: dict, now: float) -> float | None:
        """Take the latest status of one scenario. Returns None when it went out at once. When
        its scenario's interval has not passed, returns the seconds until it is due; the caller
        then calls :meth:`flush_due` once that time has passed."""
        sid = status.get("scenario")
        if not isinstance(sid, str):
            raise ValueError("a status needs its scenario id under 'scenario'")
        self._latest[sid] = status
        self.stats["statuses"] += 1
        last = self._sent_at.get(sid)
        if last is None or now - last >= self.min_interval_s:
            self._broadcast(sid, now)
            return None
        if sid in self._pending:
            self.stats["statuses_coalesced"] += 1
        self._pending[sid] = None
        return last + self.min_interval_s - now

    def flush_due(self, now: float) -> float | None:
        """Send every held-back status whose interval has passed. Returns the seconds until the
        next one still held back is due, or None when none is."""
        soonest: float | None = None
        for sid in list(self._pending):
            wait = self._sent_at[sid] + self.min_interval_s - now
            if wait <= 0:
                self._broadcast(sid, now)
            else:
                soonest = wait if soonest is None else min(soonest, wait)
        return soonest

    def publish_event(self, event: dict) -> None:
        """A crossing event (agents/events.py JSON). It goes to every interested client at once,
        with ``type: "event"`` added."""
        sid = event.get("scenario")
        if not isinstance(sid, str):
            raise ValueError("an event needs its scenario id under 'scenario'")
        self.stats["events"] += 1
        text = dumps({**event, "type": "event"})
        ts = event.get("ts_ms")
        self.recent.add(ts if isinstance(ts, int) else 0, sid, text)
        for c in self._clients:
            if c.wants(sid):
                self.stats["events_dropped"] += c.add_event(sid, text)

    def snapshot(self) -> dict[str, dict]:
        """scenario id -> its latest status (held-back ones included), configured ones first; a
        removed scenario is not in it."""
        order = self._order + [s for s in self._latest if s not in self._order]
        return {s: self._latest[s] for s in order if s in self._latest and not self._latest[s].get("removed")}

    def set_order(self, scenarios: Iterable[str]) -> None:
        """The scenarios in force changed: their order (and what clients may subscribe to)."""
        self._order = list(dict.fromkeys(scenarios))

    def _broadcast(self, sid: str, now: float) -> None:
        self._pending.pop(sid, None)
        self._sent[sid] = dumps({**self._latest[sid], "type": "status"})
        self._sent_at[sid] = now
        for c in self._clients:
            if c.wants(sid) and c.mark(sid):
                self.stats["statuses_coalesced"] += 1

    # --- the clients -----------------------------------------------------------------------------

    def attach(self, wake: Callable[[], None] | None = None) -> ClientQueue:
        """A new client's queue. It starts with what the page paints first: the status of every
        scenario already sent, in the configured order because the page lays out its cards as they
        come, and then the recent crossings, oldest first because the page lists the newest on
        top. ``wake`` is called whenever the queue gets something to send."""
        c = ClientQueue(self.queue_size, self._sent, wake, RateLimit(*self.client_rate))
        for sid in self.snapshot():
            if sid in self._sent:  # a held-back status's older version went out: that one is sent
                c.mark(sid)
        for sid, text in self.recent:
            c.add_event(sid, text)
        self._clients.add(c)
        self.stats["clients"] = len(self._clients)
        return c

    def detach(self, c: ClientQueue) -> None:
        self._clients.discard(c)
        self.stats["clients"] = len(self._clients)

    def on_message(self, c: ClientQueue, raw: str | bytes, now: float) -> bool:
        """Handle one message from a client. Returns False when the client should be
        disconnected: it has sent 100 messages over the rate limit."""
        if not c.rate.allow(now):
            self.stats["rate_limited"] += 1
            if c.rate.take_notice():
                c.reply({"type": "error", "error": f"rate limit: at most {self.client_rate[0]:g} messages per second"})
            return c.rate.strikes < 100
        try:
            subs = parse_subscribe(raw, set(self._order) | set(self._latest))
        except BadMessage as e:
            self.stats["bad_messages"] += 1
            c.reply({"type": "error", "error": str(e)})
            return True
        c.resubscribe(subs)
        c.reply({"type": "subscribed", "scenarios": "*" if subs is None else sorted(subs)})
        for sid in self._sent:  # the current state of what it now follows
            if c.wants(sid):
                c.mark(sid)
        return True
