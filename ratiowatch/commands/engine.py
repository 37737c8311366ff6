"""``ratiowatch engine``: the engine role alone (route and evaluate, the scenario state)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ._common import add_history
from ._role import add_role_arguments, role_main

NAME = "engine"
HELP = "run the engine role: ticks -> state -> events and scenario-status (scale it: one group)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ratiowatch.streams.origin import LIVE, ORIGINS

    add_role_arguments(p, 9470)
    add_history(p)
    p.add_argument("--origin", choices=ORIGINS, default=os.environ.get("RATIOWATCH_ORIGIN", LIVE),
                   help="what the ticks of this cluster are (env RATIOWATCH_ORIGIN; default live): every event "
                        "and status says it, and records whose ratiowatch-origin header says another go to "
                        "ticks.dlq (reason origin). The simulated market (`ratiowatch source`) needs "
                        "--origin simulated")


def run(args: argparse.Namespace) -> int:
    return role_main(NAME, args, _build)


def _build(args: argparse.Namespace, config: Any, bootstrap: str, metrics: Any, health: Any) -> tuple[Any, None]:
    from ratiowatch.roles.engine import EngineRole

    return EngineRole(config, broker_url=args.broker, partitions=args.partitions, history_dir=args.history,
                      metrics=metrics, health=health, origin=args.origin, follow_scenarios=True), None
