"""The chart that goes with an email: the trigger's metric over the last year, with the threshold,
the re-arm level and the crossing marked.

The data comes from an injected ``history_for(event) -> (dates, values) | None``: the trigger
series' session closes, dates ascending, newest = the crossing session. The metric is computed
here from those closes (``model.metric.metric_series``, pure), the same way the engine computes it.
:func:`history_from_folder` builds such a provider from a folder of ``SYMBOL.csv`` files.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

from ratiowatch.model import metric as _metric
from ratiowatch.agents.wording import metric_name
from ratiowatch.charts import metric_chart_png
from ratiowatch.model import parse_series

from .redact import Redactor
from .route import FIRING, Notice

__all__ = ["CHART_SESSIONS", "HistoryFor", "Charts", "metric_series", "chart_png", "history_from_folder"]

CHART_SESSIONS = 252  # one year of sessions

HistoryFor = Callable[[dict[str, Any]], "tuple[list[date], list[float]] | None"]

log = logging.getLogger("ratiowatch.notifiers")

# pyplot keeps global state: two charts drawn at once from worker threads would mix.
_PLOT_LOCK = threading.Lock()


def metric_series(values: Sequence[float], kind: str, lookback: int | None, transform: str | None = None,
                  sessions: int | None = None) -> list[float | None]:
    """The rule's metric at every session (``model.metric.metric_series``); ``transform`` None
    means today's two kinds: the value itself without lookback, else the change over it."""
    if transform is None:
        transform, sessions = ("value", None) if lookback is None else ("lookback", lookback)
    return _metric.metric_series(values, kind, transform, sessions)


def _event_transform(e: dict[str, Any]) -> tuple[str, int | None]:
    t = e.get("transform")
    if t:
        return t, e.get("transform_sessions")
    return ("value", None) if e.get("lookback") is None else ("lookback", e["lookback"])


def _extra_sessions(e: dict[str, Any]) -> int:
    """Closes before the first charted one, so it has its metric (a streak: enough for most runs)."""
    t, n = _event_transform(e)
    return 60 if t == "streak" else _metric.earlier_closes(t, n)


def chart_png(notice: Notice, dates: Sequence[date], values: Sequence[float], *,
              width_px: int = 1000, height_px: int = 500) -> bytes:
    """PNG of the trigger metric over the last :data:`CHART_SESSIONS` sessions up to the crossing."""
    e, sc = notice.event, notice.scenario
    spec = parse_series(e["series"])
    transform, n = _event_transform(e)
    metric = _metric.metric_series(values, spec.kind, transform, n)
    d, m = list(dates[-CHART_SESSIONS:]), metric[-CHART_SESSIONS:]
    if sc is not None:
        threshold, rearm, direction = sc.trigger.threshold, sc.trigger.rearm, sc.trigger.direction
    else:  # from the DLQ, scenario since removed: the event knows the line it crossed
        threshold, rearm = e["threshold"], None
        direction = e["direction"] if e["kind"] == "fired" else ("down" if e["direction"] == "up" else "up")
    percent = transform not in ("value", "streak") and spec.kind != "spread"
    what = metric_name(spec.name, transform, n)
    with _PLOT_LOCK:
        return metric_chart_png(f"{e.get('title', notice.scenario_id)}: {what}", d, m, threshold=threshold,
                                rearm=rearm, direction=direction, crossings=[(d[-1], e["kind"])] if d else [],
                                percent=percent, width_px=width_px, height_px=height_px, ylabel=what)


def history_from_folder(folder: str | Path, tz: str = "America/New_York", signed: Iterable[str] = ()) -> HistoryFor:
    """A provider reading ``folder/SYMBOL.csv`` with polars. A series' value on a date uses each
    leg's latest close at or before it (as the engine does), on dates where any leg closed. It
    returns a year of sessions plus the lookback, so the first charted point has its metric."""
    import polars as pl

    from ratiowatch.backtest import series_frame as backtest_series_frame
    from ratiowatch.streams.history import load_history

    cache: dict[str, pl.DataFrame] = {}

    def series_frame(name: str) -> pl.DataFrame:
        # The backtest's own series computation (as-of legs on the dates any leg closed), so a
        # chart shows exactly the values the alert was computed from.
        if name not in cache:
            spec = parse_series(name)
            cache[name] = backtest_series_frame(load_history(folder, spec.legs, signed), spec)
        return cache[name]

    def history_for(event: dict[str, Any]) -> tuple[list[date], list[float]] | None:
        day = datetime.fromtimestamp(event["ts_ms"] / 1000, ZoneInfo(tz)).date()
        try:
            f = series_frame(event["series"]).filter(pl.col("date") <= day)
            f = f.tail(CHART_SESSIONS + _extra_sessions(event))
        except Exception:  # a symbol without history: the message goes without a chart
            return None
        if f.height == 0:
            return None
        return f["date"].to_list(), f["value"].to_list()

    return history_for


class Charts:
    """The chart for a message, drawn off the event loop and kept for the last few events: two
    email channels of one event draw it once."""

    KEEP = 32

    def __init__(self, history_for: HistoryFor | None, redactor: Redactor) -> None:
        self.history_for, self.redactor = history_for, redactor
        self._drawn: dict[str, bytes | None] = {}

    async def chart_for(self, notices: list[Notice]) -> bytes | None:
        """The chart of the newest firing notice (or the newest one), or None when there is no
        history: the message then goes without it."""
        if self.history_for is None:
            return None
        firing = [n for n in notices if n.status == FIRING]
        n = (firing or notices)[-1]
        if n.event_id in self._drawn:
            return self._drawn[n.event_id]
        png = None
        try:
            hist = await asyncio.to_thread(self.history_for, n.event)
            if hist is not None and len(hist[0]) > 0:
                png = await asyncio.to_thread(chart_png, n, hist[0], hist[1])
        except Exception as e:
            log.warning("no chart for %s: %s: %s", n.event_id, type(e).__name__, self.redactor.text(e))
        if len(self._drawn) >= self.KEEP:
            self._drawn.pop(next(iter(self._drawn)))
        self._drawn[n.event_id] = png
        return png
