"""Strict reading of one mapping of the scenario file: every key must be known, and each value is
read as the type it must be, or the error names the file, the place and the problem."""

from __future__ import annotations

import math
import re
from typing import Any

from ratiowatch.errors import ConfigError

__all__ = ["Keys", "ID_RE"]

# Scenario ids and channel names.
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class Keys:
    """Strict reading of one mapping: every key must be read or it is an error."""

    def __init__(self, file: str, where: str, raw: Any, allowed: set[str]) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(file, where, f"must be a mapping, got {type(raw).__name__}")
        unknown = sorted(str(k) for k in raw if k not in allowed)
        if unknown:
            raise ConfigError(file, where, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
        self.file, self.where, self.raw = file, where, raw

    def err(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, f"{self.where}.{key}" if self.where else key, problem)

    def number(self, key: str, default: Any = ..., *, minimum: float | None = None) -> Any:
        if key not in self.raw or self.raw[key] is None:
            if default is ...:
                raise self.err(key, "is required")
            return default
        v = self.raw[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.err(key, f"must be a finite number, got {v!r}")
        if minimum is not None and v < minimum:
            raise self.err(key, f"must be >= {minimum:g}, got {v!r}")
        return float(v)

    def integer(self, key: str, default: Any = ..., *, minimum: int = 1) -> Any:
        if key not in self.raw or self.raw[key] is None:
            if default is ...:
                raise self.err(key, "is required")
            return default
        v = self.raw[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(key, f"must be a whole number, got {v!r}")
        if v < minimum:
            raise self.err(key, f"must be >= {minimum}, got {v}")
        return v

    def string(self, key: str, default: Any = ...) -> Any:
        if key not in self.raw or self.raw[key] is None:
            if default is ...:
                raise self.err(key, "is required")
            return default
        v = self.raw[key]
        if not isinstance(v, str) or not v.strip():
            raise self.err(key, f"must be a non-empty string, got {v!r}")
        return v

    def boolean(self, key: str, default: bool) -> bool:
        v = self.raw.get(key, default)
        if not isinstance(v, bool):
            raise self.err(key, f"must be true or false, got {v!r}")
        return v
