"""One channel's task: takes notices in, groups them, holds each message until the channel may send
(quiet hours, rate limit), then runs the channel's stages on it (pipeline.py).

Each channel has its own worker, inbox and timers, so a slow or failing channel holds up only
itself. Within a channel, messages go out one at a time and in order: the rate limit then means
what it says, and the dedup stage of a message sees every earlier message's outcome.

The worker does no delivery work itself. What it owns is time (when a group is due, when the
gate opens), settling each notice exactly once whatever the stages did, and the safety net: a
stage that raises (a bug, a broken disk) must not stop the channel or lose the message, which is
then dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from typing import Callable, Sequence

from ratiowatch.model import Channel

from .gate import Gate
from .group import Batch, Grouper
from .ledger import Ledger
from .lifecycle import ChannelLifecycle
from .route import Notice
from .stage import Stage, StageFailed, run_stages
from .unsent import Unsent

__all__ = ["ChannelWorker", "Unsent"]

log = logging.getLogger("ratiowatch.notifiers")


class ChannelWorker:
    def __init__(self, channel: Channel, stages: Sequence[Stage], *, gate: Gate, lifecycle: ChannelLifecycle,
                 ledger: Ledger, window_for: Callable[[Notice], float], now: Callable[[], float]) -> None:
        self.channel, self.stages = channel, list(stages)
        self.gate, self.lifecycle, self.ledger, self.now = gate, lifecycle, ledger, now
        self.grouper = Grouper(window_for)
        self.inbox: deque[Notice | Batch] = deque()
        self.outbox: deque[Batch] = deque()  # due, waiting for quiet hours or the rate limit
        self._wake = asyncio.Event()

    @property
    def name(self) -> str:
        return self.channel.name

    def reconfigure(self, channel: Channel, stages: Sequence[Stage], gate: Gate) -> None:
        """New settings for this channel, from the next message on; what it holds stays queued."""
        self.channel, self.stages, self.gate = channel, list(stages), gate
        self._wake.set()  # the gate may open earlier now

    def put(self, item: Notice | Batch) -> None:
        """A notice to group, or a ready batch (from the DLQ) that skips grouping. Never blocks."""
        self.inbox.append(item)
        self._wake.set()

    async def run(self) -> None:
        while True:
            if self.lifecycle.stopping:
                await self.lifecycle.park()
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
                await self.ledger.record(item.event_id, item.scenario_id, self.name, 0, "skipped_duplicate", None)
                self.ledger.settle(1)
        self.outbox.extend(self.grouper.due(now))

    async def _wait(self, delay: float | None) -> None:
        waiter = asyncio.ensure_future(self._wake.wait())
        tasks = {waiter}
        if delay is not None:
            tasks.add(asyncio.ensure_future(self.lifecycle.sleep(delay)))
        try:
            await self.lifecycle.resting(asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED))
        finally:
            for t in tasks:
                t.cancel()

    async def at_rest(self) -> None:
        """Returns once the worker waits where cancelling it loses nothing (lifecycle.py)."""
        await self.lifecycle.at_rest()

    async def _process(self, batch: Batch) -> None:
        """The stages on one message; settles every notice of it exactly once."""
        last, outcome = batch, "failed"
        try:
            last = await run_stages(self.stages, batch, self.now)
            outcome = last.outcome or "failed"
        except StageFailed as failed:
            last, e = failed.batch, failed.__cause__
            log.error("channel %s: could not process %s (%s)", self.name, last.event_ids,
                      type(failed.stage).__name__, exc_info=e)
            if last.notices and last.redelivery is None:
                await self.ledger.dead_letter(self.name, last.notices, f"internal error: {type(e).__name__}: {e}", 0)
                outcome = "dead_lettered"
        finally:
            self.lifecycle.end_send()
            self.ledger.settle(len(last.notices))
            fut = batch.redelivery
            if isinstance(fut, asyncio.Future) and not fut.done():
                fut.set_result(outcome)

    def unsent(self) -> list[Unsent]:
        """Every message this channel holds and has not sent: the one being sent (or waiting for
        its next attempt), those held by quiet hours or the rate limit, open groups, the inbox."""
        out: list[Unsent] = []

        def add(b: Batch, state: str, errors: list[str] | None = None) -> None:
            out.append(Unsent(self.name, b.scenario_id, tuple(b.event_ids), state, len(errors or ()),
                              errors[-1] if errors else None, b.redelivery is not None))

        life = self.lifecycle
        if life.sending is not None:
            add(life.sending, "sending" if life.attempting else "retrying" if life.errors else "queued", life.errors)
        for b in self.outbox:
            add(b, "held")
        # group.py keeps its open groups to itself; read, never changed, here
        for b in [*self.grouper._open.values(), *self.grouper._ready]:
            add(b, "grouping")
        for item in self.inbox:
            add(item if isinstance(item, Batch) else Batch(item.scenario_id, [item]), "queued")
        return out
