"""Secrets out of everything we print: channel URLs shown as scheme and host only, and any
fragment of a configured URL (user, password, token, path, query value) replaced in free text.

Apprise URLs carry their credentials inline (``mailto://user:pass@host``,
``slack://TOKEN_A/TOKEN_B/TOKEN_C``), and error texts from apprise or a server may quote them.
So redaction works on two levels: :func:`redact_url` for a URL we print on purpose, and
:class:`Redactor` for any text (log lines, errors, records) that might quote a URL or part of it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Iterable
from urllib.parse import unquote

__all__ = ["SECRET", "redact_url", "url_fragments", "Redactor", "RedactingFilter"]

SECRET = "<secret>"

# Shorter fragments cannot be told apart from ordinary words; real tokens and passwords are longer.
_MIN_FRAGMENT = 4
_MIN_CREDENTIAL = 3


def _split(url: str) -> tuple[str, str, str, str, str, str]:
    """(scheme, userinfo, host[:port], path, query, fragment) without any normalisation, so that
    unusual apprise URLs (an '@' inside a password, a token as host) still split predictably."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", "", "", url, "", ""
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    return scheme, userinfo if at else "", hostport, slash + path, query, fragment


def _is_network_host(host: str) -> bool:
    """A DNS name or an IP address is shown; anything else in the host position (slack://TOKEN,
    a webhook id) is a credential in apprise's URL grammar and is hidden."""
    h = host.strip("[]")
    if h == "localhost" or "." in h and re.fullmatch(r"[A-Za-z0-9.-]+", h):
        return True
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """``mailto://user:pw@smtp.example.com:587/x?to=a@b.c`` -> ``mailto://<secret>@smtp.example.com:587/<secret>?to=<secret>``."""
    scheme, userinfo, hostport, path, query, fragment = _split(url)
    if not scheme:
        return url if url == "console" else SECRET
    host, colon, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    if not colon:
        host, port = hostport, ""
    out = f"{scheme}://"
    if userinfo:
        out += f"{SECRET}@"
    if host:
        out += host if _is_network_host(host) else SECRET
    if port:
        out += f":{port}" if port.isdigit() else f":{SECRET}"
    segments = [s for s in path.split("/") if s]
    if segments:
        out += "/" + "/".join(SECRET for _ in segments)
    if query:
        out += "?" + "&".join(f"{kv.partition('=')[0]}={SECRET}" for kv in query.split("&") if kv)
    if fragment:
        out += f"#{SECRET}"
    return out


def url_fragments(url: str) -> set[str]:
    """Every piece of ``url`` that may be a secret, raw and percent-decoded."""
    scheme, userinfo, hostport, path, query, fragment = _split(url)
    if not scheme:
        return set()
    creds: set[str] = set()
    pieces: set[str] = {url, fragment}
    if userinfo:
        pieces.add(userinfo)
        creds.update(userinfo.partition(":")[::2])
    host = hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport
    if host and not _is_network_host(host):
        pieces.add(host)
    pieces.update(path.split("/"))
    pieces.update(kv.partition("=")[2] for kv in query.split("&"))
    found = {p for p in pieces if len(p) >= _MIN_FRAGMENT} | {c for c in creds if len(c) >= _MIN_CREDENTIAL}
    return found | {unquote(f) for f in found}


class Redactor:
    """Replaces every secret fragment of the given URLs in a text with ``<secret>``."""

    def __init__(self, urls: Iterable[str]) -> None:
        fragments: set[str] = set()
        for u in urls:
            fragments |= url_fragments(u)
        # Longest first, so a whole URL is replaced before the pieces it contains.
        ordered = sorted(fragments, key=len, reverse=True)
        self._re = re.compile("|".join(re.escape(f) for f in ordered)) if ordered else None

    def text(self, s: object) -> str:
        s = str(s)
        return self._re.sub(SECRET, s) if self._re is not None else s


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message, for loggers we do not own (apprise's)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = self.redactor.text(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True
