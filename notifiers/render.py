"""Render: one message per medium from a batch of notices. Pure functions of their input.

Every medium shows the same facts (facts.py), escaped for it here at the last moment: Slack
mrkdwn ``& < >``, HTML for email, nothing for push, text and json.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any, Sequence

from .facts import MAX_LISTED, facts, heading, one_line
from .route import RESOLVED, Notice

__all__ = ["Message", "slack_escape", "render_slack", "render_email", "render_push", "render_text",
           "render_json", "render"]


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
    out = [f"{icon} *{x(heading(fs))}*"]
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
        subject = f"{heading(fs)}: {f0.metric} {f0.value}"
    else:
        subject = heading(fs)
    parts = [
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head>",
        "<body style=\"font-family:Helvetica,Arial,sans-serif;font-size:14px;color:#222\">",
        f"<h2 style=\"margin:0 0 8px\">{e(heading(fs))}</h2>",
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
    return one_line(subject), "\n".join(parts)


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
    return heading(fs), line


def render_text(notices: Sequence[Notice], tz: str = "America/New_York",
                track_records: dict[str, Any] | None = None) -> str:
    """Plain text for the console and for channels without markup."""
    fs = [facts(n, tz, track_records) for n in notices]
    head = heading(fs)  # "Resolved: ..." already says what a resolution is
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
        return Message(heading([facts(n, tz) for n in notices]), render_text(notices, tz, track_records), "text")
    raise ValueError(f"unknown medium {medium!r}")
