"""``ratiowatch web``: the status page, /status and /ws, built from the topics alone."""

from __future__ import annotations

import argparse
from typing import Any

from ._role import add_role_arguments, role_main

NAME = "web"
HELP = "run the web role: the status page, /status and /ws from scenario-status and events (scale it)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_role_arguments(p, 8765)


def run(args: argparse.Namespace) -> int:
    return role_main(NAME, args, _build)


def _build(args: argparse.Namespace, config: Any, bootstrap: str, metrics: Any, health: Any) -> tuple[Any, Any]:
    from ratiowatch.roles.web import WebRole
    from ratiowatch.streams.kafka_settings import load_kafka_security
    from ratiowatch.streams.live import LiveHub

    hub = LiveHub()
    return WebRole(hub, bootstrap=bootstrap, sec=load_kafka_security(), metrics=metrics, health=health,
                   follow_scenarios=True), hub
