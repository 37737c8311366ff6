"""What a chaos run is asked to do: its length, seed, pace, faults and where its inputs are.
``ratiowatch chaos`` fills it from its arguments (``--help`` says what each means)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .plan import FAULT_KINDS

__all__ = ["ChaosOptions", "default_history"]


def default_history() -> Path:
    """The shared history beside the repository (``../shared/data/history``), or $RATIOWATCH_HISTORY."""
    env = os.environ.get("RATIOWATCH_HISTORY")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data" / "history"


@dataclass
class ChaosOptions:
    duration_s: float = 300.0
    seed: int = 1
    data: str | None = None             # history folder (default: default_history())
    config: str | None = None           # base scenarios (default: the shipped ones)
    pace: float = 12.0                  # dates sent per second (fewer when the history is short); the
                                        # worker does ~30/s here, so it can catch up after each fault
    partitions: int | None = None
    kinds: tuple[str, ...] = FAULT_KINDS
    drain_timeout_s: float | None = None  # default: max(120 s, half the duration)
    workdir: str | None = None          # kept when given; a temporary folder otherwise
    garbage_every: int = 12             # about one bad ticks record per this many dates
    feed_interval_s: float = 0.25       # one bad feed message per interval

