"""Hysteresis: when a rule fires and when it re-arms. Pure; the batch backtest mirrors it.

An ``up`` rule (``above: X``, ``rearm: R`` with R <= X) starts armed if its first metric is below
X; it fires at the first metric >= X while armed, then disarms; it re-arms once the metric falls
below R. ``down`` is the mirror image. The first evaluation never fires: it only decides the
initial arming, so a worker that starts above the line does not announce an old move.
"""

from __future__ import annotations

from ratiowatch.model import Rule

__all__ = ["step", "FIRED", "REARMED", "is_met"]

FIRED = "fired"
REARMED = "rearmed"


def step(rule: Rule, armed: bool | None, metric: float, confirmed: bool = True) -> tuple[bool, str | None]:
    """One evaluation: ``(new_armed, transition)``; transition is FIRED, REARMED or None.

    ``armed`` None means the rule has not been evaluated yet. ``confirmed`` False (a trigger with
    ``require`` short of confirmations) keeps an armed rule armed past its threshold, so it fires
    at the first evaluation where both hold; re-arming depends on the metric alone.
    """
    if rule.direction == "up":
        if armed is None:
            return metric < rule.threshold, None
        if armed and metric >= rule.threshold:
            return (False, FIRED) if confirmed else (True, None)
        if not armed and metric < rule.rearm:
            return True, REARMED
        return armed, None
    if armed is None:
        return metric > rule.threshold, None
    if armed and metric <= rule.threshold:
        return (False, FIRED) if confirmed else (True, None)
    if not armed and metric > rule.rearm:
        return True, REARMED
    return armed, None


def is_met(rule: Rule, metric: float | None) -> bool | None:
    """Whether a confirmation's condition holds now (None while its metric is undefined)."""
    if metric is None:
        return None
    return metric >= rule.threshold if rule.direction == "up" else metric <= rule.threshold
