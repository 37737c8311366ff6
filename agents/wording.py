"""A rule's metric in words, in the rule's own terms. Pure; used by the status card and the messages.

"IWM/SPY 3-month change +4.21%", "QQQ/SPY 2.1% below its 252-session high", "HYG 4 sessions up,
fires at 6". Works from plain values (series name, transform, sessions), so a message rendered
from an event read back from the topic says the same as the live status.
"""

from __future__ import annotations

__all__ = ["series_kind", "metric_name", "fmt_metric", "fmt_threshold", "distance_text"]

_ADJ_NAMES = {21: "1-month", 63: "3-month", 126: "6-month", 252: "12-month"}
_REF_NAMES = {"ma": "average", "high": "high", "low": "low"}


def series_kind(series: str) -> str:
    # Symbols never contain "/" or "-" (config.parse_series).
    return "spread" if "-" in series else "ratio" if "/" in series else "level"


def metric_name(series: str, transform: str, n: int | None) -> str:
    """What the metric measures: "IWM/SPY 3-month change", "XLK/XLU vs its 200-session average"."""
    if transform == "value":
        return series
    if transform == "lookback":
        return f"{series} {_ADJ_NAMES.get(n, f'{n}-session')} change"
    if transform == "streak":
        return f"{series} streak"
    return f"{series} vs its {n}-session {_REF_NAMES[transform]}"


def _sessions(s: float) -> str:
    k = int(abs(s))
    if k == 0:
        return "no streak (flat)"
    return f"{k} session{'s' if k != 1 else ''} {'up' if s > 0 else 'down'}"


def fmt_metric(v: float | None, series: str, transform: str) -> str:
    """A metric as a reader expects it: a percent for relative changes, percentage points for a
    spread's difference (spreads are of yields and rates: a 10y-2y move of +0.35 is 35 bp), two
    decimals for a value rule, sessions for a streak."""
    if v is None:
        return "n/a"
    if transform == "value":
        return f"{v:,.2f}"
    if transform == "streak":
        return _sessions(v)
    if series_kind(series) == "spread":
        return f"{v:+,.2f} pp"
    return f"{v * 100:+.2f}%"


def fmt_threshold(v: float | None, series: str, transform: str) -> str:
    """A threshold in the same terms: a streak's threshold is a count of sessions."""
    if v is not None and transform == "streak":
        return f"{v:g}" if v >= 0 else f"{-v:g} down"
    return fmt_metric(v, series, transform)


def _amount(m: float, spread: bool) -> str:
    return f"{abs(m):,.2f} pp" if spread else f"{abs(m) * 100:.1f}%"


def distance_text(series: str, transform: str, n: int | None, direction: str, threshold: float,
                  rearm: float, metric: float | None, armed: bool | None) -> str:
    """Where the metric stands against the trigger, e.g. "2.1% below its 252-session high; fires at
    +0.00%" or "4 sessions up, fires at 6"."""
    if metric is None:
        return "warming up: not enough history for this rule yet"
    spread = series_kind(series) == "spread"
    line = fmt_threshold(threshold, series, transform)
    if transform == "streak":
        now = _sessions(metric)
        where = f"{now}, fires at {line}"
    elif transform == "value":
        op = "at or above" if direction == "up" else "at or below"
        where = f"{series} is {metric:,.2f}, fires {op} {line}"
    elif transform == "lookback":
        moved = ("up" if metric >= 0 else "down") if not spread else ("risen" if metric >= 0 else "fallen")
        verb = "has" if spread else "is"
        where = f"{series} {verb} {moved} {_amount(metric, spread)} over {n} sessions, fires at {line}"
    else:
        side = "above" if metric >= 0 else "below"
        where = f"{_amount(metric, spread)} {side} its {n}-session {_REF_NAMES[transform]}, fires at {line}"
    if armed is False:
        where += f" (fired; re-arms {'below' if direction == 'up' else 'above'} {fmt_threshold(rearm, series, transform)})"
    return where
