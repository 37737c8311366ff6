"""The notifier agent: consumes ``events`` and hands each event to the notification service.

It is a separate consumer of the events topic, not a call from the evaluating agent, so a slow
or failing channel never holds up crossings (and a downstream service sees exactly what the
notifiers see).

The service queues a notice and returns at once, and faust commits the event's offset soon
after, while the notice may still be waiting for a retry. So that a worker killed at that moment
loses nothing, an event the service queued something for is written to the *inbox* (a SQLite
file) before its offset can be committed, and taken out once the service has nothing pending
(every notice delivered, skipped as a duplicate or dead-lettered). A worker that starts with
events in its inbox hands them to the service again; the service's dedup record (notifiers/dedup.py)
skips the pairs that were delivered. The inbox is used when ``pending`` and ``inbox_path`` are
given.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable

import faust
import orjson

from ratiowatch.notifiers.exceptions import InvalidEvent

__all__ = ["install_notifier", "Inbox"]

log = logging.getLogger(__name__)


class Inbox:
    """Events whose notices may not be settled yet, in arrival order, in a SQLite file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # written before the event's offset is committed
        self._db.execute("CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event BLOB NOT NULL)")
        self.last_seq = 0  # the newest seq whose insert has returned

    def add(self, raw: bytes) -> None:
        with self._lock:
            seq = self._db.execute("INSERT INTO inbox (event) VALUES (?)", [raw]).lastrowid
            self.last_seq = max(self.last_seq, seq)

    def clear_through(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM inbox WHERE seq <= ?", [seq])

    def events(self) -> list[tuple[int, bytes]]:
        with self._lock:
            rows = self._db.execute("SELECT seq, event FROM inbox ORDER BY seq").fetchall()
        if rows:
            self.last_seq = max(self.last_seq, rows[-1][0])
        return rows

    def close(self) -> None:
        with self._lock:
            self._db.close()


def install_notifier(app: faust.App, events_topic: faust.TopicT,
                     handle: Callable[[dict[str, Any]], Awaitable[None]], *,
                     pending: Callable[[], int] | None = None,
                     inbox_path: str | os.PathLike[str] | None = None,
                     on_bad_record: Callable[[str], None] | None = None) -> None:
    """``pending``: how many notices the service holds (NotificationService.pending);
    ``inbox_path``: where the inbox lives (e.g. beside the dedup record); ``on_bad_record(why)``
    counts a record on ``events`` the notifiers cannot use (it is logged and skipped)."""
    inbox = Inbox(inbox_path) if pending is not None and inbox_path is not None else None

    async def hand_over(raw: bytes, where: str = "the inbox") -> None:
        before = pending() if inbox is not None else 0
        try:
            await handle(orjson.loads(raw))
        except (orjson.JSONDecodeError, InvalidEvent, TypeError) as e:
            # Not ours to fix here: the record stays on the topic for whoever wrote it to see.
            log.warning("events: skipping a record the notifiers cannot use at %s (%d bytes): %s",
                        where, len(raw or b""), e)
            if on_bad_record is not None:
                on_bad_record(type(e).__name__)
            return
        if inbox is not None and pending() > before:
            # faust acks this event when the loop asks for the next one: the inbox row is
            # committed before that, so before the offset can be.
            await asyncio.to_thread(inbox.add, raw)

    def settle() -> None:
        # Synchronous between the check and taking the seq: every event in the inbox up to
        # ``seq`` was handed over before a moment when nothing was pending.
        if inbox is not None and pending() == 0 and inbox.last_seq:
            seq, inbox.last_seq = inbox.last_seq, 0
            inbox.clear_through(seq)

    async def notify(stream: faust.StreamT) -> None:
        if inbox is not None:
            rows = await asyncio.to_thread(inbox.events)
            if rows:
                log.warning("notifier: handing %d event(s) from the inbox to the service again "
                            "(the last run stopped before their notices were settled)", len(rows))
            for _, raw in rows:
                await hand_over(raw)
        async for event in stream.events():
            msg = event.message
            await hand_over(event.value, f"partition {msg.partition} offset {msg.offset}")
            settle()

    app.agent(events_topic, name="ratiowatch.notify")(notify)
    if inbox is not None:
        app.timer(0.5, name="ratiowatch.notify.settle")(_as_async(settle))


def _as_async(fn: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def tick() -> None:
        fn()
    return tick
