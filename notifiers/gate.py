"""Quiet hours and rate limit: when a channel may send next. Pure: time is passed in.

Nothing is dropped here. A message that may not go now is held in the channel's queue, in order,
and the worker sleeps until :meth:`Gate.open_at` says the channel is open again.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from ratiowatch.model import Channel

__all__ = ["quiet_until", "RateLimiter", "Gate"]


def _hhmm(s: str) -> time:
    h, m = s.split(":")
    return time(int(h), int(m))


def quiet_until(now: float, quiet: tuple[str, str] | None, tz: str) -> float | None:
    """When the quiet period around ``now`` (epoch seconds) ends, or None if ``now`` is not in
    one. ``quiet`` is ("22:00", "07:00") in the channel's local time; a start after the end
    spans midnight."""
    if quiet is None:
        return None
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(now, zone)
    start, end, t = _hhmm(quiet[0]), _hhmm(quiet[1]), local.time()
    if start < end:
        if not (start <= t < end):
            return None
        end_day = local.date()
    else:
        if t < end:
            end_day = local.date()
        elif t >= start:
            end_day = local.date() + timedelta(days=1)
        else:
            return None
    return datetime.combine(end_day, end, zone).timestamp()


class RateLimiter:
    """At most ``per_min`` sends in any 60 seconds (a sliding window, so no burst at a minute
    boundary can double the rate)."""

    WINDOW_S = 60.0

    def __init__(self, per_min: int | None) -> None:
        self.per_min = per_min
        self._sent: deque[float] = deque()

    def open_at(self, now: float) -> float:
        """The earliest time at or after ``now`` when a send is allowed."""
        if self.per_min is None:
            return now
        while self._sent and self._sent[0] <= now - self.WINDOW_S:
            self._sent.popleft()
        if len(self._sent) < self.per_min:
            return now
        return self._sent[len(self._sent) - self.per_min] + self.WINDOW_S

    def take(self, now: float) -> None:
        if self.per_min is not None:
            self._sent.append(now)


class Gate:
    """A channel's quiet hours and rate limit together."""

    def __init__(self, channel: Channel) -> None:
        self.quiet, self.tz = channel.quiet_hours, channel.timezone
        self.limiter = RateLimiter(channel.rate_limit_per_min)

    def open_at(self, now: float) -> float:
        end = quiet_until(now, self.quiet, self.tz)
        return self.limiter.open_at(now if end is None else end)

    def take(self, now: float) -> None:
        self.limiter.take(now)
