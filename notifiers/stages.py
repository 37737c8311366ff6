"""The stages of a channel's pipeline, each one step with the one signature of stage.py
(``async run(batch, now) -> batch``). pipeline.py puts them in order; a stage that ends the
message sets ``outcome`` and says so on ``deliveries`` itself (through the ledger).

The decisions are decide.py's pure functions; a stage gathers their input (the dedup record, the
silences, the clock), asks, and acts on the answer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Callable

from ratiowatch.model import Channel

from .chart import Charts
from .decide import MUTE, REPORT, after_give_up, mute
from .dedup import DeliveryLog, split_delivered
from .deliver import Sender
from .exceptions import DeliveryError
from .gate import Gate
from .group import Batch
from .ledger import Ledger
from .lifecycle import ChannelLifecycle
from .render import Message
from .retry import RetryPolicy, retry
from .route import Notice

__all__ = ["MutedFn", "DedupStage", "MuteStage", "RateStage", "RenderStage", "ChartStage", "RetryStage",
           "DeadLetterStage", "SetDeliveredStage"]

log = logging.getLogger("ratiowatch.notifiers")

# (scenario id, epoch seconds) -> the id of a silence muting that scenario then, or None
MutedFn = Callable[[str, float], "str | None"]


class DedupStage:
    """Leaves out the events already delivered to this channel (dedup.py), recording each as
    ``skipped_duplicate``; ends the message when none is left (Alertmanager's ``DedupStage``)."""

    def __init__(self, channel: str, delivery_log: DeliveryLog, ledger: Ledger) -> None:
        self.channel, self.delivery_log, self.ledger = channel, delivery_log, ledger

    async def run(self, batch: Batch, now: float) -> Batch:
        done = await asyncio.to_thread(self.delivery_log.delivered, batch.event_ids, self.channel)
        kept, skipped = split_delivered(batch, done)
        for eid in skipped:
            await self.ledger.record(eid, batch.scenario_id, self.channel, 0, "skipped_duplicate", None)
        self.ledger.settle(len(skipped))
        return kept if kept.notices else replace(kept, outcome="skipped_duplicate")


class MuteStage:
    """Ends the message as ``silenced`` when a silence mutes its scenario now (Alertmanager's
    ``MuteStage`` with the silencer)."""

    def __init__(self, channel: str, muted: MutedFn, ledger: Ledger) -> None:
        self.channel, self.muted, self.ledger = channel, muted, ledger

    async def run(self, batch: Batch, now: float) -> Batch:
        redelivery = batch.redelivery is not None
        silence = None if redelivery else self.muted(batch.scenario_id, now)
        decision = mute(silence, redelivery)
        if decision.action != MUTE:
            return batch
        await self.ledger.record_each(batch.notices, self.channel, 0, "silenced", None, silence)
        log.info("channel %s: %s %s", self.channel, batch.event_ids, decision.reason)
        return replace(batch, outcome="silenced")


class RateStage:
    """Counts the message against the channel's rate limit: it goes now. (The worker held it
    until the gate was open; a skipped or silenced message took no slot.)"""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def run(self, batch: Batch, now: float) -> Batch:
        self.gate.take(now)
        return batch


class RenderStage:
    def __init__(self, render: Callable[[list[Notice]], Message]) -> None:
        self.render = render

    async def run(self, batch: Batch, now: float) -> Batch:
        return replace(batch, message=self.render(batch.notices))


class ChartStage:
    """The chart, for a medium that carries one (email, json webhooks)."""

    def __init__(self, charts: Charts) -> None:
        self.charts = charts

    async def run(self, batch: Batch, now: float) -> Batch:
        if batch.message is None or not batch.message.wants_chart:
            return batch
        return replace(batch, chart=await self.charts.chart_for(batch.notices))


class RetryStage:
    """Sends with retries (retry.py), recording each failed attempt. Passes on the attempts made
    and, when every attempt failed, the last error (Alertmanager's ``RetryStage``)."""

    def __init__(self, channel: Channel, sender: Sender, policy: RetryPolicy, ledger: Ledger,
                 lifecycle: ChannelLifecycle, now: Callable[[], float],
                 rand: Callable[[], float]) -> None:
        self.channel, self.sender, self.policy, self.ledger = channel, sender, policy, ledger
        self.lifecycle, self.now, self.rand = lifecycle, now, rand

    async def run(self, batch: Batch, now: float) -> Batch:
        name, life = self.channel.name, self.lifecycle
        errors = life.begin_send(batch)

        async def attempt(n: int) -> None:
            if life.stopping:  # stopped between taking the message and its first attempt
                await life.park()
            life.attempting = True
            try:
                await self.sender.send(self.channel, batch.message, batch.chart, self.policy.attempt_timeout_s)
            finally:
                life.attempting = False

        async def on_failure(n: int, err: DeliveryError, final: bool) -> None:
            # like Alertmanager: log a failure when its text changes, not every attempt
            if not errors or errors[-1] != str(err):
                log.warning("channel %s: attempt %d for %s failed: %s", name, n, batch.event_ids, err)
            errors.append(str(err))
            await self.ledger.record_each(batch.notices, name, n, "failed", str(err))

        result = await retry(attempt, self.policy, now=self.now, sleep=life.backoff, rand=self.rand,
                             on_failure=on_failure)
        return replace(batch, attempts=result.attempts, error=None if result.ok else str(result.error))


class DeadLetterStage:
    """After every attempt failed: the message onto ``notifications.dlq`` and ``dead_lettered`` on
    ``deliveries``, or, for a re-delivery from there, a log line (decide.after_give_up)."""

    def __init__(self, channel: str, ledger: Ledger) -> None:
        self.channel, self.ledger = channel, ledger

    async def run(self, batch: Batch, now: float) -> Batch:
        if batch.error is None:
            return batch
        name, err = self.channel, batch.error
        if after_give_up(batch.redelivery is not None).action == REPORT:
            log.error("channel %s: re-delivery of %s failed again: %s", name, batch.event_ids, err)
            return replace(batch, outcome="failed")
        await self.ledger.dead_letter(name, batch.notices, err, batch.attempts)
        await self.ledger.record_each(batch.notices, name, batch.attempts, "dead_lettered", err)
        log.error("channel %s: gave up on %s after %d attempts, sent to notifications.dlq: %s",
                  name, batch.event_ids, batch.attempts, err)
        return replace(batch, outcome="dead_lettered")


class SetDeliveredStage:
    """After success, in this order (numbered as Quix Streams' ``Checkpoint.commit`` numbers its
    steps, because the order is the guarantee):

    1. the (event, channel) pairs into the durable dedup record: once written, no path (a second
       ``handle``, a replay, a restart, ``dlq retry``) sends them again;
    2. ``delivered`` on ``deliveries`` for each event;
    3. (the worker, after this stage) the notices settled: only then may the notify agent drop
       the event from its inbox, whose offset on ``events`` may already be committed.

    A crash between the send and step 1 sends the message once more on the next attempt: the
    at-least-once window, as small as one SQLite commit (Alertmanager's ``SetNotifiesStage``
    has the same window).
    """

    def __init__(self, channel: str, delivery_log: DeliveryLog, ledger: Ledger) -> None:
        self.channel, self.delivery_log, self.ledger = channel, delivery_log, ledger

    async def run(self, batch: Batch, now: float) -> Batch:
        await asyncio.to_thread(self.delivery_log.record, batch.event_ids, self.channel, batch.scenario_id,
                                int(now * 1000))
        await self.ledger.record_each(batch.notices, self.channel, batch.attempts, "delivered", None)
        log.info("channel %s: delivered %s (attempt %d)", self.channel, batch.event_ids, batch.attempts)
        return replace(batch, outcome="delivered")
