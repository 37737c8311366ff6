"""The ops HTTP server every role runs on ``--http HOST:PORT``: one port per process.

Endpoints:

==============  =====================================================  ===============
path            what                                                   token
==============  =====================================================  ===============
``/healthz``    200 while the process works (its loop turns), else 503  open
``/readyz``     200 once every readiness check passes, else 503         open
``/metrics``    Prometheus exposition (OpenMetrics when asked for)      required
``/``, ``/status``, ``/ws``  the web role's page, JSON and live stream   required
                (mounted from :meth:`LiveHub.routes`)
``/api/...``    the web role's silence API (roles/silence_api.py):     required; writes
                GET, POST, DELETE; its own token rules                  need one set
==============  =====================================================  ===============

Why health is open: container healthchecks and load balancers probe it without secrets, and the
answer (check names and reasons) carries no market data. Everything else requires the token when
one is set (``RATIOWATCH_TOKEN``): ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``, compared
in constant time -- the same rules as the status page. A browser page of another origin is refused
on every path (cross-site requests to a loopback server).

Binding anything but a loopback address without a token is refused at start
(:class:`HttpExposureError`): metrics and scenario data would be open to the network.

The server is ``websockets``' (already serving the live stream): plain GETs are answered in its
``process_request`` hook, so the page, ``/ws`` and ``/metrics`` share one port.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Mapping
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from ratiowatch.errors import ConfigError
from ratiowatch.streams.live_http import authorized, response, same_origin, unauthorized_response

from .health import Health, Verdict
from .metrics import Metrics

if TYPE_CHECKING:
    from ratiowatch.streams.live import LiveHub

__all__ = ["HttpAddress", "HttpExposureError", "OpsServer", "parse_http_address", "add_http_argument",
           "http_settings", "TOKEN_ENV", "OPS_PATHS"]

TOKEN_ENV = "RATIOWATCH_TOKEN"
OPS_PATHS = ("/metrics", "/healthz", "/readyz")
_OPEN = frozenset({"/healthz", "/readyz"})


class HttpExposureError(ConfigError):
    """``--http`` would serve metrics and data to the network without a token. Set the token
    (env RATIOWATCH_TOKEN) or bind a loopback address (127.0.0.1); the CLI exits with code 2."""

    def __init__(self, flag: str, address: str, problem: str) -> None:
        super().__init__(f"{flag} {address}", "", problem)


@dataclass(frozen=True, slots=True)
class HttpAddress:
    host: str
    port: int  # 0: any free port (see OpsServer.port)

    @property
    def is_loopback(self) -> bool:
        """Only addresses that cannot be reached from another machine. A host name other than
        ``localhost`` counts as exposed: what it resolves to is not ours to know at start."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_http_address(text: str, *, default_host: str = "127.0.0.1") -> HttpAddress:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1). Raises ValueError
    with what was expected."""
    raw = text.strip()
    if raw.startswith("["):
        host, sep, port = raw[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
    elif ":" in raw:
        host, _, port = raw.rpartition(":")
        if ":" in host:
            raise ValueError(f"an IPv6 address needs brackets: [{host}]:{port}")
    else:
        host, port = "", raw
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port 0-65535 (e.g. 127.0.0.1:9464), got {text!r}")
    return HttpAddress(host or default_host, int(port))


def add_http_argument(parser: argparse.ArgumentParser, default_port: int, *, flag: str = "--http") -> None:
    """The same ``--http HOST:PORT`` option for every role command (``args.http``: an
    :class:`HttpAddress`, or None for ``--http off``). Call :func:`http_settings` after parsing."""

    def address(text: str) -> HttpAddress | None:
        if text.strip().lower() == "off":
            return None
        try:
            return parse_http_address(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parser.add_argument(
        flag, type=address, default=HttpAddress("127.0.0.1", default_port), metavar="HOST:PORT",
        help=f"serve /metrics, /healthz, /readyz here (default 127.0.0.1:{default_port}; 'off': none; "
             f"port 0: any free port). A non-loopback address needs a token (env {TOKEN_ENV})")


def http_settings(address: HttpAddress | None, environ: Mapping[str, str] | None = None, *,
                  flag: str = "--http") -> tuple[HttpAddress | None, str | None]:
    """(address, token) for a role, the token from env RATIOWATCH_TOKEN. Raises
    :class:`HttpExposureError` for a non-loopback address without a token."""
    env = os.environ if environ is None else environ
    token = (env.get(TOKEN_ENV) or "").strip() or None
    if address is not None:
        check_exposure(address, token, flag=flag)
    return address, token


def check_exposure(address: HttpAddress, token: str | None, *, flag: str = "--http") -> None:
    if token is None and not address.is_loopback:
        raise HttpExposureError(
            flag, str(address),
            f"serving on a non-loopback address needs a token: set {TOKEN_ENV} (then /metrics, the page "
            "and /ws require it; /healthz and /readyz stay open), or bind 127.0.0.1")


class OpsServer:
    """``/metrics``, ``/healthz``, ``/readyz`` (and the web role's routes when ``live`` is given)
    on one port. Starts the health heartbeat with it; :meth:`close` stops both.

    ``server = await OpsServer(metrics, health).start(address)`` ... ``await server.close()``, or
    ``async with await OpsServer(...).start(address) as server: ...``."""

    def __init__(self, metrics: Metrics, health: Health, *, token: str | None = None,
                 live: LiveHub | None = None, heartbeat_s: float = 1.0) -> None:
        if token is not None and not token.strip():
            raise ValueError("token must be a non-empty string, or None for no token")
        self.metrics, self.health, self.token = metrics, health, token
        self.live = live.routes(token) if live is not None else None
        self.heartbeat_s = heartbeat_s
        self._server: Server | None = None
        self._heartbeat: asyncio.Task | None = None
        self._known = frozenset(OPS_PATHS) | (self.live.paths if self.live else frozenset())

    async def start(self, address: HttpAddress) -> OpsServer:
        check_exposure(address, self.token)  # also for callers that skipped http_settings
        options = self.live.server_options() if self.live else dict(max_size=4096, server_header=None)
        self._server = await serve(self._websocket, address.host, address.port,
                                   process_request=self._process_request, **options)
        self._heartbeat = asyncio.create_task(self.health.heartbeat(self.heartbeat_s), name="ops-heartbeat")
        return self

    @property
    def port(self) -> int:
        """The bound port (useful after asking for port 0)."""
        assert self._server is not None, "not started"
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> OpsServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- requests ---------------------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, req: Request) -> Response | None | Awaitable[Response]:
        path = urlsplit(req.path).path
        api = self.live.api if self.live is not None else None
        if api is not None and api.handles(path):
            return self._api_request(api, req, path)  # its own methods and token rules; websockets awaits it
        method = req.method
        if method not in ("GET", "HEAD"):
            resp: Response | None = response(405, b"only GET (or HEAD) here\n", "text/plain; charset=utf-8",
                                             [("Allow", "GET, HEAD")])
        else:
            resp = self._answer(conn, req, path)
            if method == "HEAD" and resp is not None:
                resp = _headers_only(resp)  # e.g. wget --spider in a container healthcheck
        endpoint = path if path in self._known else "other"
        self.metrics.http_requests.labels(endpoint=endpoint, code=str(resp.status_code if resp else 101)).inc()
        return resp

    def _answer(self, conn: ServerConnection, req: Request, path: str) -> Response | None:
        if self.live is not None and path in self.live.paths:
            return self.live.process_request(conn, req)  # its own origin and token checks, counted in hub.stats
        if not same_origin(req):
            return response(403, b"cross-origin requests are refused\n", "text/plain; charset=utf-8")
        if path not in OPS_PATHS:
            known = ", ".join(sorted(self._known))
            return response(404, f"not found: try {known}\n".encode(), "text/plain; charset=utf-8")
        if path not in _OPEN and not authorized(req, self.token):
            return unauthorized_response()
        if path == "/healthz":
            return _verdict(self.health.liveness())
        if path == "/readyz":
            return _verdict(self.health.readiness())
        body, ctype = self.metrics.exposition(req.headers.get("Accept"))
        return response(200, body, ctype)

    async def _api_request(self, api: Any, req: Request, path: str) -> Response:
        resp = await api.request(req, self.token)
        if req.method == "HEAD":
            resp = _headers_only(resp)
        endpoint = "/api/silences/{id}" if path.startswith("/api/silences/") else path  # ids would explode the labels
        self.metrics.http_requests.labels(endpoint=endpoint, code=str(resp.status_code)).inc()
        return resp

    async def _websocket(self, ws: ServerConnection) -> None:
        # process_request lets a handshake through only for the mounted /ws.
        if self.live is None or urlsplit(ws.request.path).path != self.live.ws_path:
            await ws.close(CloseCode.POLICY_VIOLATION, "no websocket here")
            return
        await self.live.handle(ws)


def _headers_only(resp: Response) -> Response:
    headers = Headers([(k, v) for k, v in resp.headers.raw_items() if k.lower() != "content-length"])
    headers["Content-Length"] = "0"
    return dataclasses.replace(resp, headers=headers, body=b"")


def _verdict(v: Verdict) -> Response:
    return response(200 if v.ok else 503, orjson.dumps(v.as_json()), "application/json")
