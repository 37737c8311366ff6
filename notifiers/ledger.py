"""What the notifiers tell the outside about each notice: a record on ``deliveries`` per attempt and
outcome, a record on ``notifications.dlq`` per message given up on, and how many notices are
still pending (what ``drain`` waits for, and what the notify agent keeps in its inbox).

A failing ``publish`` is logged, with the record, and does not stop delivery. Every text that
leaves here is redacted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from ratiowatch.streams.topics import DELIVERIES, NOTIFICATIONS_DLQ

from .records import delivery_record, dlq_record
from .redact import Redactor
from .route import Notice

__all__ = ["Ledger", "Publish"]

log = logging.getLogger("ratiowatch.notifiers")

Publish = Callable[[str, "bytes | None", bytes], Awaitable[None]]


class Ledger:
    def __init__(self, publish: Publish, redactor: Redactor, now: Callable[[], float]) -> None:
        self.publish, self.redactor, self.now = publish, redactor, now
        self.pending = 0  # notices (per channel) queued, held or being sent
        self.idle = asyncio.Event()
        self.idle.set()

    def add(self, n: int) -> None:
        self.pending += n
        self.idle.clear()

    def settle(self, n: int) -> None:
        """``n`` notices are done with: delivered, skipped, silenced, dead-lettered or failed."""
        self.pending -= n
        if self.pending <= 0:
            self.pending = 0
            self.idle.set()

    async def record(self, event_id: str, scenario: str, channel: str, attempt: int, outcome: str,
                     error: str | None, silence: str | None = None) -> None:
        value = delivery_record(event_id, scenario, channel, attempt, outcome,
                                None if error is None else self.redactor.text(error), int(self.now() * 1000),
                                silence)
        try:
            await self.publish(DELIVERIES, event_id.encode(), value)
        except Exception as e:
            log.error("could not write to %s (%s: %s): %s", DELIVERIES, type(e).__name__,
                      self.redactor.text(e), value.decode())

    async def record_each(self, notices: list[Notice], channel: str, attempt: int, outcome: str,
                          error: str | None, silence: str | None = None) -> None:
        for n in notices:
            await self.record(n.event_id, n.scenario_id, channel, attempt, outcome, error, silence)

    async def dead_letter(self, channel: str, notices: list[Notice], error: str, attempts: int) -> bool:
        """The message onto ``notifications.dlq``; False if that failed too (it is then logged whole)."""
        value = dlq_record(channel, notices, self.redactor.text(error), attempts, int(self.now() * 1000))
        try:
            await self.publish(NOTIFICATIONS_DLQ, notices[0].event_id.encode(), value)
            return True
        except Exception as e:
            # The last place the message exists is this log line: keep it whole.
            log.critical("could not write to %s (%s: %s); lost notification: %s", NOTIFICATIONS_DLQ,
                         type(e).__name__, self.redactor.text(e), value.decode())
            return False
