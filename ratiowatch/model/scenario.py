"""Rules and scenarios: what the engine evaluates. Frozen values, no I/O (loaded by ratiowatch/config/,
carried on the ``scenarios`` topic in the form of ratiowatch/model/spec.py)."""

from __future__ import annotations

from dataclasses import dataclass

from . import metric as _metric
from .series import SeriesSpec

__all__ = ["Rule", "Scenario"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One threshold rule on one series: the scenario's trigger, or a confirmation.

    ``direction`` "up" fires when the metric crosses up through ``threshold`` (``above:``) and
    re-arms once it falls below ``rearm``; "down" is the mirror image (``below:``).
    ``transform`` is how the metric is made from the series (``model.metric``): "value" (the
    series itself), "lookback", "ma", "high", "low" (each over ``sessions``) or "streak".
    ``lookback`` is ``sessions`` for a lookback rule and None otherwise (the events carry it).
    """

    name: str  # "trigger" or the confirmation label
    series: SeriesSpec
    lookback: int | None
    direction: str  # "up" | "down"
    threshold: float
    rearm: float
    transform: str = ""  # "" from positional construction: derived from lookback below
    sessions: int | None = None

    def __post_init__(self) -> None:
        if not self.transform:
            object.__setattr__(self, "transform", "value" if self.lookback is None else "lookback")
            object.__setattr__(self, "sessions", self.lookback)

    @property
    def earlier_closes(self) -> int:
        """Closes before the current value this rule needs (what the engine keeps for it)."""
        return _metric.earlier_closes(self.transform, self.sessions)

    def describe(self) -> str:
        """The rule in words, e.g. 'IWM/SPY 63-session change >= +10.00%'."""
        op = ">=" if self.direction == "up" else "<="
        t, n, name = self.transform, self.sessions, self.series.name
        if t == "value":
            return f"{name} {op} {self.threshold:g}"
        if t == "streak":
            return f"{name} streak {op} {self.threshold:+g} sessions (up > 0, down < 0)"
        what = {"lookback": f"{n}-session change", "ma": f"vs its {n}-session average",
                "high": f"vs its {n}-session high", "low": f"vs its {n}-session low"}[t]
        if self.series.kind == "spread":
            return f"{name} {what} {op} {self.threshold:+g}"
        return f"{name} {what} {op} {self.threshold * 100:+.2f}%"


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    title: str
    description: str
    trigger: Rule
    confirmations: tuple[Rule, ...]
    windows: tuple[int, ...]
    notify: tuple[str, ...]
    notify_resolved: bool
    group_window_s: float
    # How many confirmations must be met for the trigger to fire (None: it fires on its own).
    require: int | None = None
    # A digest of everything above (ratiowatch/model/spec.py): what `scenarios list` shows and
    # what each event says it was evaluated under. "" for a scenario built by hand in code.
    version: str = ""

    @property
    def rules(self) -> tuple[Rule, ...]:
        return (self.trigger, *self.confirmations)

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(leg for r in self.rules for leg in r.series.legs)

    @property
    def max_lookback(self) -> int:
        """The most closes before the current value any rule or window of the scenario needs."""
        return max([r.earlier_closes for r in self.rules] + list(self.windows) + [0])
