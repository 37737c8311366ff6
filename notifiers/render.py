"""Stage 5a, render: one message per medium from a batch of notices. Pure functions of their input.

Every medium shows the same facts (:class:`Facts`): the title, the reading against its trigger,
the 1/3/6/12-month readings, which confirmations are met and a plain-words summary. The facts are
plain strings; each renderer escapes them for its medium at the last moment (Slack mrkdwn
``& < >``, HTML), so data can never turn into markup.

Numbers: a change of a ratio or a level (lookback, or against an average, a high or a low) is a
percent (``+10.42%``); a spread's is a difference in the series' own units (``+0.35``); a rule
without a transform shows the value itself (``99.80``); a streak counts sessions (``6 sessions
up``). The words come from :mod:`ratiowatch.agents.wording`, as on the status page.

With a track record (``ratiowatch.track_record``: what the rule did over the history), a firing
also says how often it fired before, when last, and what followed.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from ratiowatch.agents.wording import fmt_metric, fmt_threshold, metric_name
from ratiowatch.streams.origin import LIVE, REPLAY

from .route import RESOLVED, Notice

__all__ = ["Facts", "Message", "facts", "fmt_value", "window_label", "slack_escape",
           "render_slack", "render_email", "render_push", "render_text", "render_json", "render"]

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


def _one_line(s: str) -> str:
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
        title=_one_line(str(title)), metric=metric_name(series, transform, n),
        value=fmt_metric(e["value"], series, transform), verb=verb,
        line=fmt_threshold(e["threshold"], series, transform), rearm=rearm, when=when, windows=windows,
        confirmations=tuple(confs), summary=_one_line(summary), rule=_one_line(str(e.get("description", ""))),
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


def _heading(fs: Sequence[Facts]) -> str:
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


# ---------------------------------------------------------------- Slack (mrkdwn)

def slack_escape(s: str) -> str:
    """Slack's three control characters: everything else in mrkdwn is literal enough."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SLACK_MARK = {True: ":white_check_mark:", False: ":x:", None: ":grey_question:"}


def render_slack(notices: Sequence[Notice], tz: str = "America/New_York", *, escape: bool = True,
                 track_records: dict[str, Any] | None = None) -> str:
    """A Slack message in mrkdwn. ``escape=False`` leaves ``& < >`` for apprise's own ``slack://``
    plugin, which escapes them itself (escaping twice would show ``&amp;amp;``)."""
    x = slack_escape if escape else (lambda s: s)
    fs = [facts(n, tz, track_records) for n in notices]
    icon = ":white_check_mark:" if all(f.resolved for f in fs) else ":rotating_light:"
    out = [f"{icon} *{x(_heading(fs))}*"]
    for i, f in enumerate(fs[:MAX_LISTED]):
        if len(fs) > 1:
            out.append("")
            out.append(f"*{i + 1}.* {':white_check_mark: resolved' if f.resolved else ':rotating_light: fired'}")
        line = f"*{x(f.metric)}* is *{x(f.value)}*: {x(f.verb)} *{x(f.line)}*"
        if f.rearm is not None:
            line += f" (re-arms at {x(f.rearm)})"
        out.append(f"{line} at {x(f.when)}.")
        if f.windows:
            out.append("*Readings*: " + " · ".join(f"{x(lbl)} *{x(v)}*" for lbl, v in f.windows))
        if f.confirmations and not f.resolved:
            out.append(f"*Confirmations*: {f.met_count} of {len(f.confirmations)} met")
            for c in f.confirmations:
                out.append(f"• {_SLACK_MARK[c.met]} {x(c.label)}: {x(c.reading)} (needs {x(c.need)})")
    if len(fs) > MAX_LISTED:
        out.append(f"_…and {len(fs) - MAX_LISTED} more_")
    for line in fs[-1].track:
        out.append(f"_{x(line)}_")
    f0 = fs[0]
    if f0.summary:
        out.append(f"> {x(f0.summary)}")
    ids = ", ".join(f"`{f.event_id[:12]}`" for f in fs[:MAX_LISTED])
    out.append(f"_Rule: {x(f0.rule)} · scenario `{x(f0.scenario_id)}` · event {ids}_")
    return "\n".join(out)


# ---------------------------------------------------------------- email (HTML)

_HTML_MARK = {True: "&#10004; met", False: "&#10008; not met", None: "? no data"}


