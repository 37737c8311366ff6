"""A rule's metric from a series' session closes: value, change, the transforms, rounding. Pure.

This is the one place the streaming side writes these rules down: the engine's hot loop, the
status card, the events, the email chart and the message text all call it. The batch backtest
(:mod:`ratiowatch.backtest`) computes the same semantics independently, on purpose.

Notation (README, "Scenario semantics"): ``values[-1]`` is the current value c_t (the latest of
the current session, intraday) and ``values[-1 - k]`` the close k sessions before.

=========  =============================================  ====================================
transform  metric                                         defined once
=========  =============================================  ====================================
value      c_t                                            at once
lookback   change(c_t, c_{t-N})                           N earlier closes exist
ma         change(c_t, mean(c_{t-N+1} .. c_t))            N-1 earlier closes exist
high       change(c_t, max(c_{t-N} .. c_{t-1}))           N earlier closes exist
low        change(c_t, min(c_{t-N} .. c_{t-1}))           N earlier closes exist
streak     s_t (sessions up in a row > 0, down < 0)       one earlier close exists
=========  =============================================  ====================================

``change`` is relative (``now / ref - 1``) for ratios and levels and a difference for spreads (a
spread crosses zero, where a relative change means nothing); a relative change from a reference
<= 0 is undefined (None).
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["TRANSFORMS", "WINDOWED", "round12", "series_value", "change", "earlier_closes",
           "streak_step", "rule_metric", "metric_series"]

# The keys a rule may carry, at most one of them; "value" is a rule without any.
TRANSFORMS = ("lookback", "ma", "high", "low", "streak")
WINDOWED = ("lookback", "ma", "high", "low")  # the ones that take a number of sessions


def round12(x: float | None) -> float | None:
    """12 significant digits: well inside float precision, so a replay, a backtest and a restarted
    worker that reach the same value by different float paths print the same."""
    return None if x is None else float(f"{x:.12g}")


def series_value(kind: str, a: float, b: float | None) -> float | None:
    """A ratio (None over a zero leg: undefined), a spread, or a level."""
    if kind == "ratio":
        return a / b if b != 0 else None
    if kind == "spread":
        return a - b
    return a


def change(spread: bool, now: float, ref: float) -> float | None:
    """``now`` against a reference: a difference for spreads, relative otherwise (None from <= 0)."""
    if spread:
        return now - ref
    return now / ref - 1.0 if ref > 0 else None


def earlier_closes(transform: str, n: int | None) -> int:
    """How many closes before the current value a rule needs: what the engine keeps for it."""
    if transform == "value":
        return 0
    if transform == "streak":
        return 1  # the streak itself is carried forward, see streak_step
    if transform == "ma":
        return n - 1  # the mean includes the current value
    return n


def streak_step(prev: int, prev_close: float, now: float) -> int:
    """s_t from s_{t-1}: up sessions count up from max(s, 0), down sessions down from min(s, 0), a
    flat session is 0."""
    if now > prev_close:
        return (prev if prev > 0 else 0) + 1
    if now < prev_close:
        return (prev if prev < 0 else 0) - 1
    return 0


def rule_metric(transform: str, n: int, spread: bool, values: list[float], agg: dict,
                streaks: list[int] | None) -> float | None:
    """The metric of a ``ma``/``high``/``low``/``streak`` rule (``value`` and ``lookback`` are
    written out in the engine's loop), or None while undefined.

    ``agg`` caches aggregates over the past closes; the caller empties it whenever a past close
    changes (a session rolls, a late tick corrects one), so intraday ticks cost O(1) and a new
    session O(N). ``streaks`` runs beside ``values`` (s at each session); the current entry is
    brought up to date here.
    """
    cur = values[-1]
    if transform == "ma":
        if len(values) < n:
            return None
        past = agg.get(("ma", n))
        if past is None:
            past = agg[("ma", n)] = sum(values[-n:-1])  # left to right, as sum(all) would add them
        return change(spread, cur, (past + cur) / n)
    if transform == "high" or transform == "low":
        if len(values) <= n:
            return None
        key = (transform, n)
        ref = agg.get(key)
        if ref is None:
            window = values[-1 - n:-1]
            ref = agg[key] = max(window) if transform == "high" else min(window)
        return change(spread, cur, ref)
    if transform == "streak":
        if len(values) < 2:
            return None
        s = streaks[-1] = streak_step(streaks[-2], values[-2], cur)
        return float(s)
    raise ValueError(f"unknown transform {transform!r}")


def metric_series(values: Sequence[float], kind: str, transform: str, n: int | None) -> list[float | None]:
    """The rule's metric at every session of a list of closes (oldest first), None where it is not
    yet defined: what the email chart draws. Each point is computed as the engine would at that
    session's close."""
    spread = kind == "spread"
    out: list[float | None] = []
    if transform == "value":
        return [float(v) for v in values]
    if transform == "lookback":
        for i, v in enumerate(values):
            out.append(change(spread, v, values[i - n]) if i >= n else None)
        return out
    streaks: list[int] = []
    for i in range(len(values)):
        window = list(values[max(0, i + 1 - (n or 1) - 1):i + 1])
        if transform == "streak":
            streaks.append(streak_step(streaks[-1], values[i - 1], values[i]) if i else 0)
            out.append(float(streaks[-1]) if i else None)
            continue
        out.append(rule_metric(transform, n, spread, window, {}, None))
    return out
