"""Deliver: the adapters that talk to a channel, and what their failures mean.

Each adapter raises :class:`RetryableError` or :class:`PermanentError` (exceptions.py), already
redacted, so the retry loop never looks inside an error. Apprise does not raise: it returns a
result whose captured log lines say what went wrong (``...error=500.``, ``A Connection error
occurred...``, ``did not finish within...``); :func:`classify` reads those, as Alertmanager's
``Retrier.Check`` reads a status code: 5xx, 408, 425, 429, connection errors and timeouts may pass,
any other 4xx will not.

Apprise states the *cause* of a failure (the exception: ``(535, b'5.7.8 Authentication credentials
invalid')``, ``[Errno 111] Connection refused``) only in a DEBUG record of its logger. While an
adapter sends, :class:`_CauseCapture` keeps that send's DEBUG records (a context variable tells
which send a record belongs to, also in apprise's worker threads), and :func:`explain` turns them
into the error: what happened, at which host and port. An SMTP server refusing the login, or
answering 5xx, is permanent (fix the credentials, then ``ratiowatch dlq retry``); a refused or
timed-out connection may pass.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import sys
import tempfile
from typing import Any, Protocol, TextIO

import apprise

from ratiowatch.model import Channel

from .exceptions import PermanentError, RetryableError
from .redact import Redactor
from .render import Message

__all__ = ["MEDIA", "medium_for", "scheme_of", "classify", "explain", "endpoint_of", "Sender", "ConsoleSender",
           "AppriseSender", "check_url"]

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


# SMTP replies to AUTH that mean "these credentials will not do" (RFC 4954): 530 auth required,
# 534 mechanism too weak, 535 credentials invalid.
_SMTP_AUTH_CODES = {530, 534, 535}
_SMTP_REPLY = re.compile(r"\((\d{3}), b?(['\"])(.*?)\2")
_HTTP_PEER = re.compile(r"host='([^']*)', port=(\d+)")


def endpoint_of(plugin: Any, scheme: str) -> str | None:
    """``host:port`` an apprise service talks to, where its URL names one: the SMTP server of an
    email service (its default port included), the host of a self-hosted one (json://, ntfy://...).
    None for services whose URL holds tokens rather than a host (slack://T/B/C)."""
    host = getattr(plugin, "smtp_host", None)
    if not host and scheme not in _HOSTED:
        return None
    host = host or getattr(plugin, "host", None)
    if not host:
        return None
    port = getattr(plugin, "port", None) or (443 if getattr(plugin, "secure", False) else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Schemes whose URL host is the server contacted (the rest name a cloud service by token).
_HOSTED = {"json", "jsons", "form", "forms", "xml", "xmls", "ntfy", "ntfys", "gotify", "gotifys", "mmost",
           "mmosts", "rocket", "rockets", "bark", "barks", "pjet", "pjets", "psafer", "psafers"}


def explain(causes: list[str], endpoint: str | None, *, timed_out_s: float | None = None) -> tuple[str | None, bool | None]:
    """What went wrong, as a sentence naming the host and port, from apprise's DEBUG lines of a
    failed send (``causes``: ``Socket Exception: ...`` and the like), and whether another attempt
    may succeed (None: not known from the cause; :func:`classify` decides). (None, None) when the
    lines say nothing recognisable."""
    texts = [c.split("Exception:", 1)[1].strip() for c in causes if "Exception:" in c]
    if not texts:
        if timed_out_s is not None and endpoint:
            return f"no answer from {endpoint} within {timed_out_s:g}s", True
        return None, None
    cause = texts[-1]
    if m := _HTTP_PEER.search(cause):  # requests/urllib3 name the peer they tried
        endpoint = f"{m.group(1)}:{m.group(2)}"
    at = f" {endpoint}" if endpoint else ""
    low = cause.lower()
    if m := _SMTP_REPLY.match(cause):
        code, text = int(m.group(1)), m.group(3)
        if code in _SMTP_AUTH_CODES:
            return (f"the SMTP server{at} refused the login ({code} {text}): check the user name and "
                    "password in the channel URL", False)
        return f"the SMTP server{at} answered {code} {text}", code < 500
    if "auth extension not supported" in low:
        return (f"the SMTP server{at} does not offer a login (no AUTH): drop the user and password from "
                "the channel URL, or use a server that accepts a login", False)
    if "connection refused" in low or "errno 111" in low:
        return f"connection refused by{at or ' the server'}: is the server running and listening there?", True
    if "name or service not known" in low or "nodename nor servname" in low or "getaddrinfo" in low \
            or "name resolution" in low:
        return f"cannot resolve the host of{at or ' the server'} ({cause})", True
    if "timed out" in low or "timeout" in low:
        return f"no answer from{at or ' the server'} in time ({cause})", True
    if "certificate" in low or "ssl" in low:
        return f"TLS with{at or ' the server'} failed ({cause})", False
    return f"error talking to{at or ' the server'}: {cause}", None


class _CauseCapture(logging.Filter):
    """On apprise's logger: keeps the records of a send in progress (the context variable holds
    that send's list). In a send, the logger makes its DEBUG records too (see
    :func:`_install_capture`); those its level would not make are dropped here once kept, so what
    reaches any handler is what the logger's level lets through, as without this filter."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        buf = _causes.get()
        if buf is not None and record.levelno < logging.WARNING:
            try:
                buf.append(record.getMessage())
            except Exception:  # a malformed record: its handler reports it, if it gets one
                pass
        return logging.Logger.isEnabledFor(self.logger, record.levelno)


_causes: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("ratiowatch_apprise_causes",
                                                                           default=None)
_capture: _CauseCapture | None = None


def _install_capture() -> None:
    """The filter on apprise's logger, and the logger enabled for DEBUG inside a send (only
    there, and never below DEBUG: apprise's TRACE level logs login names). The logger's level is
    left alone, so ``-vv`` or a test's ``caplog.set_level`` still decide what is shown."""
    global _capture
    if _capture is not None:
        return
    logger = logging.getLogger("apprise")
    _capture = _CauseCapture(logger)
    logger.addFilter(_capture)
    plain = logging.Logger.isEnabledFor

    def is_enabled_for(level: int) -> bool:
        return plain(logger, level) or (level >= logging.DEBUG and _causes.get() is not None)

    logger.isEnabledFor = is_enabled_for  # type: ignore[method-assign]


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
        _install_capture()

    async def send(self, channel: Channel, message: Message, chart_png: bytes | None, timeout_s: float) -> None:
        a = apprise.Apprise()
        if not a.add(channel.url):
            raise PermanentError(f"channel {channel.name}: apprise does not understand its URL")
        causes: list[str] = []
        token = _causes.set(causes)  # apprise copies this context into the threads it sends from
        try:
            with tempfile.TemporaryDirectory(prefix="ratiowatch-chart-") as tmp:
                attach = None
                if chart_png is not None:
                    path = os.path.join(tmp, "chart.png")
                    await asyncio.to_thread(_write, path, chart_png)
                    attach = apprise.AppriseAttachment(path)
                result = await a.async_notify(body=message.body, title=message.title,
                                              body_format=message.body_format, attach=attach, timeout=timeout_s)
        finally:
            _causes.reset(token)
        if result:
            return
        lines = [e.message for e in result.logs()]
        timed_out = result.status == apprise.AppriseResultStatus.TIMEOUT
        why, retryable = explain(list(causes), endpoint_of(a[0], scheme_of(channel.url)) if len(a) else None,
                                 timed_out_s=timeout_s if timed_out else None)
        said = "; ".join(lines) or f"apprise reported {result.status.name}"
        err = self.redactor.text(f"channel {channel.name}: " + (f"{why} (apprise: {said})" if why else said))
        if retryable is None:
            retryable = timed_out or classify(lines)
        raise RetryableError(err) if retryable else PermanentError(err)


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
