"""A series: what a rule reads, made of one or two symbols' prices. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import metric as _metric

__all__ = ["SeriesSpec", "parse_series", "SYMBOL_RE"]

SYMBOL_RE = r"[A-Za-z0-9_.^=:]+"
_SERIES_RE = re.compile(rf"^\s*({SYMBOL_RE})\s*(?:([/-])\s*({SYMBOL_RE}))?\s*$")


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """A series: ``A/B`` (ratio), ``A-B`` (spread) or ``A`` (level of one symbol)."""

    kind: str  # "ratio" | "spread" | "level"
    legs: tuple[str, ...]

    @property
    def name(self) -> str:
        if self.kind == "ratio":
            return f"{self.legs[0]}/{self.legs[1]}"
        if self.kind == "spread":
            return f"{self.legs[0]}-{self.legs[1]}"
        return self.legs[0]

    def change(self, value: float, past: float) -> float | None:
        """The lookback metric (relative, or a difference for spreads): ``model.metric.change``."""
        return _metric.change(self.kind == "spread", value, past)


def parse_series(text: str) -> SeriesSpec:
    """``"IWM/SPY"`` -> ratio, ``"DGS10-DGS2"`` -> spread, ``"DXY"`` -> level. Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError(f"series must be a string like IWM/SPY, DGS10-DGS2 or DXY, got {text!r}")
    m = _SERIES_RE.match(text)
    if not m:
        raise ValueError(f"series {text!r} is not A/B (ratio), A-B (spread) or A (level)")
    a, op, b = m.group(1).upper(), m.group(2), m.group(3)
    if op is None:
        return SeriesSpec("level", (a,))
    b = b.upper()
    if a == b:
        raise ValueError(f"series {text!r} uses the same symbol twice")
    return SeriesSpec("ratio" if op == "/" else "spread", (a, b))
