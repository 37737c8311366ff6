"""The chaos run's peers on 127.0.0.1: the notification endpoint that fails on command, and the
market-data feed that sends garbage.

:class:`HookEndpoint` is where the scenarios' ``json://`` channel posts. Its ``mode`` is what it
does with the next requests: ``ok`` answers 200, ``fail500`` answers 500, ``stall`` holds the
request without answering (longer than the sender waits), ``drop`` closes the connection without
an answer. A delivery counts only when the 200 was written to the client, and what counts is the
event ids inside the posted message (render_json's ``events``), so grouping cannot hide a repeat.

:class:`GarbageFeed` is a websocket server speaking the plain feed format; the run connects the
real :class:`~ratiowatch.streams.feed.FeedClient` to it and sends it bad messages, and can drop
the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["HookEndpoint", "GarbageFeed", "event_ids_of"]

log = logging.getLogger(__name__)

MODES = ("ok", "fail500", "stall", "drop")


def event_ids_of(body: bytes) -> list[str]:
    """The event ids a ``json://`` notification carries (apprise's payload, its ``message`` being
    render_json's document). [] for anything else."""
    try:
        outer = json.loads(body)
        doc = json.loads(outer["message"])
        return [e["event_id"] for e in doc["events"]]
    except (ValueError, KeyError, TypeError):
        return []


class HookEndpoint:
    def __init__(self) -> None:
        self.mode = "ok"
        self.receipts: list[tuple[float, list[str]]] = []   # (monotonic time, event ids) per 200 written
        self.answered: dict[str, int] = {m: 0 for m in MODES}
        self._runner: web.AppRunner | None = None
        self._healed = asyncio.Event()
        self._healed.set()
        self.port = 0

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        if mode == "stall":
            self._healed.clear()
        else:
            self._healed.set()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    async def start(self) -> str:
        app = web.Application(client_max_size=8 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self.url

    async def stop(self) -> None:
        self._healed.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        mode = self.mode
        self.answered[mode] += 1
        if mode == "fail500":
            return web.Response(status=500, text="chaos: failing on purpose\n")
        if mode == "stall":
            await self._healed.wait()  # the sender gave up long ago; it never gets an answer
            return web.Response(status=503, text="chaos: stalled\n")
        if mode == "drop":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # aiohttp treats it as a closed connection
        ids = event_ids_of(body)
        resp = web.Response(status=200, text="{}", content_type="application/json")
        await resp.prepare(request)
        await resp.write_eof()  # raises if the client is gone: then it is not a delivery
        self.receipts.append((time.monotonic(), ids))
        return resp


class GarbageFeed:
    """One client at a time; :meth:`send` returns False when no client is connected."""

    def __init__(self) -> None:
        self._server: Server | None = None
        self._conn: ServerConnection | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self) -> str:
        self._server = await serve(self._handler, "127.0.0.1", 0, max_size=2**20)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def _handler(self, ws: ServerConnection) -> None:
        self._conn = ws
        try:
            async for _ in ws:  # subscribe messages etc.: nothing to answer
                pass
        except ConnectionClosed:  # our own drop, or the client going away
            pass
        finally:
            if self._conn is ws:
                self._conn = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def send(self, payload: bytes) -> bool:
        ws = self._conn
        if ws is None:
            return False
        try:
            text: Any = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = payload  # a binary frame
        try:
            await ws.send(text)
            return True
        except Exception:  # closed under us
            return False

    async def drop(self) -> bool:
        ws = self._conn
        if ws is None:
            return False
        await ws.close(1011, "chaos: dropped on purpose")
        return True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
