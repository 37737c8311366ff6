"""Real peers on 127.0.0.1 for delivery tests: an HTTP server that records every request, and an
SMTP server (aiosmtpd) with a login and no TLS (apprise mailto:// without mode= is plain SMTP)."""

from __future__ import annotations

import asyncio
import email
import email.policy

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult

__all__ = ["HttpPeer", "SmtpPeer"]


class HttpPeer:
    """An HTTP server recording every request; answers 200 with a JSON body."""

    def __init__(self):
        self.requests: list[tuple[str, dict, bytes]] = []
        self.got = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers), await request.read()))
        self.got.set()
        return web.json_response({"id": "ok"})

    async def start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    async def stop(self):
        await self.runner.cleanup()

    def at(self, path: str) -> list[bytes]:
        return [b for p, _h, b in self.requests if p == path]


class SmtpPeer:
    """aiosmtpd on 127.0.0.1 with a login, no TLS (apprise mailto:// without mode= is plain SMTP)."""

    def __init__(self, login: bytes = b"alerts-bot", password: str = "pa55-Word-Never-Shown"):
        self.messages: list[email.message.EmailMessage] = []
        self.logins: list[tuple[bytes, bytes]] = []
        self.login, self.password = login, password

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def _auth(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.login == self.login and auth_data.password == self.password.encode())

    async def start(self, port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self, hostname="127.0.0.1", authenticator=self._auth, auth_require_tls=False),
            "127.0.0.1", port)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()
