"""``ratiowatch notify``: the notify role alone (events -> email, Slack, push; deliveries)."""

from __future__ import annotations

import argparse
import asyncio

from ratiowatch.config import load_config

from ._common import add_history
from ._role import add_role_arguments, role_broker, serve_role

NAME = "notify"
HELP = "run the notify role: events -> channels, in its own consumer group (scale it)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_role_arguments(p, 9471)
    add_history(p)


def run(args: argparse.Namespace) -> int:
    bootstrap = role_broker(NAME, args)
    if bootstrap is None:
        return 2
    config = load_config(args.config)
    return asyncio.run(_main(args, config, bootstrap))


async def _main(args: argparse.Namespace, config, bootstrap: str) -> int:
    from ratiowatch.ops.health import Health
    from ratiowatch.ops.metrics import Metrics
    from ratiowatch.roles.notify import NotifyRole

    metrics, health = Metrics(), Health()
    role = NotifyRole(config, bootstrap=bootstrap, partitions=args.partitions, history_dir=args.history,
                      metrics=metrics, health=health)
    return await serve_role(NAME, args, metrics, health, role.start, role.stop)
