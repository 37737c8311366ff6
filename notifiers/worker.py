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
from dataclasses import dataclass
from typing import Awaitable, Callable

from ratiowatch.model import Channel

from .dedup import DeliveryLog, split_delivered
from .deliver import Sender
from .exceptions import DeliveryError
from .gate import Gate
from .group import Batch, Grouper
from .render import Message
from .retry import RetryPolicy, retry
from .route import Notice

__all__ = ["ChannelWorker", "Unsent"]

log = logging.getLogger("ratiowatch.notifiers")

# (event_id, scenario, channel, attempt, outcome, error[, silence id]) -> publish on `deliveries`
RecordFn = Callable[..., Awaitable[None]]
# (scenario id, epoch seconds) -> the id of a silence muting that scenario then, or None
MutedFn = Callable[[str, float], "str | None"]
# (channel, notices, error, attempts) -> publish on `notifications.dlq`; False if that failed too
DeadLetterFn = Callable[[str, list[Notice], str, int], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Unsent:
    """A message of one channel not sent (yet), as the worker holds it: what a stop leaves behind."""

    channel: str
    scenario_id: str
    event_ids: tuple[str, ...]
    # retrying (waiting for its next attempt) | sending (an attempt under way: it may still reach
    # the channel) | held (quiet hours, rate limit) | grouping | queued
    state: str
    failed_attempts: int = 0        # retrying, sending: attempts that failed so far
    last_error: str | None = None   # the latest failure, redacted
    redelivery: bool = False        # a notifications.dlq record sent again (`dlq retry`)


class ChannelWorker:
    def __init__(self, channel: Channel, *, sender: Sender, delivery_log: DeliveryLog,
                 render: Callable[[list[Notice]], Message],
                 chart_for: Callable[[list[Notice]], Awaitable[bytes | None]],
                 record: RecordFn, dead_letter: DeadLetterFn, settle: Callable[[int], None],
                 window_for: Callable[[Notice], float], policy: RetryPolicy,
                 now: Callable[[], float], sleep: Callable[[float], Awaitable[None]],
                 rand: Callable[[], float] = random.random, muted: MutedFn | None = None) -> None:
        self.channel = channel
        self.sender, self.delivery_log, self.render, self.chart_for = sender, delivery_log, render, chart_for
        self.record, self.dead_letter, self.settle = record, dead_letter, settle
        self.policy, self.now, self.sleep, self.rand = policy, now, sleep, rand
        self.muted = muted
        self.grouper = Grouper(window_for)
        self.gate = Gate(channel)
        self.inbox: deque[Notice | Batch] = deque()
        self.outbox: deque[Batch] = deque()  # due, waiting for quiet hours or the rate limit
        self._wake = asyncio.Event()
        self._in_flight: tuple[Batch, list[str]] | None = None  # being sent, and its failures so far
        # Stopping: no new attempt or message once set. ``_at_rest`` is set while the worker waits
        # where cancelling it loses nothing (idle, or a backoff between attempts); the service
        # waits for it before cancelling, so an attempt under way ends and its outcome is recorded.
        self.stopping = False
        self._at_rest = asyncio.Event()
        self._attempting = False

    @property
    def name(self) -> str:
        return self.channel.name

    def put(self, item: Notice | Batch) -> None:
        """A notice to group, or a ready batch (from the DLQ) that skips grouping. Never blocks."""
        self.inbox.append(item)
        self._wake.set()

    async def run(self) -> None:
        while True:
            if self.stopping:
                await self._park()
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
        self._at_rest.set()
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._at_rest.clear()
            for t in tasks:
                t.cancel()

    async def _backoff(self, delay: float) -> None:
        """The wait between two attempts: a place to stop (the next attempt is not made)."""
        self._at_rest.set()
        try:
            await self.sleep(delay)
            if self.stopping:
                await self._park()
        finally:
            self._at_rest.clear()

    async def _park(self) -> None:
        """Waits, at rest, to be cancelled by the service's stop."""
        self._at_rest.set()
        await asyncio.Event().wait()

    async def at_rest(self) -> None:
        """Returns once the worker waits where cancelling it loses nothing (see ``stopping``)."""
        await self._at_rest.wait()

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
            # Checked when the message would go, not when the event came in (Alertmanager's mute
            # stage): a message held by a group window, quiet hours or the rate limit while a
            # silence began is not sent either. A DLQ re-delivery is an operator's explicit ask.
            silence = self.muted(batch.scenario_id, self.now()) if self.muted and batch.redelivery is None else None
            if silence is not None:
                for x in batch.notices:
                    await self.record(x.event_id, batch.scenario_id, self.name, 0, "silenced", None, silence)
                log.info("channel %s: %s silenced by %s", self.name, batch.event_ids, silence)
                outcome = "silenced"
                return
            outcome = await self._send(batch)
        except Exception as e:  # a bug or a broken disk must not stop the channel or lose the message
            log.exception("channel %s: could not process %s", self.name, batch.event_ids)
            if batch.notices and batch.redelivery is None:
                await self.dead_letter(self.name, batch.notices, f"internal error: {type(e).__name__}: {e}", 0)
                outcome = "dead_lettered"
        finally:
            self._in_flight = None
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
        self._in_flight = (batch, last_error)

        async def attempt(n: int) -> None:
            if self.stopping:  # stopped between taking the message and its first attempt
                await self._park()
            self._attempting = True
            try:
                await self.sender.send(self.channel, message, png, self.policy.attempt_timeout_s)
            finally:
                self._attempting = False

        async def on_failure(n: int, err: DeliveryError, final: bool) -> None:
            # like Alertmanager: log a failure when its text changes, not every attempt
            if not last_error or last_error[-1] != str(err):
                log.warning("channel %s: attempt %d for %s failed: %s", name, n, batch.event_ids, err)
            last_error.append(str(err))
            for x in ns:
                await self.record(x.event_id, sid, name, n, "failed", str(err))

        result = await retry(attempt, self.policy, now=self.now, sleep=self._backoff, rand=self.rand,
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

    def unsent(self) -> list[Unsent]:
        """Every message this channel holds and has not sent: the one being sent (or waiting for
        its next attempt), those held by quiet hours or the rate limit, open groups, the inbox."""
        out: list[Unsent] = []

        def add(b: Batch, state: str, errors: list[str] | None = None) -> None:
            out.append(Unsent(self.name, b.scenario_id, tuple(b.event_ids), state, len(errors or ()),
                              errors[-1] if errors else None, b.redelivery is not None))

        if self._in_flight is not None:
            batch, errors = self._in_flight
            add(batch, "sending" if self._attempting else "retrying" if errors else "queued", errors)
        for b in self.outbox:
            add(b, "held")
        # group.py keeps its open groups to itself; read, never changed, here
        for b in [*self.grouper._open.values(), *self.grouper._ready]:
            add(b, "grouping")
        for item in self.inbox:
            add(item if isinstance(item, Batch) else Batch(item.scenario_id, [item]), "queued")
        return out
