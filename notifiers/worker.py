"""One channel's pipeline, run by its own asyncio task: group -> quiet hours/rate limit -> dedup ->
render -> deliver/retry -> record.

Each channel has its own worker, inbox and timers, so a slow or failing channel holds up only
itself. Within a channel, messages go out one at a time and in order: the rate limit then means
what it says, and the dedup check of a message sees every earlier message's outcome.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import deque
from typing import Awaitable, Callable

from ratiowatch.config import Channel

from .dedup import DeliveryLog, split_delivered
from .deliver import Sender
from .exceptions import DeliveryError
from .gate import Gate
from .group import Batch, Grouper
from .render import Message
from .retry import RetryPolicy, retry
from .route import Notice

__all__ = ["ChannelWorker"]

log = logging.getLogger("ratiowatch.notifiers")

# (event_id, scenario, channel, attempt, outcome, error) -> publish on `deliveries`
RecordFn = Callable[[str, str, str, int, str, str | None], Awaitable[None]]
# (channel, notices, error, attempts) -> publish on `notifications.dlq`; False if that failed too
DeadLetterFn = Callable[[str, list[Notice], str, int], Awaitable[bool]]


class ChannelWorker:
    def __init__(self, channel: Channel, *, sender: Sender, delivery_log: DeliveryLog,
                 render: Callable[[list[Notice]], Message],
                 chart_for: Callable[[list[Notice]], Awaitable[bytes | None]],
                 record: RecordFn, dead_letter: DeadLetterFn, settle: Callable[[int], None],
                 window_for: Callable[[Notice], float], policy: RetryPolicy,
                 now: Callable[[], float], sleep: Callable[[float], Awaitable[None]],
                 rand: Callable[[], float] = random.random) -> None:
        self.channel = channel
        self.sender, self.delivery_log, self.render, self.chart_for = sender, delivery_log, render, chart_for
        self.record, self.dead_letter, self.settle = record, dead_letter, settle
        self.policy, self.now, self.sleep, self.rand = policy, now, sleep, rand
        self.grouper = Grouper(window_for)
        self.gate = Gate(channel)
        self.inbox: deque[Notice | Batch] = deque()
        self.outbox: deque[Batch] = deque()  # due, waiting for quiet hours or the rate limit
        self._wake = asyncio.Event()

    @property
    def name(self) -> str:
        return self.channel.name

    def put(self, item: Notice | Batch) -> None:
        """A notice to group, or a ready batch (from the DLQ) that skips grouping. Never blocks."""
        self.inbox.append(item)
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            now = self.now()
            await self._intake(now)
            wake_at = self.grouper.next_due()
            if self.outbox:
                open_at = self.gate.open_at(now)
                if open_at <= now:
                    await self._process(self.outbox.popleft())
                    continue
                wake_at = min(open_at, wake_at if wake_at is not None else math.inf)
            if self.inbox:
                continue
            await self._wait(None if wake_at is None else wake_at - now)

    async def _intake(self, now: float) -> None:
        while self.inbox:
            item = self.inbox.popleft()
            if isinstance(item, Batch):
                self.outbox.append(item)
            elif not self.grouper.add(item, now):
                # the same event twice in one open group: one message carries it
                await self.record(item.event_id, item.scenario_id, self.name, 0, "skipped_duplicate", None)
                self.settle(1)
        self.outbox.extend(self.grouper.due(now))

    async def _wait(self, delay: float | None) -> None:
        waiter = asyncio.ensure_future(self._wake.wait())
        tasks = {waiter}
        if delay is not None:
            tasks.add(asyncio.ensure_future(self.sleep(delay)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()

    async def _process(self, batch: Batch) -> None:
        """Dedup, send with retries, record; settles every notice of the batch exactly once."""
        outcome = "failed"
        unsettled = len(batch.notices)
        try:
            done = await asyncio.to_thread(self.delivery_log.delivered, batch.event_ids, self.name)
            batch, skipped = split_delivered(batch, done)
            for eid in skipped:
                await self.record(eid, batch.scenario_id, self.name, 0, "skipped_duplicate", None)
            self.settle(len(skipped))
            unsettled -= len(skipped)
            if not batch.notices:
                outcome = "skipped_duplicate"
                return
            outcome = await self._send(batch)
        except Exception as e:  # a bug or a broken disk must not stop the channel or lose the message
            log.exception("channel %s: could not process %s", self.name, batch.event_ids)
            if batch.notices and batch.redelivery is None:
                await self.dead_letter(self.name, batch.notices, f"internal error: {type(e).__name__}: {e}", 0)
                outcome = "dead_lettered"
        finally:
            self.settle(unsettled)
            fut = batch.redelivery
            if isinstance(fut, asyncio.Future) and not fut.done():
                fut.set_result(outcome)

    async def _send(self, batch: Batch) -> str:
        ns, name, sid = batch.notices, self.name, batch.scenario_id
        self.gate.take(self.now())
        message = self.render(ns)
        png = await self.chart_for(ns) if message.wants_chart else None
        last_error: list[str] = []

        async def attempt(n: int) -> None:
            await self.sender.send(self.channel, message, png, self.policy.attempt_timeout_s)

        async def on_failure(n: int, err: DeliveryError, final: bool) -> None:
            # like Alertmanager: log a failure when its text changes, not every attempt
            if not last_error or last_error[-1] != str(err):
                log.warning("channel %s: attempt %d for %s failed: %s", name, n, batch.event_ids, err)
            last_error.append(str(err))
            for x in ns:
                await self.record(x.event_id, sid, name, n, "failed", str(err))

        result = await retry(attempt, self.policy, now=self.now, sleep=self.sleep, rand=self.rand,
                             on_failure=on_failure)
        if result.ok:
            # the durable record first: once it is written, no path sends this pair again
            await asyncio.to_thread(self.delivery_log.record, batch.event_ids, name, sid, int(self.now() * 1000))
            for x in ns:
                await self.record(x.event_id, sid, name, result.attempts, "delivered", None)
            log.info("channel %s: delivered %s (attempt %d)", name, batch.event_ids, result.attempts)
            return "delivered"
        err = str(result.error)
        if batch.redelivery is not None:
            log.error("channel %s: re-delivery of %s failed again: %s", name, batch.event_ids, err)
            return "failed"
        await self.dead_letter(name, ns, err, result.attempts)
        for x in ns:
            await self.record(x.event_id, sid, name, result.attempts, "dead_lettered", err)
        log.error("channel %s: gave up on %s after %d attempts, sent to notifications.dlq: %s",
                  name, batch.event_ids, result.attempts, err)
        return "dead_lettered"
