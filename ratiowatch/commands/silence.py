"""``ratiowatch silence``: mute scenarios for a while, on Alertmanager's model (``amtool silence``).

    ratiowatch silence add small-caps-outperform --for 4h --comment "already on it" --broker kafka://HOST:PORT
    ratiowatch silence add --all --until 2030-01-02T09:30:00-05:00 --comment "FOMC day" --broker kafka://HOST:PORT
    ratiowatch silence list --broker kafka://HOST:PORT
    ratiowatch silence expire ID --broker kafka://HOST:PORT

Every action needs the cluster: --broker, or env RATIOWATCH_BROKER (then the examples can leave
--broker out).

Silences live on the compacted ``silences`` topic of the cluster (key: silence id). While one
matches a scenario, the notify role sends none of its notifications and writes a ``silenced``
record on ``deliveries`` instead; events still go to ``events``, and what a silence suppressed is
never sent later. ``expire`` ends a silence now by writing it again with ``ends_at`` = now, so it
stays in ``list`` (as expired).

``add`` checks the scenario ids against --config, or else against the scenarios in force on the
cluster (its ``scenarios`` topic; the shipped scenarios when nothing was applied there). Bad input
(an unknown scenario, a duration <= 0, an --until in the past or without a UTC offset, an empty
comment, an unknown or expired id for ``expire``) exits 2 with the reason and writes nothing.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import datetime, timezone

from ratiowatch.config import load_config
from ratiowatch.notifiers.silences import SilenceError, encode, expire, new_silence, state
from ratiowatch.streams.clients import BrokerUnreachable, check_reachable
from ratiowatch.streams.kafka_settings import load_kafka_security
from ratiowatch.streams.topics import SILENCES

from ._common import add_config, broker_url, for_users
from ._control import read_scenarios, read_silences, write_silence

__all__ = ["NAME", "HELP", "add_arguments", "run"]

NAME = "silence"
HELP = "mute scenarios for a while: silence add / list / expire (on the cluster's silences topic)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = for_users(__doc__)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("add", help="mute scenarios (or --all) for --for DURATION or --until TIME")
    a.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenario ids to mute")
    a.add_argument("--all", action="store_true", dest="all_scenarios", help="mute every scenario")
    a.add_argument("--for", dest="duration", metavar="DURATION", help="how long: 30m, 4h, 1d12h, 2w")
    a.add_argument("--until", metavar="TIME", help="until an ISO-8601 time with a UTC offset, "
                                                   "e.g. 2026-12-03T09:30:00-05:00 or ...Z")
    a.add_argument("--comment", required=True, help="why (shown in the list and on the status page)")
    a.add_argument("--author", default=None, help="who (default: the login name)")
    add_config(a)
    lst = sub.add_parser("list", help="every silence, newest first, with its state (active, pending, expired)")
    lst.add_argument("--json", action="store_true", help="the silences as JSON")
    e = sub.add_parser("expire", help="end a silence now (it stays listed, as expired)")
    e.add_argument("id", metavar="ID", help="the silence's id, as `add` printed it and `list` shows it")
    for q in (a, lst, e):
        # Not _common.add_broker: that one promises an embedded broker; silences live on a cluster.
        q.add_argument("--broker", metavar="URL", default=os.environ.get("RATIOWATCH_BROKER"),
                       help="kafka://host:port[,host:port] of the cluster (env RATIOWATCH_BROKER); required")


def _fail(msg: str) -> int:
    print(f"ratiowatch silence: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace, *, now: datetime | None = None) -> int:
    url = broker_url(args.broker)
    if url is None:
        return _fail("--broker kafka://HOST:PORT is required (silences live on that cluster)")
    bootstrap = url.removeprefix("kafka://")
    now = now or datetime.now(timezone.utc)
    if args.action == "add":
        # Everything is checked before anything is written: bad input writes nothing. What can be
        # checked without the cluster is checked first; then the ids, against what is in force.
        fields = dict(all_scenarios=args.all_scenarios, duration=args.duration, until=args.until,
                      comment=args.comment, author=args.author or _login(), now=now)
        try:
            from_file = None if args.config is None else _known_scenarios(bootstrap, args.config)
            new_silence(args.scenarios, **fields, known=args.scenarios if from_file is None else from_file)
        except SilenceError as e:
            return _fail(str(e))
        if (unreachable := _unreachable(bootstrap)) is not None:
            return unreachable
        try:
            s = new_silence(args.scenarios, **fields, known=from_file or _known_scenarios(bootstrap, None))
        except SilenceError as e:
            return _fail(str(e))
        sec = load_kafka_security()
        write_silence(bootstrap, *encode(s), sec=sec)
        print(s.id)
        return 0
    if (unreachable := _unreachable(bootstrap)) is not None:
        return unreachable
    sec = load_kafka_security()
    silences = read_silences(bootstrap, sec=sec)
    if args.action == "expire":
        s = silences.get(args.id)
        if s is None:
            return _fail(f"no silence {args.id!r} on {SILENCES} (see `ratiowatch silence list`)")
        try:
            ended = expire(s, now)
        except SilenceError as e:
            return _fail(str(e))
        write_silence(bootstrap, *encode(ended), sec=sec)
        print(f"silence {s.id} expired")
        return 0
    rows = silences.all()
    if args.json:
        print(json.dumps([{**s.as_json(), "state": state(s, now)} for s in rows], indent=2))
    else:
        _table(rows, now)
    return 0


def _unreachable(bootstrap: str) -> int | None:
    """Exit 1 at once, saying so, when no broker of the cluster answers (rather than a client's
    retries for half a minute)."""
    try:
        check_reachable(bootstrap)
    except BrokerUnreachable as e:
        print(f"ratiowatch silence: {e}", file=sys.stderr)
        return 1
    return None


def _known_scenarios(bootstrap: str, config: str | None) -> list[str]:
    """The ids a silence may name: --config's, else those in force on the cluster's ``scenarios``
    topic (what the roles evaluate; the shipped file when nothing was applied there)."""
    if config is None:
        on_topic = list(read_scenarios(bootstrap, sec=load_kafka_security()))
        if on_topic:
            return on_topic
    return [s.id for s in load_config(config, require_channels=False).scenarios]


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in a bare container: the silence still needs an author
        return "unknown"


def _table(rows: list, now: datetime) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(box=None, header_style="bold", pad_edge=False)
    t.add_column("ID", no_wrap=True)  # copied into `silence expire`: never folded
    for col in ("SCENARIOS", "STATE", "STARTS", "ENDS", "AUTHOR", "COMMENT"):
        t.add_column(col, overflow="fold")
    short = "%Y-%m-%d %H:%M UTC"
    for s in rows:
        t.add_row(s.id, ", ".join(s.matchers), state(s, now), s.starts_at.strftime(short),
                  s.ends_at.strftime(short), s.author, s.comment)
    # Piped (grep, a script): one line per silence, whole, rather than rich's 80-column guess.
    Console(width=None if sys.stdout.isatty() else 1000).print(t if rows else "no silences")


