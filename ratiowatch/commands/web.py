"""``ratiowatch web``: the status page, /status and /ws, built from the topics alone."""

from __future__ import annotations

import argparse
import asyncio

from ratiowatch.config import load_config

from ._role import add_role_arguments, role_broker, serve_role

NAME = "web"
HELP = "run the web role: the status page, /status and /ws from scenario-status and events (scale it)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_role_arguments(p, 8765)


def run(args: argparse.Namespace) -> int:
    bootstrap = role_broker(NAME, args)
    if bootstrap is None:
        return 2
    config = load_config(args.config)
    return asyncio.run(_main(args, config, bootstrap))


async def _main(args: argparse.Namespace, config, bootstrap: str) -> int:
    from ratiowatch.ops.health import Health
    from ratiowatch.ops.metrics import Metrics
    from ratiowatch.roles.web import WebRole
    from ratiowatch.streams.kafka_settings import load_kafka_security
    from ratiowatch.streams.live import LiveHub

    metrics, health = Metrics(), Health()
    hub = LiveHub(scenarios=[s.id for s in config.scenarios])
    role = WebRole(hub, bootstrap=bootstrap, sec=load_kafka_security(), metrics=metrics, health=health)
    return await serve_role(NAME, args, metrics, health, role.start, role.stop, live=hub)
