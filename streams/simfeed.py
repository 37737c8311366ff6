"""A simulated market for the embedded default: a factor model on exchange sessions, within
realistic bounds per asset class, with scripted opening regimes.

**Calendar.** Prints fall on New York Stock Exchange sessions only, taken from the maintained
``exchange_calendars`` library (calendar ``XNYS``): weekends and holidays such as Labor Day have no
prints, and an early close (13:00 New York, e.g. the day after Thanksgiving) ends that session's
prints at 13:00. Each session has ``steps_per_session`` prints spread evenly from its open to its
close, the last one at the close. Time is compressed: at the default 40 prints a second and 4 per
session, ten sessions pass each second, so a 63-session lookback fills within seconds. The
calendar ends with the last session of 2099 (ticks carry event times before 2100): the market
stops there (:class:`~.sim_calendar.CalendarEnd`). The sessions come from :mod:`.sim_calendar`.

**Start.** The market opens at the first session on or after ``start`` (default 2026-01-02) from
``levels``: the last closes of the warm-start history (``--history``), or the newest prices on the
``ticks`` topic when the source joins a broker that already holds ticks (``ratiowatch.roles.source``
starts it at the session after the newest tick). A symbol without a level starts at its
documented level:

========  ======  =======  ===========================================
symbol    level   class    notes
========  ======  =======  ===========================================
SPY       560.00  market   the market factor (beta 1)
IWM       210.00  small    small caps
RSP       170.00  equity   equal-weight S&P 500
QQQ       480.00  equity   Nasdaq-100
XLK       220.00  equity   technology (shares QQQ's own noise)
XLF        45.00  equity   financials
KRE        55.00  small    regional banks (shares XLF's own noise)
XLI       130.00  equity   industrials
XBI        95.00  biotech  biotech
XLU        72.00  equity   utilities (beta 0.55)
HYG        78.00  credit   high-yield credit
DXY       103.000 dollar   ICE dollar index
UUP        28.00  dollar   tracks DXY
DGS10       4.250 yield    10-year Treasury yield, percent
DGS2        4.400 yield    2-year Treasury yield, percent (10y-2y: -0.15)
========  ======  =======  ===========================================

Any other symbol is a generic stock (beta 1, 0.8% own daily noise) at a level drawn from the seed.

**Moves.** A market factor (1.05% daily volatility, +0.03% drift a session) drives every price
through its beta; each symbol adds its own noise, calibrated on the 2007-2026 daily history (e.g.
IWM against SPY 0.65% a day, XLI against SPY 0.45%, DXY 0.45%, yields 0.055 points with a 0.78
correlation between the 2- and 10-year), and the drift of the current regime. Bounds per asset
class (:data:`ASSET_CLASSES`): the regime drift summed over any 63 sessions is capped, a
63-session move beyond a band is pulled back (half the excess a session), and the dollar, credit
and yields revert toward their start level (they range, they do not trend away):

==========  =======================  ==================  ==================  ===================
class       symbols                  drift cap, 63 s.    band, 63 s.         reversion half-life
==========  =======================  ==================  ==================  ===================
market      SPY (the factor)         8%                  15%                 none
equity      RSP QQQ XLK XLF XLI XLU  5% vs the market    7% vs the market    none
small       IWM KRE                  14% vs the market   13% vs the market   none
biotech     XBI                      18% vs the market   20% vs the market   none
credit      HYG                      4%                  6%                  70 sessions
dollar      DXY UUP                  5%                  7%                  115 sessions
yield       DGS10 DGS2               0.60 points         1.00 points         175 sessions
==========  =======================  ==================  ==================  ===================

Over 5 simulated years and 20 seeds the 1st/99th percentiles of the 63-session IWM/SPY change
are -13%/+16% (history 2010-2026: -12%/+16%), of XLI/SPY -7%/+8% (history -11%/+10%), of DXY's
one-year change -13%/+16% (history -15%/+20%); DXY stays within about 15% of its start and
yields within 2.5 points of theirs (tests/test_simfeed.py holds it to bounds per asset class).

**Regimes.** The market chops (no drift) for 66 sessions, while the 63-session windows fill (a
rule's first evaluation only arms it), then small caps rally for 80 sessions: IWM gains about 14%
on SPY over three months, with breadth (RSP), regional banks (KRE), industrials (XLI) and biotech
(XBI) leading, calm credit, the dollar easing (DXY about -4%) and the curve steepening, so the
shipped small-caps scenario (IWM/SPY +10% over 63 sessions, 4 of 7 confirmations) crosses about
11 s into a default run (seed 7: session 110, +10.1%, 7 of 7 confirmations). Later regimes are
drawn at random for 40 to 120 sessions each: small-cap rally, risk-off, broadening, dollar slide,
dollar rally, curve un-inverting, tech leadership, chop. Deterministic for a given seed.

**Why this module is long.** About a quarter of it is this description, and the rest is one
calibrated model: the per-symbol and per-class numbers above are read by the price process
below at every step (a class's cap and band by :meth:`_Leg.drift`, a symbol's beta, noise and
links by :meth:`SimMarket.step`), and the tables here document exactly those numbers. Split into
"numbers" and "process", each half could not be read without the other; the calendar, which
stands alone, is :mod:`.sim_calendar`.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from datetime import date
from typing import Iterator

from .sim_calendar import CALENDAR_END, CalendarEnd, xnys_sessions
from .ticks import Tick

__all__ = ["SimMarket", "DEFAULT_SYMBOLS", "DEFAULT_START", "AssetClass", "ASSET_CLASSES", "documented_levels",
           "asset_class", "WARMUP_SESSIONS", "RALLY_SESSIONS"]

DEFAULT_START = date(2026, 1, 2)
WINDOW = 63                         # sessions over which regime drift is capped (3 months)
WARMUP_SESSIONS = 66                # opening chop while the 63-session windows fill
RALLY_SESSIONS = 80                 # then the scripted small-cap rally


@dataclass(frozen=True)
class AssetClass:
    name: str
    drift_cap: float   # max |regime drift| summed over any WINDOW sessions: log change (yields: points)
    band: float        # a move over WINDOW sessions beyond this is pulled back (equities: against the market)
    reversion: float   # fraction of the distance to the start level recovered per session (0: none)
    reverts: bool = False


ASSET_CLASSES: dict[str, AssetClass] = {
    "market": AssetClass("the market factor", 0.08, 0.15, 0.0),
    "equity": AssetClass("sector and style ETFs", 0.05, 0.07, 0.0),
    "small": AssetClass("small caps and regional banks", 0.14, 0.13, 0.0),
    "biotech": AssetClass("biotech", 0.18, 0.20, 0.0),
    "credit": AssetClass("high-yield credit", 0.04, 0.06, 0.010, True),
    "dollar": AssetClass("the dollar", 0.05, 0.07, 0.006, True),
    "yield": AssetClass("Treasury yields (points)", 0.60, 1.00, 0.004, True),
}
_PULL = 0.5   # per session, of the part of a WINDOW-session move beyond its class band


@dataclass(frozen=True)
class _Spec:
    level: float   # documented start level
    cls: str       # key of ASSET_CLASSES
    beta: float    # to the market factor
    vol: float     # own daily noise: log change (yields: points)
    decimals: int = 2


_SPECS: dict[str, _Spec] = {
    "SPY": _Spec(560.0, "market", 1.0, 0.001),
    "IWM": _Spec(210.0, "small", 1.15, 0.0065),
    "RSP": _Spec(170.0, "equity", 1.0, 0.0035),
    "QQQ": _Spec(480.0, "equity", 1.1, 0.0055),
    "XLK": _Spec(220.0, "equity", 1.15, 0.0035),
    "XLF": _Spec(45.0, "equity", 1.1, 0.0065),
    "KRE": _Spec(55.0, "small", 1.2, 0.008),
    "XLI": _Spec(130.0, "equity", 1.0, 0.0045),
    "XBI": _Spec(95.0, "biotech", 1.1, 0.013),
    "XLU": _Spec(72.0, "equity", 0.55, 0.0085),
    "HYG": _Spec(78.0, "credit", 0.3, 0.0025),
    "DXY": _Spec(103.0, "dollar", -0.1, 0.0045, 3),
    "UUP": _Spec(28.0, "dollar", 0.0, 0.0008),
    "DGS10": _Spec(4.25, "yield", 0.0, 0.055, 3),
    "DGS2": _Spec(4.40, "yield", 0.0, 0.0345, 3),
}
DEFAULT_SYMBOLS = tuple(_SPECS)
# Own noise shared with another symbol, (symbol, weight): sector members move with their sector,
# the 2-year with the 10-year (daily correlation 0.78 over 1995-2026).
_LINKS = {"KRE": ("XLF", 0.6), "XLK": ("QQQ", 0.8), "DGS2": ("DGS10", 0.78)}
_TRACKS = {"UUP": "DXY"}           # an ETF on an index: the index's move plus a small tracking error
_MARKET_VOL = 0.0105               # daily
_MARKET_DRIFT = 0.0003             # per session, about +7.5% a year
_TRACKING_REVERSION = 0.05

# A regime adds a drift per session: relative to the market for equities (their beta to the market
# factor is separate), log change for the dollar and credit, points for yields; "market" drives
# the market factor. Capped per asset class over any WINDOW sessions (ASSET_CLASSES).
_RALLY = {"IWM": 0.0028, "KRE": 0.0016, "RSP": 0.0008, "XLI": 0.0008, "XBI": 0.0018, "HYG": 0.0003,
          "DXY": -0.0007, "DGS2": -0.006, "DGS10": 0.001, "market": 0.0004}
_CHOP: dict[str, float] = {}
_REGIMES: list[dict[str, float]] = [
    _RALLY,                                                                       # small-cap rally, curve steepens
    {"market": -0.0012, "IWM": -0.0020, "KRE": -0.0020, "XBI": -0.0020, "HYG": -0.0008, "XLU": 0.0008,
     "DXY": 0.0006, "DGS2": -0.004, "DGS10": -0.003},                              # risk-off
    {"RSP": 0.0008, "XLI": 0.0009, "XLF": 0.0006},                                # broadening
    {"DXY": -0.0008},                                                             # dollar slide
    {"DXY": 0.0007},                                                              # dollar rally
    {"DGS2": -0.008, "DGS10": -0.002},                                            # curve un-inverts via the front end
    {"QQQ": 0.0010, "XLK": 0.0012, "XLU": -0.0008, "RSP": -0.0004, "IWM": -0.0008},  # tech leads
    _CHOP,                                                                        # drift-less chop
]


def documented_levels() -> dict[str, float]:
    """The start level of each known symbol when no history or tick gives one."""
    return {s: spec.level for s, spec in _SPECS.items()}


def asset_class(symbol: str) -> str:
    """The asset class key (:data:`ASSET_CLASSES`) of a symbol; any unknown symbol is ``equity``."""
    spec = _SPECS.get(symbol)
    return spec.cls if spec else "equity"


class _Leg:
    """One simulated series. ``r`` is its own component: for equities the log move against the
    market factor (the price is ``start * exp(beta * market + r)``), for the reverting classes the
    whole log move (yields: points) from the start level."""

    __slots__ = ("spec", "cls", "start", "r", "ledger", "drift_sum", "closes", "track_err")

    def __init__(self, spec: _Spec, start: float, n: int) -> None:
        self.spec = spec
        self.cls = ASSET_CLASSES[spec.cls]
        self.start = start
        self.r = 0.0
        self.ledger: deque[float] = deque(maxlen=WINDOW * n)   # regime drift of the last WINDOW sessions
        self.drift_sum = 0.0
        self.closes: deque[float] = deque(maxlen=WINDOW)       # r at the last WINDOW session closes
        self.track_err = 0.0

    def drift(self, want: float, n: int) -> float:
        """This step's drift: the regime's, clipped so that the regime drift over the window stays
        within the class cap, plus a pull back on a window move beyond the class band."""
        cls = self.cls
        if len(self.ledger) == self.ledger.maxlen:
            self.drift_sum -= self.ledger.popleft()
        d = min(max(want, -cls.drift_cap - self.drift_sum), cls.drift_cap - self.drift_sum)
        self.ledger.append(d)
        self.drift_sum += d
        if len(self.closes) == WINDOW:
            move = self.r - self.closes[0]
            if move > cls.band:
                d -= _PULL * (move - cls.band) / n
            elif move < -cls.band:
                d -= _PULL * (move + cls.band) / n
        if cls.reverts:
            d -= cls.reversion * self.r / n
        return d

    def price(self, x: float) -> float:
        if self.spec.cls == "yield":
            return round(max(0.05, self.start + x), self.spec.decimals)
        return round(self.start * math.exp(x), self.spec.decimals)


class SimMarket:
    """Yields one batch of ticks (every symbol) per step, stamped with simulated event time."""

    def __init__(self, symbols: tuple[str, ...] = DEFAULT_SYMBOLS, *, seed: int = 7,
                 start: date = DEFAULT_START, steps_per_session: int = 4,
                 levels: dict[str, float] | None = None) -> None:
        """``levels``: starting prices (e.g. the last closes of a warm-start history); a symbol
        without one starts at its documented level (:func:`documented_levels`)."""
        if steps_per_session < 1:
            raise ValueError("steps_per_session must be >= 1")
        self._rng = random.Random(seed)
        self.steps_per_session = n = steps_per_session
        self._days, self._opens, self._closes = xnys_sessions(start)
        if not self._days:
            raise CalendarEnd(f"no NYSE session from {start} to {CALENDAR_END}")
        self._i = 0        # index of the current session
        self._k = 0        # step within the session
        self._legs: dict[str, _Leg] = {}
        levels = levels or {}
        for s in symbols:
            spec = _SPECS.get(s) or _Spec(round(50.0 + self._rng.random() * 100, 2), "equity", 1.0, 0.008)
            level = levels.get(s)
            ok = level is not None and math.isfinite(level) and (level > 0 or spec.cls == "yield")
            self._legs[s] = _Leg(spec, float(level) if ok else spec.level, n)
        self._market = _Leg(_Spec(1.0, "market", 1.0, _MARKET_VOL), 1.0, n)   # r: the market factor, log
        # (regime, sessions): chop while the windows fill, then the small-cap rally.
        self._schedule = [(_CHOP, WARMUP_SESSIONS), (_RALLY, RALLY_SESSIONS)]
        self._regime: dict[str, float] = {}
        self._regime_left = 0

    @property
    def first_session(self) -> date:
        return self._days[0]

    @property
    def start_levels(self) -> dict[str, float]:
        return {s: leg.start for s, leg in self._legs.items()}

    def _next_regime(self) -> None:
        if self._schedule:
            self._regime, sessions = self._schedule.pop(0)
        else:
            self._regime, sessions = self._rng.choice(_REGIMES), self._rng.randint(40, 120)
        self._regime_left = sessions * self.steps_per_session

    def _advance_clock(self) -> int:
        """Event time of the current step: prints spread over the session's open to its close
        (an early close included), the last one at the close."""
        if self._i >= len(self._days):
            raise CalendarEnd(f"the simulated market reached the end of its calendar ({self._days[-1]})")
        o, c = self._opens[self._i], self._closes[self._i]
        n = self.steps_per_session
        self._k += 1
        t = o + (c - o) * self._k // n
        if self._k == n:
            self._k = 0
            self._i += 1
        return t

    def step(self) -> list[Tick]:
        ts = self._advance_clock()
        if self._regime_left <= 0:
            self._next_regime()
        self._regime_left -= 1
        n = self.steps_per_session
        scale = 1.0 / math.sqrt(n)
        gauss = self._rng.gauss
        regime = self._regime
        mk = self._market
        market = _MARKET_DRIFT / n + mk.drift(regime.get("market", 0.0) / n, n) + gauss(0.0, _MARKET_VOL) * scale
        mk.r += market
        own = {s: gauss(0.0, leg.spec.vol) * scale for s, leg in self._legs.items()}
        legs = self._legs
        for sym, leg in legs.items():
            if _TRACKS.get(sym) in legs:
                leg.track_err += -_TRACKING_REVERSION / n * leg.track_err + own[sym]
                continue  # priced below, from the index it tracks
            shock = own[sym]
            link = _LINKS.get(sym)
            if link is not None and link[0] in own:
                shock += link[1] * own[link[0]]
            if leg.cls.reverts:  # the market's shock moves it; its level reverts
                shock += leg.spec.beta * market
            leg.r += leg.drift(regime.get(sym, 0.0) / n, n) + shock
        out = []
        for sym, leg in legs.items():
            track = _TRACKS.get(sym)
            if track in legs:
                x = legs[track].r + leg.track_err
            elif leg.cls.reverts:
                x = leg.r
            else:
                x = leg.spec.beta * mk.r + leg.r
            out.append(Tick(sym, leg.price(x), ts))
        if self._k == 0:  # that was a session's close
            mk.closes.append(mk.r)
            for leg in legs.values():
                leg.closes.append(leg.r)
        return out

    def __iter__(self) -> Iterator[list[Tick]]:
        while True:
            try:
                batch = self.step()
            except CalendarEnd:
                return
            yield batch
