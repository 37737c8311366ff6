"""Putting scenarios in force on a test cluster, as an operator does (`ratiowatch scenarios apply`):
the engine, notify and web roles take theirs from the ``scenarios`` topic."""

from __future__ import annotations

import io

from ratiowatch.commands.scenarios import apply_file
from ratiowatch.config import load_config


def apply_scenarios(broker: str, config: str | None = None, *, prune: bool = False) -> str:
    """Apply ``config`` (default: the shipped scenarios) on ``broker`` (kafka://host:port or
    host:port); returns what apply printed."""
    out = io.StringIO()
    scenarios = load_config(config, require_channels=False, check_channels="if_defined").scenarios
    apply_file(broker.removeprefix("kafka://"), scenarios, prune=prune, out=out)
    return out.getvalue()
