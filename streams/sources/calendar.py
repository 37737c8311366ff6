"""Session calendars: when a daily observation's session closes. Pure.

- **Exchange** (the default): a session is a calendar date in ``settings.session_timezone``
  (America/New_York for the shipped scenarios) and its close is 16:00 there, the time the engine
  and warm start give a daily close (:func:`ratiowatch.model.sessions.session_close_ts_ms`).
- **24/7** markets (crypto such as ETH/BTC, FRED's Coinbase series CBBTCUSD): trading never
  stops, so a session is a **UTC day** unless another zone is configured
  (``--always-open-tz``), and its close is the last millisecond of that day, 23:59:59.999: the
  observation still belongs to its own date. A scenario of 24/7 legs should set
  ``settings.session_timezone: UTC`` (the same zone) so the engine rolls its sessions at the
  same instant.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

__all__ = ["Calendar", "EXCHANGE_CLOSE"]

EXCHANGE_CLOSE = time(16, 0)


class Calendar(NamedTuple):
    tz: str = "America/New_York"
    always_open: bool = False

    def close_ts_ms(self, d: date) -> int:
        """Event time of date ``d``'s session close."""
        zone = ZoneInfo(self.tz)
        if self.always_open:
            end = datetime.combine(d + timedelta(days=1), time(0, 0), zone)
            return int(end.timestamp() * 1000) - 1
        return int(datetime.combine(d, EXCHANGE_CLOSE, zone).timestamp() * 1000)

    def session_of(self, ts_ms: int) -> date:
        """The session (date) an event time belongs to."""
        return datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(self.tz)).date()
