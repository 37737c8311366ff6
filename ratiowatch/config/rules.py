"""A rule of the scenario file (the trigger, or a confirmation): its series, its one transform, its
threshold and re-arm level; ``require``; and the sanity warnings a rule's numbers call for."""

from __future__ import annotations

from ratiowatch.errors import ConfigError
from ratiowatch.model import metric as _metric
from ratiowatch.model.scenario import Rule
from ratiowatch.model.series import parse_series

from .keys import Keys

__all__ = ["RULE_KEYS", "parse_rule", "parse_require", "rule_warnings"]

RULE_KEYS = {"series", "above", "below", "rearm", *_metric.TRANSFORMS}


def parse_transform(k: Keys) -> tuple[str, int | None]:
    """The rule's one transform: (name, sessions); ("value", None) without any."""
    given = [t for t in _metric.TRANSFORMS if k.raw.get(t) is not None]
    if len(given) > 1:
        raise ConfigError(k.file, k.where, f"has both {given[0]!r} and {given[1]!r}: a rule takes at most one "
                          f"transform ({', '.join(_metric.TRANSFORMS)}); write two rules")
    if not given:
        return "value", None
    t = given[0]
    if t == "streak":
        if k.raw[t] is not True:
            raise k.err(t, f"must be true (the metric counts sessions up or down in a row), got {k.raw[t]!r}")
        return t, None
    return t, k.integer(t, minimum=1)


def parse_rule(k: Keys, name: str) -> Rule:
    try:
        series = parse_series(k.string("series"))
    except ValueError as e:
        raise k.err("series", str(e)) from None
    transform, sessions = parse_transform(k)
    lookback = sessions if transform == "lookback" else None
    has_above, has_below = k.raw.get("above") is not None, k.raw.get("below") is not None
    if has_above and has_below:
        raise ConfigError(k.file, k.where, "has both 'above' and 'below': a rule fires in one direction; "
                          "write two rules for a band")
    if not (has_above or has_below):
        raise ConfigError(k.file, k.where, "needs a threshold: 'above: X' or 'below: X'")
    direction = "up" if has_above else "down"
    threshold = k.number("above" if has_above else "below")
    rearm = k.number("rearm", threshold)
    if direction == "up" and rearm > threshold:
        raise k.err("rearm", f"must be <= the threshold {threshold:g} for an 'above' rule, got {rearm:g}")
    if direction == "down" and rearm < threshold:
        raise k.err("rearm", f"must be >= the threshold {threshold:g} for a 'below' rule, got {rearm:g}")
    return Rule(name, series, lookback, direction, threshold, rearm, transform, sessions)


def parse_require(k: Keys, confirmations: int) -> int | None:
    v = k.raw.get("require")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise k.err("require", f"must be a whole number of confirmations, got {v!r}")
    if confirmations == 0:
        raise k.err("require", "needs confirmations: it counts how many of them must be met for the trigger to fire")
    if not 1 <= v <= confirmations:
        raise k.err("require", f"must be between 1 and {confirmations} (the number of confirmations), got {v}")
    return v


def rule_warnings(where: str, r: Rule) -> list[str]:
    """A relative change (ratio or level, lookback/ma/high/low) of 100% or more is almost always a
    percentage written as a whole number: ``above: 8`` reads as +800%, not +8%."""
    if r.series.kind == "spread" or r.transform not in _metric.WINDOWED:
        return []
    key = "above" if r.direction == "up" else "below"
    out = []
    for k, v in ((key, r.threshold), ("rearm", r.rearm)):
        if abs(v) >= 1.0 and (k != "rearm" or v != r.threshold):
            out.append(f"{where}.{k}: {v:g} reads as a change of {v * 100:+.0f}% ({r.describe()}); "
                       f"relative changes are fractions: {v / 100:+g} is {v:+g}%")
    return out
