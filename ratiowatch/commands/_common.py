"""Options shared by several commands, so every command spells them the same way."""

from __future__ import annotations

import argparse
import os
import re
import sys

__all__ = ["add_config", "add_broker", "add_history", "broker_url"]


def for_users(doc: str | None) -> str:
    """A module docstring as a --help description: without the RST literal marks (``x``)."""
    return (doc or "").replace("``", "")


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", default=None,
                   help="scenario file (default: the shipped configs/scenarios.yaml)")


def add_broker(p: argparse.ArgumentParser, embedded_default: bool = True) -> None:
    """--broker; ``embedded_default``: without it the command starts an embedded broker (run,
    replay), else it is required (a role joins a running cluster)."""
    default = ("default: start an embedded broker in this process" if embedded_default
               else "required: a role joins a running cluster (`ratiowatch broker` starts an embedded one)")
    p.add_argument("--broker", metavar="URL", default=os.environ.get("RATIOWATCH_BROKER"),
                   help=f"kafka://host:port[,host:port] of a running cluster, or of `ratiowatch broker` "
                        f"(env RATIOWATCH_BROKER); {default}")


def add_history(p: argparse.ArgumentParser, flag: str = "--history", required: bool = False) -> None:
    p.add_argument(flag, metavar="DIR", default=None, required=required,
                   help="folder of SYMBOL.csv daily closes (date,close)")


def broker_url(value: str | None) -> str | None:
    """Validate --broker: None means embedded. Exits with code 2 and a clear message."""
    if value is None or value == "":
        return None
    hosts = value.removeprefix("kafka://").split(",")
    if not value.startswith("kafka://") or not all(re.fullmatch(r"[\w.\-\[\]:]+:\d{1,5}", h) for h in hosts):
        print(f"ratiowatch: --broker must look like kafka://host:port[,host:port], got {value!r}", file=sys.stderr)
        raise SystemExit(2)
    return value
