"""A series' session closes as the engine keeps them (:class:`SessionCloses`). Pure.

Which session a tick belongs to, and the event time of a daily close, are the model's
(:mod:`ratiowatch.model.sessions`).
"""

from __future__ import annotations

from ratiowatch.model.metric import streak_step

__all__ = ["SessionCloses"]


class SessionCloses:
    """A series' values by session, newest last: every past session's close and the current
    session's latest value. Keeps ``keep`` entries: the most closes a rule on the series needs,
    plus the current value.

    ``streaks`` (only for a series with a ``streak`` rule) runs beside ``values``: the streak at
    each session, carried forward because a streak can outlast the closes kept. ``agg`` caches
    aggregates over the past closes (``model.metric.rule_metric``) and is emptied whenever a past
    close changes."""

    __slots__ = ("sessions", "values", "keep", "streaks", "agg")

    def __init__(self, keep: int, sessions: list[int] | None = None, values: list[float] | None = None,
                 streaks: list[int] | None = None) -> None:
        self.keep = keep
        self.sessions = sessions if sessions is not None else []
        self.values = values if values is not None else []
        self.streaks = streaks
        self.agg: dict = {}
        if streaks is not None and len(streaks) < len(self.values):
            self.track_streaks()

    def track_streaks(self) -> None:
        """Start (or complete) the streaks of closes kept without them, as if the first kept
        session began at 0: a state written before its series had a streak rule."""
        st = self.streaks or []
        self.streaks = [0] * (len(self.values) - len(st)) + st
        self._restreak(0)

    def update(self, session: int, value: float) -> None:
        """Record ``value`` as the latest of ``session``. A session before the newest one (a late
        tick from yesterday) corrects that session's close."""
        s = self.sessions
        if not s or session > s[-1]:
            self.agg.clear()
            st = self.streaks
            if st is not None:
                if len(st) >= 2:  # the closing value of the session that ends now
                    st[-1] = streak_step(st[-2], self.values[-2], self.values[-1])
                st.append(streak_step(st[-1], self.values[-1], value) if st else 0)
            s.append(session)
            self.values.append(value)
            if len(s) > self.keep:
                drop = len(s) - self.keep
                del s[:drop]
                del self.values[:drop]
                if st is not None:
                    del st[:drop]
        elif session == s[-1]:
            self.values[-1] = value
            self._restreak(len(s) - 1)
        else:
            self.agg.clear()
            for i in range(len(s) - 1, -1, -1):
                if s[i] == session:
                    self.values[i] = value
                    self._restreak(i)
                    return
                if s[i] < session:
                    s.insert(i + 1, session)
                    self.values.insert(i + 1, value)
                    if self.streaks is not None:
                        self.streaks.insert(i + 1, 0)
                    self._restreak(i + 1)
                    return

    def _restreak(self, start: int) -> None:
        """Recompute the streaks from session index ``start`` on, after a value there changed."""
        st = self.streaks
        if st is None:
            return
        while len(st) < len(self.values):  # a state stored without streaks: start them at 0
            st.insert(0, 0)
        v = self.values
        for i in range(max(start, 1), len(v)):
            st[i] = streak_step(st[i - 1], v[i - 1], v[i])

    @property
    def current(self) -> float | None:
        return self.values[-1] if self.values else None

    def past(self, lookback: int) -> float | None:
        """The close ``lookback`` sessions before the current one, or None if not yet known."""
        if len(self.values) <= lookback:
            return None
        return self.values[-1 - lookback]
