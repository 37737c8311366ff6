"""PNG charts of a scenario metric with its threshold and crossings (matplotlib, no display).

Shared by the notifiers (the last year, attached to an alert) and the backtest (the whole history).
"""

from __future__ import annotations

import io
from datetime import date
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

__all__ = ["metric_chart_png"]


def metric_chart_png(title: str, dates: Sequence[date], metric: Sequence[float | None], *, threshold: float,
                     rearm: float | None = None, direction: str = "up",
                     crossings: Sequence[tuple[date, str]] = (), percent: bool = True,
                     width_px: int = 1000, height_px: int = 500, ylabel: str = "") -> bytes:
    """Render ``metric`` over ``dates`` with the threshold (and re-arm) line; ``crossings`` are
    ``(date, kind)`` with kind "fired" (marked with a triangle in the rule's direction) or
    "rearmed" (a circle). Returns PNG bytes of exactly ``width_px`` x ``height_px``."""
    dpi = 100
    fig, ax = plt.subplots(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    try:
        xs = [d for d, m in zip(dates, metric) if m is not None]
        ys = [m for m in metric if m is not None]
        ax.plot(xs, ys, color="#1f4e79", linewidth=1.2, label=ylabel or "metric")
        ax.axhline(threshold, color="#c0392b", linestyle="--", linewidth=1, label=f"threshold {_fmt(threshold, percent)}")
        if rearm is not None and rearm != threshold:
            ax.axhline(rearm, color="#7f8c8d", linestyle=":", linewidth=1, label=f"re-arm {_fmt(rearm, percent)}")
        by_date = dict(zip(dates, metric))
        for kind, marker, color in (("fired", "^" if direction == "up" else "v", "#c0392b"), ("rearmed", "o", "#7f8c8d")):
            pts = [(d, by_date[d]) for d, k in crossings if k == kind and by_date.get(d) is not None]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, s=40, zorder=3,
                           label=kind)
        if percent:
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * 100:+.0f}%"))
        ax.set_title(title, fontsize=11)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.autofmt_xdate()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()
    finally:
        plt.close(fig)


def _fmt(v: float, percent: bool) -> str:
    return f"{v * 100:+.1f}%" if percent else f"{v:g}"
