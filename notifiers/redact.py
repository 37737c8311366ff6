"""Secrets out of everything we print: channel URLs shown as scheme and host only, and any
fragment of a configured URL (user, password, token, path, query value) replaced in free text.

Apprise URLs carry their credentials inline (``mailto://user:pass@host``,
``slack://TOKEN_A/TOKEN_B/TOKEN_C``), and error texts from apprise or a server may quote them.
So redaction works on two levels: :func:`redact_url` for a URL we print on purpose, and
:class:`Redactor` for any text (log lines, errors, records) that might quote a URL or part of it.

A URL is read the way apprise reads it (:func:`apprise_parse`: the plugin's own ``parse_url``), so
the host and port we print are the ones apprise will connect to: a password with a raw ``@`` shows
up as a wrong host instead of being hidden by a different reading of the URL.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any, Iterable
from urllib.parse import unquote

__all__ = ["SECRET", "redact_url", "url_fragments", "apprise_parse", "url_problem", "Redactor", "RedactingFilter"]

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


_QUERY_KEY = re.compile(r"[+:-]?[A-Za-z][A-Za-z0-9_-]{0,31}")


def apprise_parse(url: str) -> dict[str, Any] | None:
    """``url`` broken apart exactly as apprise does before it builds a notifier (its
    ``plugins.url_to_dict``, without the log lines that quote parts of the URL): the plugin's
    ``parse_url`` for a known scheme, else the first plugin that takes it as a native URL
    (``https://hooks.slack.com/...``). Keys include ``schema``, ``host``, ``port``, ``user``,
    ``password`` (still percent-encoded; the plugin decodes them), ``fullpath`` and ``qsd``.
    None when apprise cannot parse it."""
    from apprise.plugins import N_MGR
    from apprise.utils.parse import GET_SCHEMA_RE

    url_ = url.replace("/#", "/%23")  # what url_to_dict does with #channel paths
    m = GET_SCHEMA_RE.match(url_)
    if m is None:
        return None
    schema = m.group("schema").lower()
    try:
        if schema in N_MGR:
            return N_MGR[schema].parse_url(url_) or None
        for plugin in N_MGR.plugins():
            results = plugin.parse_native_url(url_)
            if results:
                return results
    except Exception:  # a plugin's parser choking on odd input: apprise would not load it either
        return None
    return None


def redact_url(url: str) -> str:
    """``mailto://user:pw@smtp.example.com:587/x?to=a@b.c`` -> ``mailto://<secret>@smtp.example.com:587/<secret>?to=<secret>``.

    Scheme, host and port are apprise's reading of the URL (a native URL shows as the apprise
    scheme it becomes); a URL apprise cannot parse prints as ``scheme://<secret>``."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if not scheme:
        return url if url == "console" else SECRET
    r = apprise_parse(url)
    if r is None:
        return f"{scheme}://{SECRET}"
    out = f"{r.get('schema') or scheme}://"
    if r.get("user") or r.get("password"):
        out += f"{SECRET}@"
    host = str(r.get("host") or "")
    if host:
        out += host if _is_network_host(host) else SECRET
    port = r.get("port")
    if port not in (None, ""):
        out += f":{port}" if isinstance(port, int) or str(port).isdigit() else f":{SECRET}"
    segments = [s for s in str(r.get("fullpath") or "").split("/") if s]
    if segments:
        out += "/" + "/".join(SECRET for _ in segments)
    qsd = r.get("qsd") or {}
    if qsd:
        # apprise's option names are plain words; anything else in a key is a piece of a secret
        out += "?" + "&".join(f"{k if _QUERY_KEY.fullmatch(str(k)) else SECRET}={SECRET}" for k in qsd)
    return out


def url_problem(url: str) -> str | None:
    """Why apprise will not use ``url`` as written, in words that quote no part of it; None when
    apprise parses it and finds the host (and port) where the URL's authority puts them
    (RFC 3986: after the last '@', before the first '/', '?' or '#')."""
    if url == "console":
        return None
    if "://" not in url:
        return "not an apprise URL (scheme://...)"
    r = apprise_parse(url)
    if r is None:
        return "apprise cannot parse this URL"
    scheme, userinfo, hostport, _path, _query, _frag = _split(url)
    if r.get("schema") != scheme.lower():
        return None  # a native URL (https://hooks.slack.com/...): apprise rewrites it
    host, port = hostport, None
    m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:]*)(?::(\d*))?", hostport)
    if m:
        host, port = m.group(1), int(m.group(2)) if m.group(2) else None
    credentials = userinfo or r.get("user") or r.get("password") or m is None
    if credentials and (str(r.get("host") or "").lower(), r.get("port")) != (host.lower(), port):
        return ("apprise reads a different host or port than the URL's authority: the user or password "
                "has a raw reserved character (@ : / ? # %); give it as ${VAR} (encoded for you) or "
                "percent-encode it (%40 for @)")
    qsd = r.get("qsd") or {}
    if userinfo and not {"user", "pass", "password"} & set(qsd):
        user, colon, password = userinfo.partition(":")
        read = (unquote(r.get("user") or ""), unquote(r.get("password") or ""))
        if read != (unquote(user), unquote(password) if colon else ""):
            return ("apprise reads a different user or password than the URL's user info: a raw ':' or '@' "
                    "in the password; give it as ${VAR} (encoded for you) or percent-encode it (%3A for :)")
    return None


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
    r = apprise_parse(url)  # and apprise's reading, which may split the URL elsewhere
    if r is not None:
        for key in ("user", "password"):
            if isinstance(r.get(key), str):
                creds.add(r[key])
        h = str(r.get("host") or "")
        if h and not _is_network_host(h):
            pieces.add(h)
        pieces.update(str(r.get("fullpath") or "").split("/"))
        pieces.update(str(v) for v in (r.get("qsd") or {}).values())
    found = {p for p in pieces if len(p) >= _MIN_FRAGMENT} | {c for c in creds if len(c) >= _MIN_CREDENTIAL}
    return found | {unquote(f) for f in found}


class Redactor:
    """Replaces every secret fragment of the given URLs in a text with ``<secret>``."""

    def __init__(self, urls: Iterable[str]) -> None:
        self._fragments: set[str] = set()
        self._re: re.Pattern[str] | None = None
        self.add(urls)

    def add(self, urls: Iterable[str]) -> None:
        """Redact these URLs' secrets too (channels added at run time), everywhere this redactor is used."""
        for u in urls:
            self._fragments |= url_fragments(u)
        # Longest first, so a whole URL is replaced before the pieces it contains.
        ordered = sorted(self._fragments, key=len, reverse=True)
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
