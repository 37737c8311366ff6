"""``ratiowatch engine``: the engine role alone (route and evaluate, the scenario state)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ratiowatch.config import load_config
from ratiowatch.streams.history import available_symbols

from ._common import add_history
from ._role import add_role_arguments, role_broker, serve_role

NAME = "engine"
HELP = "run the engine role: ticks -> state -> events and scenario-status (scale it: one group)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_role_arguments(p, 9470)
    add_history(p)


def run(args: argparse.Namespace) -> int:
    bootstrap = role_broker(NAME, args)
    if bootstrap is None:
        return 2
    config = load_config(args.config, known_symbols=available_symbols(args.history) if args.history else None)
    return asyncio.run(_main(args, config))


async def _main(args: argparse.Namespace, config) -> int:
    from ratiowatch.ops.health import Health
    from ratiowatch.ops.metrics import Metrics
    from ratiowatch.roles.engine import EngineRole

    from ratiowatch.streams.clients import BrokerUnreachable

    metrics, health = Metrics(), Health()
    try:
        role = EngineRole(config, broker_url=args.broker, partitions=args.partitions, history_dir=args.history,
                          metrics=metrics, health=health)
    except BrokerUnreachable as e:
        print(f"ratiowatch engine: {e}", file=sys.stderr)
        return 1
    return await serve_role(NAME, args, metrics, health, role.start, role.stop)
