"""The live hub over HTTP, part of its server side (with ``live.py``). It serves the status page,
``/status`` and the ``/ws`` websocket as routes that any ``websockets`` server can mount: the
hub's own server (:meth:`LiveHub.serve`), or the ops server of ``ratiowatch.ops.http`` beside
``/metrics``. Both share the access rules here.

Access: with a token, ``/``, ``/status`` and ``/ws`` require it (``?token=`` or
``Authorization: Bearer``, compared in constant time); a bad one gets HTTP 401 or websocket close
1008 and is counted in ``LiveHub.stats``. The page's code (``/status.js``, ``/status.css``) is
open. Browser pages from other origins are refused (cross-site websocket hijacking).

A websocket client gets its queue from the hub and a writer task of its own, woken when the queue
gets something to send. What goes into that queue, and in what order, is decided in the pure part
(``live_fanout.py``, ``live_client.py``), never here.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import logging
from email.utils import formatdate
from importlib import resources
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

if TYPE_CHECKING:
    from .live import LiveHub
    from .live_client import ClientQueue

__all__ = ["LiveRoutes", "authorized", "same_origin", "response", "unauthorized_response"]

log = logging.getLogger("ratiowatch.streams.live")  # one logger for the hub, as before the split

# The page may load only its own files and talk only to its own server: nothing from outside.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_ASSETS = {"/": ("status.html", "text/html; charset=utf-8"),
           "/status.js": ("status.js", "text/javascript; charset=utf-8"),
           "/status.css": ("status.css", "text/css; charset=utf-8")}
_PUBLIC = {"/status.js", "/status.css"}  # code, not data: no token needed


class LiveRoutes:
    """The hub's requests for one token: :meth:`process_request` for the HTTP side (and the
    checks before a websocket handshake), :meth:`handle` for an accepted ``/ws`` connection.
    A server mounting them sends requests for :attr:`paths` here and answers the rest itself."""

    paths = frozenset({*_ASSETS, "/status", "/ws"})
    ws_path = "/ws"

    def __init__(self, hub: LiveHub, token: str | None = None) -> None:
        if token is not None and not token.strip():
            raise ValueError("token must be a non-empty string, or None for no token")
        self.hub = hub
        self.token = token
        self.api = hub.api  # handles(path), async request(req, token) -> Response; or None
        web = resources.files("ratiowatch.streams").joinpath("web")
        self._assets = {name: web.joinpath(name).read_bytes() for name, _ in _ASSETS.values()}

    def server_options(self) -> dict[str, Any]:
        """Keyword arguments for ``websockets.asyncio.server.serve`` that the hub relies on."""
        return dict(
            max_size=self.hub.max_message_bytes,
            # Every client gets the same texts; compressing them per client would cost CPU per client.
            compression=None,
            ping_interval=20, ping_timeout=20, close_timeout=5,
            server_header=None,
        )

    def process_request(self, conn: ServerConnection, req: Request) -> Response | None:
        """A response, or None to let the websocket handshake of ``/ws`` go on (404 outside :attr:`paths`)."""
        stats = self.hub.stats
        url = urlsplit(req.path)
        if not same_origin(req):
            # A page from another site (or a rebinding DNS name) must not read our data.
            stats["bad_origin"] += 1
            return response(403, b"cross-origin requests are refused\n", "text/plain; charset=utf-8")
        if url.path == self.ws_path:
            return None  # the websocket handshake; the token is checked in handle (close 1008)
        if url.path not in self.paths:
            return response(404, b"not found: try /, /status or /ws\n", "text/plain; charset=utf-8")
        if url.path not in _PUBLIC and not authorized(req, self.token):
            stats["unauthorized"] += 1
            return unauthorized_response()
        if url.path == "/status":
            body = orjson.dumps({"scenarios": list(self.hub.snapshot().values())}, default=str)
            return response(200, body, "application/json")
        name, ctype = _ASSETS[url.path]
        extra = [("Content-Security-Policy", _CSP)] if name.endswith(".html") else []
        return response(200, self._assets[name], ctype, extra)

    async def handle(self, ws: ServerConnection) -> None:
        """One websocket client, from the token check to its disconnect."""
        hub = self.hub
        hub.stats["connections"] += 1
        if not authorized(ws.request, self.token):
            hub.stats["unauthorized"] += 1
            log.warning("live: refused a websocket from %s: bad or missing token", ws.remote_address)
            await ws.close(CloseCode.POLICY_VIOLATION, "unauthorized")
            return
        wake = asyncio.Event()
        c = hub.attach(wake.set)
        writer = asyncio.create_task(_write(ws, c, wake))
        try:
            async for raw in ws:
                if not hub._on_message(c, raw):
                    log.warning("live: closing %s: too many messages", ws.remote_address)
                    await ws.close(CloseCode.POLICY_VIOLATION, "rate limit")
                    break
        except ConnectionClosedError as e:
            if e.sent is not None and e.sent.code == CloseCode.MESSAGE_TOO_BIG:
                hub.stats["oversized"] += 1
        finally:
            hub.detach(c)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)


async def _write(ws: ServerConnection, c: ClientQueue, wake: asyncio.Event) -> None:
    """Send what the client's queue holds, each time it is woken; awaits only this client's socket."""
    while True:
        await wake.wait()
        wake.clear()
        while (text := c.next_message()) is not None:
            await ws.send(text)


def same_origin(req: Request) -> bool:
    """False for a browser request sent by a page of another origin (its Origin names another
    host than the one it asked); requests without Origin (curl, Prometheus) are not browsers'."""
    origin = req.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == req.headers.get("Host", "")


def unauthorized_response() -> Response:
    return response(401, b"a token is required: ?token=... or Authorization: Bearer ...\n",
                     "text/plain; charset=utf-8", [("WWW-Authenticate", 'Bearer realm="ratiowatch"')])


def authorized(req: Request, token: str | None) -> bool:
    """The request carries ``token`` (``Authorization: Bearer`` or ``?token=``), compared in constant
    time; any request is authorized when there is no token."""
    if token is None:
        return True
    given = None
    auth = req.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    else:
        q = parse_qs(urlsplit(req.path).query).get("token")
        given = q[0] if q else None
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def response(status: int, body: bytes, ctype: str, extra: Iterable[tuple[str, str]] = ()) -> Response:
    """A complete HTTP response with the headers every answer of ours carries."""
    headers = Headers([("Date", formatdate(usegmt=True)), ("Connection", "close"),
                       ("Content-Length", str(len(body))), ("Content-Type", ctype),
                       ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                       ("Referrer-Policy", "no-referrer"), *extra])
    return Response(status, http.HTTPStatus(status).phrase, headers, body)
