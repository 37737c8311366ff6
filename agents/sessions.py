"""Event time to trading session, and session closes. Pure.

History for lookbacks is made of session closes: the last value of a series in each trading day.
A session is the calendar date of the event time in the settings' session time zone
(America/New_York by default), so a US close at 16:00 and the intraday ticks before it share
one session. ``session_close_ts`` is the inverse used for daily history: 16:00 local.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = ["session_of", "session_close_ts_ms", "iso_utc", "SessionCloses"]

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


class SessionCloses:
    """A series' values by session, newest last: every past session's close and the current
    session's latest value. Keeps ``keep`` entries, enough for the longest lookback + 1."""

    __slots__ = ("sessions", "values", "keep")

    def __init__(self, keep: int, sessions: list[int] | None = None, values: list[float] | None = None) -> None:
        self.keep = keep
        self.sessions = sessions if sessions is not None else []
        self.values = values if values is not None else []

    def update(self, session: int, value: float) -> None:
        """Record ``value`` as the latest of ``session``. A session before the newest one (a late
        tick from yesterday) corrects that session's close."""
        s = self.sessions
        if not s or session > s[-1]:
            s.append(session)
            self.values.append(value)
            if len(s) > self.keep:
                del s[0]
                del self.values[0]
        elif session == s[-1]:
            self.values[-1] = value
        else:
            for i in range(len(s) - 1, -1, -1):
                if s[i] == session:
                    self.values[i] = value
                    return
                if s[i] < session:
                    s.insert(i + 1, session)
                    self.values.insert(i + 1, value)
                    return

    @property
    def current(self) -> float | None:
        return self.values[-1] if self.values else None

    def past(self, lookback: int) -> float | None:
        """The close ``lookback`` sessions before the current one, or None if not yet known."""
        if len(self.values) <= lookback:
            return None
        return self.values[-1 - lookback]
