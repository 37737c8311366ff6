"""``ratiowatch config show``: the effective configuration (defaults filled, ${ENV} interpolated),
with every channel URL shown as scheme and host only: credentials, tokens and path components
print as ``<secret>``. Host and port are apprise's own reading of the URL (what it will connect
to), and a URL apprise would read differently from how it is written says so. Channel secrets are
not required here: a channel whose ${ENV} is unset shows as unset (and disabled), and the unset
channels are listed under ``unset_channels`` and on stderr."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from typing import Any

import yaml

from ratiowatch.config import load_config
from ratiowatch.model import Config, Rule
from ratiowatch.model.spec import rule_spec
from ratiowatch.notifiers.deliver import medium_for
from ratiowatch.notifiers.redact import redact_url, url_problem

from ._common import add_config, for_users

__all__ = ["NAME", "HELP", "add_arguments", "run", "config_document"]

NAME = "config"
HELP = "show the effective configuration (secrets redacted)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help=HELP, description=for_users(__doc__))
    add_config(show)


def _rule(r: Rule) -> dict[str, Any]:
    return {**rule_spec(r), "in_words": r.describe()}


def config_document(cfg: Config) -> dict[str, Any]:
    """The config as plain data with secrets redacted: what ``config show`` prints."""
    channels = {}
    for name, ch in cfg.channels.items():
        if ch.unset:
            # the medium follows from the scheme, when the file writes one (not for "${SLACK_URL}")
            scheme_known = "://" in ch.template.split("${", 1)[0] or ch.format != "auto"
            c: dict[str, Any] = {"url": "unset", "enabled": False, "unset": list(ch.unset), "format": ch.format,
                                 "renders_as": medium_for(replace(ch, url=ch.template)) if scheme_known
                                 else "unknown (set by the unset URL)"}
        else:
            c = {"url": redact_url(ch.url), "format": ch.format, "renders_as": medium_for(ch)}
            problem = url_problem(ch.url)
            if problem:
                c["problem"] = problem
        if ch.rate_limit_per_min is not None:
            c["rate_limit_per_min"] = ch.rate_limit_per_min
        if ch.quiet_hours is not None:
            c["quiet_hours"] = f"{ch.quiet_hours[0]}-{ch.quiet_hours[1]}"
            c["timezone"] = ch.timezone
        channels[name] = c
    scenarios = []
    for s in cfg.scenarios:
        d: dict[str, Any] = {"id": s.id, "title": s.title}
        if s.description:
            d["description"] = s.description
        d["trigger"] = _rule(s.trigger)
        if s.confirmations:
            d["confirmations"] = [{"label": c.name, **_rule(c)} for c in s.confirmations]
        if s.require is not None:
            d["require"] = s.require
        d.update(windows=list(s.windows), notify=list(s.notify), notify_resolved=s.notify_resolved,
                 group_window_s=s.group_window_s)
        scenarios.append(d)
    settings = {}
    for f in fields(cfg.settings):
        v = getattr(cfg.settings, f.name)
        settings[f.name] = sorted(v) if isinstance(v, (set, frozenset)) else v
    doc: dict[str, Any] = {
        "file": cfg.path,
        "settings": settings,
        "channels": channels,
    }
    if cfg.unset_channels:
        doc["unset_channels"] = {n: list(v) for n, v in cfg.unset_channels.items()}
    if cfg.warnings:
        doc["warnings"] = list(cfg.warnings)
    doc["scenarios"] = scenarios
    return doc


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, require_channels=False)
    yaml.safe_dump(config_document(cfg), sys.stdout, sort_keys=False, allow_unicode=True, width=100)
    sys.stdout.flush()
    if cfg.unset_channels:
        names = ", ".join(f"{n} ({', '.join(v)})" for n, v in cfg.unset_channels.items())
        print(f"ratiowatch config show: unset channels: {names}; commands that notify (run, notify, "
              f"replay --notify) need them set", file=sys.stderr)
    return 0
