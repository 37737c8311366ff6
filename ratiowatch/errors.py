"""Exceptions raised by ratiowatch.

    RatiowatchError            root: catch this to catch anything of ours
    ├── ConfigError            a scenario/config file is missing or invalid: fix the file named
    ├── BadTick                a tick or feed message was rejected: it goes to ticks.dlq with .reason
    └── BrokerError            (streams.broker) the embedded broker failed or refused a request
"""

from __future__ import annotations

__all__ = ["RatiowatchError", "ConfigError", "BadTick"]


class RatiowatchError(Exception):
    """Root of ratiowatch's own errors."""


class ConfigError(RatiowatchError):
    """The config file is missing or invalid. The message names the file, the place and the problem;
    fix the file and start again (the CLI exits with code 2)."""

    def __init__(self, file: str, where: str, problem: str) -> None:
        self.file, self.where, self.problem = file, where, problem
        loc = f"{file}: {where}: " if where else f"{file}: "
        super().__init__(loc + problem)


class BadTick(RatiowatchError):
    """A tick or feed message that cannot be applied. ``reason`` is a short machine-friendly code
    (``not_json``, ``missing_field``, ``bad_price``, ``unknown_symbol``, ``late``...), ``detail``
    says what exactly was wrong. Nothing is applied; the raw input goes to ``ticks.dlq``."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")
