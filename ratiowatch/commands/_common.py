"""Options shared by several commands, so every command spells them the same way."""

from __future__ import annotations

import argparse
import os

__all__ = ["add_config", "add_broker", "add_history", "broker_url"]


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", default=None,
                   help="scenario file (default: the shipped configs/scenarios.yaml)")


def add_broker(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", metavar="URL", default=os.environ.get("RATIOWATCH_BROKER"),
                   help="kafka://host:port[,host:port] of a running cluster, or of `ratiowatch broker` "
                        "(env RATIOWATCH_BROKER); default: start an embedded broker in this process")


def add_history(p: argparse.ArgumentParser, flag: str = "--history", required: bool = False) -> None:
    p.add_argument(flag, metavar="DIR", default=None, required=required,
                   help="folder of SYMBOL.csv daily closes (date,close)")


def broker_url(value: str | None) -> str | None:
    """Validate --broker: None means embedded. Raises SystemExit(2) with a clear message."""
    if value is None or value == "":
        return None
    if not value.startswith("kafka://") or len(value) <= len("kafka://"):
        raise SystemExit(f"ratiowatch: --broker must look like kafka://host:port, got {value!r}")
    return value
