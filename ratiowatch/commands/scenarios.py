"""``ratiowatch scenarios``: the scenarios in force, on the cluster's ``scenarios`` topic.

    ratiowatch scenarios apply configs/scenarios.yaml --dry-run --broker kafka://HOST:PORT
    ratiowatch scenarios apply configs/scenarios.yaml --prune --broker kafka://HOST:PORT
    ratiowatch scenarios list --broker kafka://HOST:PORT
    ratiowatch scenarios export --broker kafka://HOST:PORT --output in-force.yaml

The running engine, notify and web roles follow the topic: an applied change takes effect within
seconds, with no restart. A scenario whose trigger, confirmations, require or windows changed
starts its state again (from history when the engine has --history); a change of title,
description or routing keeps it; a removed scenario's state is deleted.

``apply`` validates the whole file with the rules every command uses (the same messages, exit 2)
and publishes nothing if anything is wrong. It prints what changes: added, changed, unchanged,
and (with --prune) removed; without --prune a scenario that is on the topic but not in the file
stays. Channels stay in the roles' config file and environment: secrets never go on a topic. A
file without a channels section may name any channel; the notify role checks the names against
its own channels.

``export`` writes the scenarios in force as a file that ``apply`` reads back to the same versions.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

from ratiowatch.config import load_config
from ratiowatch.model import Scenario
from ratiowatch.model.changes import diff
from ratiowatch.model.spec import encode_record, spec
from ratiowatch.streams.clients import BrokerUnreachable, check_reachable
from ratiowatch.streams.kafka_settings import KafkaSecurity, load_kafka_security
from ratiowatch.streams.topics import SCENARIOS
from ratiowatch.streams.writeback import write_records

from ._common import broker_url, for_users
from ._control import read_scenarios, read_silences

__all__ = ["NAME", "HELP", "add_arguments", "run", "apply_file"]

NAME = "scenarios"
HELP = "the scenarios in force on the cluster: apply a file (live, no restart), list, export"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = for_users(__doc__)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("apply", help="validate a scenario file and publish what changed")
    a.add_argument("file", metavar="FILE", help="scenario file (YAML, as configs/scenarios.yaml)")
    a.add_argument("--dry-run", action="store_true", help="print what would change; publish nothing")
    a.add_argument("--prune", action="store_true", help="also remove the scenarios that are not in the file")
    lst = sub.add_parser("list", help="id, version, title and state of every scenario in force")
    lst.add_argument("--json", action="store_true", help="as JSON")
    e = sub.add_parser("export", help="the scenarios in force as a scenario file (stdout, or --output)")
    e.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    for q in (a, lst, e):
        q.add_argument("--broker", metavar="URL", default=os.environ.get("RATIOWATCH_BROKER"),
                       help="kafka://host:port[,host:port] of the cluster (env RATIOWATCH_BROKER); required")


def _fail(msg: str, code: int = 2) -> int:
    print(f"ratiowatch scenarios: {msg}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    url = broker_url(args.broker)
    if args.action == "apply":
        # Checked before the cluster is touched: a bad file publishes nothing (ConfigError: exit 2).
        config = load_config(args.file, require_channels=False, check_channels="if_defined")
    if url is None:
        return _fail("--broker kafka://HOST:PORT is required (the scenarios live on that cluster)")
    bootstrap, sec = url.removeprefix("kafka://"), load_kafka_security()
    try:
        check_reachable(bootstrap)
    except BrokerUnreachable as e:
        return _fail(str(e), code=1)
    if args.action == "apply":
        return apply_file(bootstrap, config.scenarios, dry_run=args.dry_run, prune=args.prune, sec=sec)
    current = read_scenarios(bootstrap, sec=sec)
    if args.action == "export":
        text = yaml.safe_dump({"scenarios": [spec(s) for s in current.values()]}, sort_keys=False,
                              allow_unicode=True)
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    return _list(bootstrap, current, args.json, sec)


def apply_file(bootstrap: str, scenarios: tuple[Scenario, ...], *, dry_run: bool = False, prune: bool = False,
               sec: KafkaSecurity | None = None, out=None, each: bool = True) -> int:
    """Publish what differs between ``scenarios`` and the topic; print it (``each`` False: only
    the summary). Also ``run --config``'s."""
    out = out or sys.stdout
    current = read_scenarios(bootstrap, sec=sec)
    wanted = {s.id: s for s in scenarios}
    if not prune:  # what the file does not name stays in force
        wanted = {**{sid: s for sid, s in current.items() if sid not in wanted}, **wanted}
    changes = diff(current, wanted)
    for line in changes.lines() if each else []:
        print(line, file=out)
    kept = [sid for sid in current if sid not in {s.id for s in scenarios}] if not prune else []
    if kept:
        print(f"  ({len(kept)} on the topic and not in the file stay: {', '.join(kept)}; --prune removes them)",
              file=out)
    if dry_run:
        print(f"dry run: {changes.summary()}; nothing published", file=out)
        return 0
    records = [encode_record(s) for s in (*changes.added, *changes.changed)]
    records += [(sid.encode(), None) for sid in changes.removed]
    if records:
        write_records(bootstrap, SCENARIOS, records, client_id="ratiowatch-scenarios", sec=sec)
    print(f"applied: {changes.summary()}", file=out)
    return 0


def _list(bootstrap: str, current: dict[str, Scenario], as_json: bool, sec: KafkaSecurity | None) -> int:
    import json

    now = datetime.now(timezone.utc)
    silences = read_silences(bootstrap, sec=sec)
    rows = []
    for s in current.values():
        m = silences.muting(s.id, now)
        state = f"muted until {m.ends_at.strftime('%Y-%m-%d %H:%M UTC')}" if m is not None else "active"
        rows.append({"id": s.id, "version": s.version, "title": s.title, "state": state})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("ID", "VERSION", "TITLE", "STATE"):
        t.add_column(col, no_wrap=col in ("ID", "VERSION"), overflow="fold")
    for r in rows:
        t.add_row(r["id"], r["version"], r["title"], r["state"])
    Console(width=None if sys.stdout.isatty() else 1000).print(t if rows else f"no scenarios on {SCENARIOS}")
    return 0
