"""A simulated market for the embedded default: correlated random walks with regime shifts.

Time is compressed: each step is one intraday print and ``steps_per_session`` steps make a
trading session, so a 63-session lookback fills within seconds. The market chops until the
lookback windows have filled (a rule's first evaluation only arms it), then small caps rally, so
the shipped IWM/SPY scenario crosses within the first minute; later regimes are drawn at random
(rallies, slumps, dollar and curve moves). Deterministic for a given seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Iterator
from zoneinfo import ZoneInfo

from .ticks import Tick

__all__ = ["SimMarket", "DEFAULT_SYMBOLS"]

# symbol: (start level, daily volatility, beta to the market factor, "yield" = moves additively)
_SPECS: dict[str, tuple[float, float, float, bool]] = {
    "SPY": (560.0, 0.010, 1.0, False),
    "IWM": (210.0, 0.012, 1.1, False),
    "RSP": (170.0, 0.009, 0.95, False),
    "QQQ": (480.0, 0.013, 1.15, False),
    "XLF": (45.0, 0.011, 1.05, False),
    "KRE": (55.0, 0.016, 1.2, False),
    "XLI": (130.0, 0.010, 1.0, False),
    "XBI": (95.0, 0.018, 1.2, False),
    "HYG": (78.0, 0.003, 0.3, False),
    "UUP": (28.0, 0.004, -0.2, False),
    "DXY": (103.0, 0.004, -0.2, False),
    "DGS10": (4.25, 0.05, 0.0, True),
    "DGS2": (4.40, 0.05, 0.0, True),
}
DEFAULT_SYMBOLS = tuple(_SPECS)

# A regime adds a drift per session to some symbols (relative; yields: points).
_REGIMES: list[dict[str, float]] = [
    {"IWM": 0.0030, "KRE": 0.0025, "RSP": 0.0012, "XLI": 0.0010, "XBI": 0.0020, "DXY": -0.0008,
     "DGS10": 0.004, "DGS2": -0.004},                                   # small-cap rally, curve steepens
    {"IWM": -0.0030, "KRE": -0.0030, "HYG": -0.0012, "DXY": 0.0008},    # risk-off: small caps and credit slump
    {"RSP": 0.0015, "XLI": 0.0015, "XLF": 0.0008},                      # broadening
    {"DXY": -0.0015, "UUP": -0.0015},                                   # dollar slide
    {"DGS2": -0.010, "DGS10": -0.002},                                  # curve un-inverts via front end
    {},                                                                 # drift-less chop
]


@dataclass
class _Leg:
    level: float
    vol: float
    beta: float
    additive: bool


class SimMarket:
    """Yields one batch of ticks (every symbol) per step, stamped with simulated event time."""

    def __init__(self, symbols: tuple[str, ...] = DEFAULT_SYMBOLS, *, seed: int = 7,
                 start: date = date(2026, 1, 2), steps_per_session: int = 4, tz: str = "America/New_York",
                 levels: dict[str, float] | None = None) -> None:
        """``levels``: starting prices (e.g. the last closes of a warm-start history)."""
        unknown = [s for s in symbols if s not in _SPECS]
        self._rng = random.Random(seed)
        self.steps_per_session = steps_per_session
        self._tz = ZoneInfo(tz)
        self._day = start
        self._step = 0
        self._legs = {s: _Leg(*_SPECS.get(s, (100.0, 0.01, 1.0, False))) for s in symbols}
        for s in unknown:  # any other symbol: a generic stock
            self._legs[s] = _Leg(50.0 + self._rng.random() * 100, 0.012, 1.0, False)
        for s, level in (levels or {}).items():
            if s in self._legs:
                self._legs[s].level = level
        # (regime, sessions): chop while the windows fill, then the small-cap rally.
        self._schedule = [(_REGIMES[-1], 70), (_REGIMES[0], 90)]
        self._regime, self._regime_left = {}, 0

    def _next_regime(self) -> None:
        if self._schedule:
            self._regime, sessions = self._schedule.pop(0)
        else:
            self._regime, sessions = self._rng.choice(_REGIMES), self._rng.randint(40, 120)
        self._regime_left = sessions * self.steps_per_session

    def _advance_clock(self) -> int:
        """Event time of the current step: intraday prints spread over 09:30-16:00, last at 16:00."""
        k = self._step % self.steps_per_session
        minutes = 570 + (390 * (k + 1)) // self.steps_per_session  # 09:30 + fraction of 6.5 h
        t = datetime(self._day.year, self._day.month, self._day.day, tzinfo=self._tz) + timedelta(minutes=minutes)
        self._step += 1
        if self._step % self.steps_per_session == 0:
            self._day += timedelta(days=1)
            while self._day.weekday() >= 5:
                self._day += timedelta(days=1)
        return int(t.timestamp() * 1000)

    def step(self) -> list[Tick]:
        ts = self._advance_clock()
        if self._regime_left <= 0:
            self._next_regime()
        self._regime_left -= 1
        scale = 1.0 / math.sqrt(self.steps_per_session)
        market = self._rng.gauss(0.0, 0.008) * scale
        out = []
        for sym, leg in self._legs.items():
            drift = self._regime.get(sym, 0.0) / self.steps_per_session
            shock = leg.beta * market + self._rng.gauss(0.0, leg.vol) * scale
            if leg.additive:
                leg.level = max(0.05, leg.level + drift + shock * 0.5)
            else:
                leg.level *= math.exp(drift + shock)
            out.append(Tick(sym, round(leg.level, 4), ts))
        return out

    def __iter__(self) -> Iterator[list[Tick]]:
        while True:
            yield self.step()
