"""The file's ``settings:`` section and each entry of its ``channels:`` section."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ratiowatch.model.config import CHANNEL_FORMATS, Channel, Settings

from .env import interpolate_url
from .keys import Keys

__all__ = ["parse_settings", "parse_channel"]

_DEFAULTS = Settings()  # class attributes of a slots dataclass are descriptors, not the defaults


def parse_settings(file: str, raw: Any) -> Settings:
    if raw is None:
        return Settings()
    k = Keys(file, "settings", raw, {"session_timezone", "allowed_lateness_s", "grace_ms", "partitions",
                                      "signed_symbols"})
    signed = raw.get("signed_symbols") or []
    if not isinstance(signed, list) or not all(isinstance(s, str) and s.strip() for s in signed):
        raise k.err("signed_symbols", f"must be a list of symbols, got {signed!r}")
    tz = k.string("session_timezone", _DEFAULTS.session_timezone)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise k.err("session_timezone", f"unknown time zone {tz!r} (e.g. America/New_York, UTC)") from None
    return Settings(
        session_timezone=tz,
        allowed_lateness_s=k.number("allowed_lateness_s", _DEFAULTS.allowed_lateness_s, minimum=0),
        grace_ms=k.number("grace_ms", _DEFAULTS.grace_ms, minimum=0),
        partitions=k.integer("partitions", _DEFAULTS.partitions, minimum=1),
        signed_symbols=frozenset(s.strip().upper() for s in signed),
    )


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def parse_channel(file: str, name: str, raw: Any, env: dict[str, str] | None, require: bool = True) -> Channel:
    where = f"channels.{name}"
    if isinstance(raw, str):
        raw = {"url": raw}
    k = Keys(file, where, raw, {"url", "rate_limit_per_min", "quiet_hours", "timezone", "format"})
    url_t = k.string("url")
    url, unset = interpolate_url(url_t, env)
    if unset and require:
        v = unset[0]
        raise k.err("url", f"environment variable {v} is not set (set it, or write ${{{v}:-default}})")
    if unset:
        url = ""  # disabled: the command does not notify, and an incomplete URL is never used
    elif url != "console" and "://" not in url:
        raise k.err("url", "must be an apprise URL (scheme://...) or 'console'")
    rate = k.integer("rate_limit_per_min", None, minimum=1)
    quiet = None
    if raw.get("quiet_hours") is not None:
        q = raw["quiet_hours"]
        parts = q.split("-") if isinstance(q, str) else []
        if len(parts) != 2 or not all(_HHMM.match(p.strip()) for p in parts):
            raise k.err("quiet_hours", f"must look like '22:00-07:00', got {q!r}")
        quiet = (parts[0].strip(), parts[1].strip())
        if quiet[0] == quiet[1]:
            raise k.err("quiet_hours", f"start and end are both {quiet[0]}: give a window like '22:00-07:00'")
    tz = k.string("timezone", "America/New_York")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise k.err("timezone", f"unknown time zone {tz!r}") from None
    fmt = k.string("format", "auto")
    if fmt not in CHANNEL_FORMATS:
        raise k.err("format", f"must be one of {', '.join(CHANNEL_FORMATS)}, got {fmt!r}")
    return Channel(name, url, rate, quiet, tz, fmt, unset, url_t)
