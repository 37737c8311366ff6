"""Event time to trading session, and session closes. Pure.

History for lookbacks is made of session closes: the last value of a series in each trading day.
A session is the calendar date of the event time in the settings' session time zone
(America/New_York by default), so a US close at 16:00 and the intraday ticks before it share
one session. ``session_close_ts_ms`` is the inverse used for daily history: 16:00 local.

The engine (agents/), daily history (streams/history.py) and the backtest all stamp and group
ticks this way, so it lives with the model, below all of them.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = ["session_of", "session_close_ts_ms", "iso_utc"]

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@lru_cache(maxsize=8)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def session_of(ts_ms: int, tz: str = "America/New_York") -> int:
    """The session (days since 1970-01-01 of the local date) that ``ts_ms`` falls in."""
    d = datetime.fromtimestamp(ts_ms / 1000, _zone(tz)).date()
    return d.toordinal() - _EPOCH_ORDINAL


def session_close_ts_ms(d: date, tz: str = "America/New_York") -> int:
    """Event time of a daily close on date ``d``: 16:00 in the session time zone."""
    return int(datetime.combine(d, time(16, 0), _zone(tz)).timestamp() * 1000)


def iso_utc(ts_ms: int) -> str:
    """ISO-8601 in UTC with a Z, to the millisecond when it has them."""
    dt = datetime.fromtimestamp(ts_ms / 1000, timezone.utc)
    if ts_ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
