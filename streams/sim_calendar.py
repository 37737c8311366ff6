"""The simulated market's calendar: New York Stock Exchange sessions, with their opens and closes
(early closes included), from the maintained ``exchange_calendars`` library (calendar ``XNYS``).
The calendar ends with the last session of 2099: ticks carry event times before 2100.

Apart from the price process (:mod:`.simfeed`) because the source role also asks it, before any
market exists, which session the market starts on (ratiowatch/roles/sim_start.py).
"""

from __future__ import annotations

import warnings
from datetime import date, timedelta

__all__ = ["CALENDAR_END", "CalendarEnd", "xnys_sessions", "session_on_or_after", "next_session_after"]

CALENDAR_END = date(2099, 12, 31)   # ticks carry event times before 2100 (streams/ticks.py MAX_TS_MS)


class CalendarEnd(Exception):
    """The simulated market reached the end of its calendar (:data:`CALENDAR_END`)."""


def xnys_sessions(start: date, end: date = CALENDAR_END) -> tuple[list[date], list[int], list[int]]:
    """The NYSE sessions from ``start`` to ``end`` (both included): (dates, opens, closes), times
    in epoch milliseconds, from ``exchange_calendars`` (early closes included)."""
    import exchange_calendars as xcals

    if start > end:
        return [], [], []
    with warnings.catch_warnings():
        # exchange_calendars 4.13 reads Series.values of tz-aware times, which pandas 3.1 deprecates
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray that drops timezone")
        cal = xcals.get_calendar("XNYS", start=start.isoformat(), end=end.isoformat())
    days = list(cal.sessions.date)
    opens = cal.opens.dt.tz_convert(None).to_numpy().astype("datetime64[ms]").astype("int64").tolist()
    closes = cal.closes.dt.tz_convert(None).to_numpy().astype("datetime64[ms]").astype("int64").tolist()
    return days, opens, closes


def session_on_or_after(day: date) -> date | None:
    """The first NYSE session on or after ``day``; None past :data:`CALENDAR_END`."""
    days, _, _ = xnys_sessions(day, min(CALENDAR_END, day + timedelta(days=30)))
    return days[0] if days else None


def next_session_after(day: date) -> date | None:
    """The first NYSE session strictly after ``day``; None past :data:`CALENDAR_END`."""
    return session_on_or_after(day + timedelta(days=1))
