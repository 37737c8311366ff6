"""``ratiowatch notify``: the notify role alone (events -> email, Slack, push; deliveries)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_history
from ._role import add_role_arguments, role_main

NAME = "notify"
HELP = "run the notify role: events -> channels, in its own consumer group (scale it)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_role_arguments(p, 9471)
    add_history(p)


def run(args: argparse.Namespace) -> int:
    return role_main(NAME, args, _build, notifies=True)


def _build(args: argparse.Namespace, config: Any, bootstrap: str, metrics: Any, health: Any) -> tuple[Any, None]:
    from ratiowatch.roles.notify import NotifyRole

    return NotifyRole(config, bootstrap=bootstrap, partitions=args.partitions, history_dir=args.history,
                      metrics=metrics, health=health, follow_scenarios=True), None
