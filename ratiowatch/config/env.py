"""``${VAR}`` and ``${VAR:-default}`` in a scenario file: filled in from the environment. A
channel URL is filled in with each value percent-encoded where the URL needs it (the userinfo,
a path segment, the query), so a secret cannot change the URL's shape."""

from __future__ import annotations

import os
import re
from urllib.parse import quote

__all__ = ["ENV_RE", "interpolate_env", "interpolate_url"]

ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(text: str, env: dict[str, str] | None = None) -> str:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) with the environment's value, as is. Raises
    KeyError naming the variable when it is unset and has no default. Channel URLs use
    :func:`interpolate_url`, which percent-encodes where the URL needs it."""
    env = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise KeyError(name)

    return ENV_RE.sub(sub, text)


def _url_parts_to_encode(template: str) -> list[bool]:
    """For each ``${...}`` in a URL template: whether its value lands in the userinfo, the path or
    the query (percent-encode it) rather than the scheme or the host and port (as is).

    Decided on the template's own characters, with the substitutions masked out, so a value can
    never move the boundaries: ``mailto://u:${PASS}@host`` encodes PASS; ``${SLACK_URL}`` (no
    ``://`` of its own), ``${SCHEME}://...`` and ``smtp://u:p@${HOST}:${PORT}`` do not.
    """
    spans = [m.span() for m in ENV_RE.finditer(template)]
    masked = list(template)
    for a, b in spans:
        masked[a:b] = "\0" * (b - a)
    text = "".join(masked)
    sep = text.find("://")
    if sep < 0:
        return [False] * len(spans)
    start = sep + 3
    ends = [i for i in (text.find("/", start), text.find("?", start)) if i >= 0]
    auth_end = min(ends) if ends else len(text)
    at = text.rfind("@", start, auth_end)  # the userinfo ends at the authority's last '@'
    out = []
    for a, _b in spans:
        if a < start:
            out.append(False)  # scheme (or a whole-URL variable before a literal '://')
        elif a < auth_end:
            out.append(at >= 0 and a < at)  # userinfo: encode; host and port: as is
        else:
            out.append(True)  # path and query
    return out


def interpolate_url(template: str, env: dict[str, str] | None = None) -> tuple[str, tuple[str, ...]]:
    """A channel URL with its ``${VAR}`` (or ``${VAR:-default}``) filled in: ``(url, unset)``.

    A value substituted into the userinfo, a path segment or the query is percent-encoded (every
    reserved character, ``quote(value, safe='')``), so a password with ``@ : / ? # %`` stays a
    password: apprise decodes it back. A variable that is the whole URL, the scheme, the host or
    the port is used as is. ``unset`` names the variables that are not set and have no default
    (the URL is then incomplete and must not be used).
    """
    env = os.environ if env is None else env
    encode = iter(_url_parts_to_encode(template))
    unset: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        enc = next(encode)
        if name in env:
            value = env[name]
        elif default is not None:
            value = default
        else:
            if name not in unset:
                unset.append(name)
            return m.group(0)
        return quote(value, safe="") if enc else value

    return ENV_RE.sub(sub, template), tuple(unset)
