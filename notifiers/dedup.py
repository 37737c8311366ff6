"""Dedup: the durable record of what was delivered, keyed by (event_id, channel).

Like Alertmanager's notification log, a pair is written only after the channel reported success,
and a pair found here is never sent again: by a second ``handle`` of the same event, a replay,
a restarted service, or ``ratiowatch dlq retry``. The record is a SQLite file so it survives
restarts and can be shared by the worker and the CLI on one machine.

What remains is the at-least-once window: if the process dies after the channel accepted a
message and before the row is committed, that one message is sent again on the next attempt.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from dataclasses import replace
from typing import Iterable

from .decide import SKIP, dedup
from .group import Batch

__all__ = ["DEFAULT_STORE_PATH", "DeliveryLog", "split_delivered"]

DEFAULT_STORE_PATH = os.path.join("ratiowatch-data", "notifications.sqlite")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (
    event_id     TEXT NOT NULL,
    channel      TEXT NOT NULL,
    scenario     TEXT NOT NULL,
    delivered_ms INTEGER NOT NULL,
    PRIMARY KEY (event_id, channel)
)
"""


class DeliveryLog:
    """The (event_id, channel) pairs already delivered, in a SQLite file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path if path is not None else DEFAULT_STORE_PATH)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit; WAL lets `dlq retry` read while the worker writes
        # Workers call in from threads (asyncio.to_thread): one connection, one lock.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a recorded delivery must survive a power cut
        self._db.execute(_SCHEMA)

    def delivered(self, event_ids: Iterable[str], channel: str) -> set[str]:
        ids = list(event_ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(f"SELECT event_id FROM delivered WHERE channel = ? AND event_id IN ({marks})",
                                    [channel, *ids]).fetchall()
        return {r[0] for r in rows}

    def record(self, event_ids: Iterable[str], channel: str, scenario: str, at_ms: int) -> None:
        with self._lock, self._db:  # one transaction: a grouped message is recorded whole or not at all
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO delivered (event_id, channel, scenario, delivered_ms) VALUES (?, ?, ?, ?)",
                [(e, channel, scenario, at_ms) for e in event_ids])

    def count(self, channel: str | None = None) -> int:
        with self._lock:
            if channel is None:
                return self._db.execute("SELECT COUNT(*) FROM delivered").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM delivered WHERE channel = ?", [channel]).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def split_delivered(batch: Batch, delivered: set[str]) -> tuple[Batch, list[str]]:
    """The batch without the events already delivered, and the ids left out. Pure."""
    skip = [dedup(n.event_id, delivered).action == SKIP for n in batch.notices]
    keep = [n for n, s in zip(batch.notices, skip) if not s]
    skipped = [n.event_id for n, s in zip(batch.notices, skip) if s]
    return replace(batch, notices=keep), skipped
