"""Exceptions raised by ratiowatch.

    RatiowatchError            root: catch this to catch anything of ours
    ├── ConfigError            a scenario/config file is missing or invalid: fix the file named
    └── BrokerError            (streams.broker) the embedded broker failed or refused a request

A rejected tick is not an exception: it is a value (streams.ticks.Rejected) that goes to
``ticks.dlq`` with its reason, because rejecting input is part of normal operation.
"""

from __future__ import annotations

__all__ = ["RatiowatchError", "ConfigError"]


class RatiowatchError(Exception):
    """Root of ratiowatch's own errors."""


class ConfigError(RatiowatchError):
    """The config file is missing or invalid. The message names the file, the place and the problem;
    fix the file and start again (the CLI exits with code 2)."""

    def __init__(self, file: str, where: str, problem: str) -> None:
        self.file, self.where, self.problem = file, where, problem
        loc = f"{file}: {where}: " if where else f"{file}: "
        super().__init__(loc + problem)