def render_email(notices: Sequence[Notice], tz: str = "America/New_York",
                 track_records: dict[str, Any] | None = None) -> tuple[str, str]:
    """(subject, HTML body). The chart PNG goes along as an attachment (see service.py)."""
    e = lambda s: html.escape(str(s), quote=True)  # noqa: E731
    fs = [facts(n, tz, track_records) for n in notices]
    f0 = fs[0]
    if len(fs) == 1:
        subject = f"{_heading(fs)}: {f0.metric} {f0.value}"
    else:
        subject = _heading(fs)
    parts = [
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head>",
        "<body style=\"font-family:Helvetica,Arial,sans-serif;font-size:14px;color:#222\">",
        f"<h2 style=\"margin:0 0 8px\">{e(_heading(fs))}</h2>",
    ]
    for i, f in enumerate(fs[:MAX_LISTED]):
        if len(fs) > 1:
            parts.append(f"<h3 style=\"margin:16px 0 4px\">{i + 1}. {'resolved' if f.resolved else 'fired'}</h3>")
        rearm = f" (re-arms at {e(f.rearm)})" if f.rearm is not None else ""
        parts.append(f"<p class=\"reading\"><b>{e(f.metric)}</b> is <b>{e(f.value)}</b>: {e(f.verb)} "
                     f"<b>{e(f.line)}</b>{rearm} at {e(f.when)}.</p>")
        # Paragraphs and lists rather than tables: apprise derives the text/plain part from this
        # HTML, and a list reads well there too.
        if f.windows:
            parts.append("<p class=\"windows\"><b>Readings</b>: "
                         + " · ".join(f"{e(lbl)} <b>{e(v)}</b>" for lbl, v in f.windows) + "</p>")
        if f.confirmations and not f.resolved:
            parts.append(f"<p><b>Confirmations</b>: {f.met_count} of {len(f.confirmations)} met</p>")
            parts.append("<ul class=\"confirmations\">")
            for c in f.confirmations:
                parts.append(f"<li>{_HTML_MARK[c.met]}: {e(c.label)}, {e(c.reading)} (needs {e(c.need)})</li>")
            parts.append("</ul>")
    if len(fs) > MAX_LISTED:
        parts.append(f"<p>…and {len(fs) - MAX_LISTED} more.</p>")
    if fs[-1].track:
        parts.append("<ul class=\"track\">" + "".join(f"<li>{e(line)}</li>" for line in fs[-1].track) + "</ul>")
    if f0.summary:
        parts.append(f"<p class=\"summary\" style=\"border-left:3px solid #ccc;padding-left:8px\">{e(f0.summary)}</p>")
    parts.append(f"<p style=\"color:#777;font-size:12px\">Rule: {e(f0.rule)} · scenario {e(f0.scenario_id)} · "
                 f"event {', '.join(e(f.event_id) for f in fs[:MAX_LISTED])}</p>")
    parts.append("</body></html>")
    return _one_line(subject), "\n".join(parts)


# ---------------------------------------------------------------- push, text, json

def render_push(notices: Sequence[Notice], tz: str = "America/New_York") -> tuple[str, str]:
    """(title, one line): what fits on a lock screen."""
    fs = [facts(n, tz) for n in notices]
    last = fs[-1]
    line = f"{last.metric} {last.value}: {last.verb} {last.line}"
    if last.confirmations and not last.resolved:
        line += f" · {last.met_count}/{len(last.confirmations)} confirmations"
    if len(fs) > 1:
        line += f" (+{len(fs) - 1} more)"
    return _heading(fs), line


def render_text(notices: Sequence[Notice], tz: str = "America/New_York",
                track_records: dict[str, Any] | None = None) -> str:
    """Plain text for the console and for channels without markup."""
    fs = [facts(n, tz, track_records) for n in notices]
    head = _heading(fs)  # "Resolved: ..." already says what a resolution is
    out = [head if all(f.resolved for f in fs) else f"ALERT: {head}"]
    for i, f in enumerate(fs[:MAX_LISTED]):
        prefix = f"  {i + 1}. " if len(fs) > 1 else "  "
        out.append(f"{prefix}{f.headline} at {f.when}.")
        if f.windows:
            out.append("  Readings: " + ", ".join(f"{lbl} {v}" for lbl, v in f.windows))
        if f.confirmations and not f.resolved:
            out.append(f"  Confirmations: {f.met_count} of {len(f.confirmations)} met")
            for c in f.confirmations:
                mark = {True: "[x]", False: "[ ]", None: "[?]"}[c.met]
                out.append(f"    {mark} {c.label}: {c.reading} (needs {c.need})")
    if len(fs) > MAX_LISTED:
        out.append(f"  ...and {len(fs) - MAX_LISTED} more")
    out.extend(f"  {line}" for line in fs[-1].track)
    if fs[0].summary:
        out.append(f"  {fs[0].summary}")
    out.append(f"  Rule: {fs[0].rule} · scenario {fs[0].scenario_id} · event "
               + ", ".join(f.event_id for f in fs[:MAX_LISTED]))
    return "\n".join(out)


def render_json(notices: Sequence[Notice], tz: str = "America/New_York") -> str:
    """For services: the events themselves (schema v1) with the status and a one-line summary."""
    title, line = render_push(notices, tz)
    doc: dict[str, Any] = {
        "type": "ratiowatch.notification",
        "status": "resolved" if all(n.status == RESOLVED for n in notices) else "firing",
        "scenario": notices[0].scenario_id,
        "title": title,
        "summary": line,
        "events": [dict(n.event, status=n.status) for n in notices],
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------- one entry point

@dataclass(frozen=True, slots=True)
class Message:
    """What a sender gets: the medium decides which fields it uses."""

    title: str
    body: str
    body_format: str | None  # apprise body_format: "html", "text", or None (pass through as is)
    wants_chart: bool = False


def render(medium: str, notices: Sequence[Notice], tz: str = "America/New_York", *,
           slack_escaped: bool = True, track_records: dict[str, Any] | None = None) -> Message:
    """The message for ``medium`` (slack, email, push, text, json)."""
    if medium == "slack":
        # The title is inside the mrkdwn body: Mattermost and Slack webhooks show one text.
        return Message("", render_slack(notices, tz, escape=slack_escaped, track_records=track_records), None)
    if medium == "email":
        subject, body = render_email(notices, tz, track_records)
        return Message(subject, body, "html", wants_chart=True)
    if medium == "push":
        title, line = render_push(notices, tz)
        return Message(title, line, "text")
    if medium == "json":
        # Webhooks for services (json://, form://, xml://) carry attachments base64-encoded: the chart goes too.
        return Message(render_push(notices, tz)[0], render_json(notices, tz), "text", wants_chart=True)
    if medium == "text":
        return Message(_heading([facts(n, tz) for n in notices]), render_text(notices, tz, track_records), "text")
    raise ValueError(f"unknown medium {medium!r}")
