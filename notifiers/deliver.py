"""Stage 5c, deliver: the adapters that talk to a channel, and what their failures mean.

Each adapter raises :class:`RetryableError` or :class:`PermanentError` (exceptions.py), already
redacted, so the retry loop never looks inside an error. Apprise does not raise: it returns a
result whose captured log lines say what went wrong (``...error=500.``, ``A Connection error
occurred...``, ``did not finish within...``); :func:`classify` reads those, as Alertmanager's
``Retrier.Check`` reads a status code: 5xx, 408, 425, 429, connection errors and timeouts may pass,
any other 4xx will not.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
from typing import Protocol, TextIO

import apprise

from ratiowatch.config import Channel

from .exceptions import PermanentError, RetryableError
from .redact import Redactor
from .render import Message

__all__ = ["MEDIA", "medium_for", "scheme_of", "classify", "Sender", "ConsoleSender", "AppriseSender",
           "check_url"]

MEDIA = ("slack", "email", "push", "text", "json")

_BY_SCHEME = {
    "email": {"mailto", "mailtos", "ses", "sendgrid", "mailgun", "sparkpost", "postmark", "resend", "smtp2go",
              "brevo", "mailersend", "sendpulse", "o365", "azure"},
    "slack": {"slack", "mmost", "mmosts", "rocket", "rockets"},
    "push": {"ntfy", "ntfys", "pover", "pbul", "gotify", "gotifys", "bark", "barks", "fcm", "join", "prowl",
             "pushed", "pjet", "pjets", "spush", "psafer", "psafers", "pushme", "pushy", "twilio", "sns"},
    "json": {"json", "jsons", "form", "forms", "xml", "xmls"},
}

_RETRY_STATUS = {408, 425, 429}


def scheme_of(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else url


def medium_for(channel: Channel) -> str:
    """The channel's ``format``, or for ``auto`` the medium its URL scheme implies (text otherwise)."""
    if channel.format != "auto":
        return channel.format
    scheme = scheme_of(channel.url)
    for medium, schemes in _BY_SCHEME.items():
        if scheme in schemes:
            return medium
    return "text"


def classify(messages: list[str]) -> bool:
    """True when another attempt may succeed, from apprise's log lines for a failed send."""
    text = " ".join(messages)
    codes = [int(c) for c in re.findall(r"error=(\d{3})\b", text)]
    if codes:
        return all(c >= 500 or c in _RETRY_STATUS for c in codes)
    if "no service(s) to notify" in text.lower():
        return False
    return True  # connection errors, timeouts, anything unrecognised: bounded by the retry policy


def check_url(url: str) -> bool:
    """Whether apprise understands ``url`` (checked at start, so a typo fails there, not at 3am)."""
    return url == "console" or apprise.Apprise().add(url)


class Sender(Protocol):
    async def send(self, channel: Channel, message: Message, chart_png: bytes | None, timeout_s: float) -> None:
        """Deliver or raise DeliveryError."""


class ConsoleSender:
    """The built-in ``console`` channel: the message text on stdout, for people watching a terminal."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out

    async def send(self, channel: Channel, message: Message, chart_png: bytes | None, timeout_s: float) -> None:
        out = self.out if self.out is not None else sys.stdout
        out.write(message.body.rstrip("\n") + "\n\n")
        out.flush()


class AppriseSender:
    """Any apprise URL. One ``Apprise`` object per attempt: apprise remembers per object which email
    recipients already got a message, and a fresh object keeps our retry semantics our own."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    async def send(self, channel: Channel, message: Message, chart_png: bytes | None, timeout_s: float) -> None:
        a = apprise.Apprise()
        if not a.add(channel.url):
            raise PermanentError(f"channel {channel.name}: apprise does not understand its URL")
        with tempfile.TemporaryDirectory(prefix="ratiowatch-chart-") as tmp:
            attach = None
            if chart_png is not None:
                path = os.path.join(tmp, "chart.png")
                await asyncio.to_thread(_write, path, chart_png)
                attach = apprise.AppriseAttachment(path)
            result = await a.async_notify(body=message.body, title=message.title, body_format=message.body_format,
                                          attach=attach, timeout=timeout_s)
        if result:
            return
        lines = [e.message for e in result.logs()]
        detail = self.redactor.text("; ".join(lines) or f"apprise reported {result.status.name}")
        err = f"channel {channel.name}: {detail}"
        if result.status == apprise.AppriseResultStatus.TIMEOUT or classify(lines):
            raise RetryableError(err)
        raise PermanentError(err)


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
