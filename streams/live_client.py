"""One live client, without its socket: what it still has to receive, in what order, and what it
may send. This is the pure part of the hub, with ``live_fanout.py``.

- :class:`ClientQueue` holds what the client has yet to receive: replies, the dropped notice,
  events, and then the latest status of each scenario. A slow client only makes its own queue
  grow, and the growth is bounded: one status slot per scenario, and at most ``queue_size``
  events.
- :class:`RateLimit` is the token bucket for the client's own messages.
- :func:`parse_subscribe` reads the one message a client may send.

Nothing here touches a socket or reads a clock. The websocket side (``live_http.py``) drains
the queue when ``wake`` is called.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import orjson

__all__ = ["ClientQueue", "RateLimit", "BadMessage", "parse_subscribe", "dumps"]


def dumps(obj: Any) -> str:
    """The JSON text sent to clients (``default=str``: dates and decimals in statuses)."""
    return orjson.dumps(obj, default=str).decode()


def _nothing() -> None:
    pass


class RateLimit:
    """Token bucket: ``rate`` messages per second, with bursts of ``burst``. A new client starts
    with a full bucket. ``strikes`` counts every refused message, and the client is cut off after
    enough of them."""

    __slots__ = ("rate", "burst", "tokens", "refilled_at", "limited", "strikes")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.refilled_at: float | None = None
        self.limited = False  # refused since the last message that was allowed
        self.strikes = 0

    def allow(self, now: float) -> bool:
        if self.refilled_at is not None:
            self.tokens = min(float(self.burst), self.tokens + (now - self.refilled_at) * self.rate)
        self.refilled_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.limited = False
            return True
        self.strikes += 1
        return False

    def take_notice(self) -> bool:
        """True for the first refusal of a run: the client is told once per burst of excess, not
        once per message."""
        if self.limited:
            return False
        self.limited = True
        return True


class ClientQueue:
    """What one client still has to receive, in sending order: control replies, the dropped
    notice, events (oldest first), and then the latest status of each scenario marked dirty.

    ``statuses`` is the hub's own dict of the latest status text broadcast per scenario, shared
    and not copied. A dirty scenario is sent as it stands when its turn comes, so a status that
    was replaced while it waited is never sent."""

    __slots__ = ("subs", "events", "dirty", "control", "dropped", "queue_size", "statuses", "wake", "rate")

    def __init__(self, queue_size: int, statuses: dict[str, str], wake: Callable[[], None] | None = None,
                 rate: RateLimit | None = None) -> None:
        self.subs: frozenset[str] | None = None        # None: every scenario
        self.events: deque[tuple[str, str]] = deque()  # (scenario, text)
        self.dirty: dict[str, None] = {}               # scenarios whose latest broadcast status is unsent
        self.control: deque[str] = deque(maxlen=8)     # replies to the client's own messages
        self.dropped = 0                                # events dropped since the last notice
        self.queue_size = queue_size
        self.statuses = statuses
        self.wake = wake or _nothing
        self.rate = rate or RateLimit(5.0, 20)

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
        self.wake()
        return dropped

    def mark(self, scenario: str) -> bool:
        """A newer status of ``scenario`` is out; returns True if it replaced an unsent one."""
        replaced = scenario in self.dirty
        self.dirty[scenario] = None
        self.wake()
        return replaced

    def reply(self, obj: dict) -> None:
        self.control.append(dumps(obj))
        self.wake()

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
            return dumps({"type": "dropped", "events": n})
        if self.events:
            return self.events.popleft()[1]
        while self.dirty:
            sid = next(iter(self.dirty))
            del self.dirty[sid]
            if sid in self.statuses:
                return self.statuses[sid]
        return None


class BadMessage(ValueError):
    """A client message that is not a valid subscription. Its text is the reply that says why."""


def parse_subscribe(raw: str | bytes, known: set[str]) -> frozenset[str] | None:
    """The scenarios a ``{"subscribe": [...]}`` message asks for, or None for ``"*"`` (all of
    them). Raises :class:`BadMessage` for anything else, including an id not in ``known``."""
    if isinstance(raw, bytes):
        raise BadMessage('send JSON text, e.g. {"subscribe": ["scenario-id"]}')
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadMessage('not JSON; send {"subscribe": ["scenario-id", ...]} or {"subscribe": "*"}') from None
    if not isinstance(msg, dict) or set(msg) != {"subscribe"}:
        raise BadMessage('the only message is {"subscribe": ["scenario-id", ...]} (or "*" for all)')
    want = msg["subscribe"]
    if want == "*":
        return None
    if not isinstance(want, list) or not want or not all(isinstance(s, str) for s in want):
        raise BadMessage("subscribe takes a non-empty list of scenario ids, or \"*\"")
    unknown = [s for s in want if s not in known]
    if unknown:
        raise BadMessage(f"unknown scenario {unknown[0][:80]!r} (known: {', '.join(sorted(known))[:2000]})")
    return frozenset(want)
