"""``ratiowatch engine``: the engine role alone (route and evaluate, the scenario state)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_history
from ._role import add_role_arguments, role_main

NAME = "engine"
HELP = "run the engine role: ticks -> state -> events and scenario-status (scale it: one group)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_role_arguments(p, 9470)
    add_history(p)


def run(args: argparse.Namespace) -> int:
    return role_main(NAME, args, _build)


def _build(args: argparse.Namespace, config: Any, bootstrap: str, metrics: Any, health: Any) -> tuple[Any, None]:
    from ratiowatch.roles.engine import EngineRole

    return EngineRole(config, broker_url=args.broker, partitions=args.partitions, history_dir=args.history,
                      metrics=metrics, health=health), None
