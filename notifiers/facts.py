"""Facts: what a reader needs to know about one notice, as plain strings, the same in every medium.

The title, the reading against its trigger, the 1/3/6/12-month readings, which confirmations are
met and a plain-words summary. The facts are unescaped; each renderer (render.py) escapes them
for its medium at the last moment (Slack mrkdwn ``& < >``, HTML), so data can never turn into
markup. Pure functions of their input.

Numbers: a change of a ratio or a level (lookback, or against an average, a high or a low) is a
percent (``+10.42%``); a spread's is a difference in the series' own units (``+0.35``); a rule
without a transform shows the value itself (``99.80``); a streak counts sessions (``6 sessions
up``). The words come from :mod:`ratiowatch.agents.wording`, as on the status page.

With a track record (``ratiowatch.track_record``: what the rule did over the history), a firing
also says how often it fired before, when last, and what followed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from ratiowatch.agents.wording import fmt_metric, fmt_threshold, metric_name
from ratiowatch.streams.origin import LIVE, REPLAY

from .route import RESOLVED, Notice

__all__ = ["MAX_LISTED", "Confirmation", "Facts", "facts", "fmt_value", "heading", "one_line", "track_lines",
           "window_label"]

MAX_LISTED = 10  # a grouped message lists this many events in full, then counts the rest

_WINDOW_NAMES = {21: "1 month", 63: "3 months", 126: "6 months", 252: "12 months"}


def window_label(sessions: int) -> str:
    return _WINDOW_NAMES.get(sessions, f"{sessions} sessions")


def _transform(d: dict[str, Any]) -> tuple[str, int | None]:
    """An event's (or confirmation's) transform; events from before transforms existed have only
    ``lookback`` (null: the value itself)."""
    t = d.get("transform")
    if t:
        return t, d.get("transform_sessions")
    lb = d.get("lookback")
    return ("value", None) if lb is None else ("lookback", lb)


def fmt_value(v: float | None, series: str, lookback: int | None, transform: str | None = None) -> str:
    """A metric or threshold as a reader expects it: see the module docstring."""
    return fmt_metric(v, series, transform or ("value" if lookback is None else "lookback"))


def one_line(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


@dataclass(frozen=True, slots=True)
class Confirmation:
    met: bool | None
    label: str
    reading: str  # e.g. "RSP/SPY 3-month change +2.10%"
    need: str     # e.g. ">= +0.00%"


@dataclass(frozen=True, slots=True)
class Facts:
    """What a reader needs to know about one notice, as plain (unescaped) strings."""

    event_id: str
    scenario_id: str
    resolved: bool
    title: str
    metric: str        # "IWM/SPY 3-month change"
    value: str         # "+10.42%"
    verb: str          # "crossed above the trigger"
    line: str          # "+10.00%"
    rearm: str | None  # "+8.00%" when it differs from the line
    when: str          # "2024-07-16 16:00 EDT"
    windows: tuple[tuple[str, str], ...]  # (label, change)
    confirmations: tuple[Confirmation, ...]
    summary: str
    rule: str
    track: tuple[str, ...] = ()  # the track record in lines, firing notices with a record only
    provenance: str = ""         # "" for live data, else what it is: "SIMULATED", "REPLAY of 2022-03-04"

    @property
    def met_count(self) -> int:
        return sum(1 for c in self.confirmations if c.met)

    @property
    def headline(self) -> str:
        """The reading in one sentence."""
        s = f"{self.metric} is {self.value}: {self.verb} {self.line}"
        if self.rearm is not None:
            s += f" (re-arms at {self.rearm})"
        return s

    @property
    def confirmation_count(self) -> str:
        return f"{self.met_count} of {len(self.confirmations)} confirmations met" if self.confirmations else ""


def facts(notice: Notice, tz: str = "America/New_York", track_records: dict[str, Any] | None = None) -> Facts:
    e, sc = notice.event, notice.scenario
    series = e["series"]
    transform, n = _transform(e)
    resolved = notice.status == RESOLVED
    if resolved:
        verb = "fell back below the re-arm level" if e["direction"] == "down" else "rose back above the re-arm level"
    else:
        verb = f"crossed {'above' if e['direction'] == 'up' else 'below'} the trigger"
    rearm = None
    if not resolved and sc is not None and sc.trigger.rearm != sc.trigger.threshold:
        rearm = fmt_threshold(sc.trigger.rearm, series, transform)
    when = datetime.fromtimestamp(e["ts_ms"] / 1000, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")
    windows = tuple((window_label(int(w)), fmt_metric(v, series, "lookback"))
                    for w, v in sorted((e.get("windows") or {}).items(), key=lambda kv: int(kv[0])))
    confs = []
    for c in e.get("confirmations") or []:
        ct, cn = _transform(c)
        cs = str(c.get("series", "?"))
        op = "≥" if c.get("direction") == "up" else "≤"
        confs.append(Confirmation(c.get("met"), str(c.get("label", "?")),
                                  f"{metric_name(cs, ct, cn)} {fmt_metric(c.get('value'), cs, ct)}",
                                  f"{op} {fmt_threshold(c.get('threshold'), cs, ct)}"))
    title = e.get("title") or (sc.title if sc else notice.scenario_id)
    summary = sc.description if sc is not None and sc.description else ""
    origin = e.get("origin") or LIVE  # events from before the field are live ones
    provenance = "" if origin == LIVE else f"REPLAY of {when[:10]}" if origin == REPLAY else origin.upper()
    return Facts(
        event_id=notice.event_id, scenario_id=notice.scenario_id, resolved=resolved,
        title=one_line(str(title)), metric=metric_name(series, transform, n),
        value=fmt_metric(e["value"], series, transform), verb=verb,
        line=fmt_threshold(e["threshold"], series, transform), rearm=rearm, when=when, windows=windows,
        confirmations=tuple(confs), summary=one_line(summary), rule=one_line(str(e.get("description", ""))),
        track=() if resolved else track_lines((track_records or {}).get(notice.scenario_id)),
        provenance=provenance,
    )


def track_lines(record: dict[str, Any] | None) -> tuple[str, ...]:
    """A track record (``ratiowatch.track_record.track_records``) in plain lines."""
    if not record:
        return ()
    if not record["fired"]:
        return (f"Track record: never fired in the history ({record['first']} to {record['last']}).",)
    out = [f"Track record: fired {record['fired']} times since {record['first']}, last on {record['last_fired']}."]
    for o in record["outcomes"]:
        cells = []
        for h, x in o["by_horizon"].items():
            if x["n"]:
                med = fmt_metric(x["median"], "A-B" if o["spread"] else "A", "lookback")
                cells.append(f"{h} sessions {med} ({x['positive'] * 100:.0f}% positive, n={x['n']})")
        if cells:
            out.append(f"After firing, {o['name']}: median " + "; ".join(cells))
    return tuple(out)


def heading(fs: Sequence[Facts]) -> str:
    """The message title: the scenario title, prefixed when the news is a resolution, counted when
    several events are grouped, and marked in every medium when the data is not live."""
    title = fs[0].title
    if fs[0].provenance:
        title = f"[{fs[0].provenance}] {title}"
    if len(fs) == 1:
        return f"Resolved: {title}" if fs[0].resolved else title
    if all(f.resolved for f in fs):
        return f"Resolved: {title} ({len(fs)} updates)"
    return f"{title} ({len(fs)} updates)"
