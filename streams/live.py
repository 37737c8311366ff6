"""The live hub: where each scenario stands now, pushed to websocket clients and served as a page.
This is the server side of the hub. It reads the clock, runs the pacing timer on the event loop,
and starts or mounts the HTTP and websocket routes of ``live_http.py``. The rules for what each
client is sent, and when, are pure and live in ``live_fanout.py`` and ``live_client.py``, so they
can be tested without sockets, a loop or a clock.

The engine calls :meth:`LiveHub.publish_status` and :meth:`LiveHub.publish_event`; both return at
once (they never await a client). :meth:`LiveHub.serve` starts one server on 127.0.0.1 with the
routes below; :meth:`LiveHub.routes` gives the same routes to mount on another server (the ops
server of ``ratiowatch.ops.http`` serves them beside ``/metrics`` on one port):

- ``/ws``     websocket: JSON messages, each with ``type`` ("status" | "event" | "dropped" |
              "subscribed" | "error"). A client may send ``{"subscribe": ["scenario-id", ...]}``
              (or ``"*"``) to receive only those scenarios.
- ``/``       the status page (``web/status.html``, plain JS that renders from ``/ws``).
- ``/status`` the same data as JSON: ``{"scenarios": [status, ...]}``.

Fan-out rules (``live_fanout.py``):

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
import time
from typing import Any, Callable, Iterable

from websockets.asyncio.server import Server, serve

from .live_client import ClientQueue
from .live_fanout import LiveFanout
from .live_http import LiveRoutes

__all__ = ["LiveHub"]


class LiveHub:
    """Latest status per scenario plus live fan-out to websocket clients. See the module docstring.

    ``now`` (monotonic seconds) paces statuses and rate limits; it is a parameter so tests can
    drive it. ``scenarios`` (ids) lets clients subscribe to scenarios that have no status yet and
    fixes the order of ``/status``. Call ``publish_*`` from the event loop's thread.
    """

    def __init__(self, *, min_interval_ms: float = 250, queue_size: int = 256,
                 now: Callable[[], float] = time.monotonic, scenarios: Iterable[str] | None = None,
                 max_message_bytes: int = 4096, client_rate: tuple[float, int] = (5.0, 20)) -> None:
        self.fanout = LiveFanout(min_interval_s=min_interval_ms / 1000.0, queue_size=queue_size,
                                 scenarios=scenarios, client_rate=client_rate)
        self.max_message_bytes = max_message_bytes
        self._now = now
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        # More routes for the same server: the web role's silence API (ratiowatch/roles/silence_api.py),
        # which OpsServer mounts through routes(); None for none.
        self.api: Any = None
        self.stats = self.fanout.stats  # one dict: the HTTP side counts into it too

    # --- engine side: never awaits ------------------------------------------------------------

    def publish_status(self, status: dict) -> None:
        """The latest status of one scenario (``ScenarioEngine.status()``'s shape)."""
        wait = self.fanout.publish_status(status, self._now())
        if wait is not None:
            self._arm(wait)

    def publish_event(self, event: dict) -> None:
        """A crossing event (agents/events.py JSON); sent with ``type: "event"`` added."""
        self.fanout.publish_event(event)

    def snapshot(self) -> dict[str, dict]:
        """scenario id -> its latest status."""
        return self.fanout.snapshot()

    def flush_due(self) -> None:
        """Send every pending status whose interval has passed (the timer calls this)."""
        self._timer = None
        wait = self.fanout.flush_due(self._now())
        if wait is not None:
            self._arm(wait)

    def close(self) -> None:
        """Stop the pacing timer (pending statuses stay in the snapshot)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

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

    def attach(self, wake: Callable[[], None] | None = None) -> ClientQueue:
        """A new client queue, starting with the current status of every scenario and the recent
        events. The websocket handler drains it when ``wake`` is called; tests can drain it directly."""
        return self.fanout.attach(wake)

    def detach(self, c: ClientQueue) -> None:
        self.fanout.detach(c)

    def _on_message(self, c: ClientQueue, raw: str | bytes) -> bool:
        """Handle one client message; returns False when the client should be disconnected."""
        return self.fanout.on_message(c, raw, self._now())

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
