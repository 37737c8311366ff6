"""Follows the compacted ``silences`` topic into a :class:`SilenceSet`, for the notify and web roles.

No consumer group: every process reads the whole topic from the beginning (it is small: one
record per silence) and then keeps following it. :meth:`SilenceFollower.start` returns only once
the topic is read to the end offsets found at start, so a notify process never sends in its
first seconds what a silence written long ago mutes.

A record that is not a silence (written by hand) is counted through ``on_bad_record``, logged
with its offset and the reason, and skipped: the last good version of every silence stays in
force.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any, Callable

from ratiowatch.notifiers.silences import SilenceError, SilenceSet
from ratiowatch.streams import topics as T
from ratiowatch.streams.clients import aio_consumer
from ratiowatch.streams.kafka_settings import KafkaSecurity

__all__ = ["SilenceFollower"]

log = logging.getLogger(__name__)


class SilenceFollower:
    def __init__(self, *, bootstrap: str, role: str, sec: KafkaSecurity | None = None,
                 on_bad_record: Callable[[str], None] | None = None,
                 on_change: Callable[[], None] | None = None, catch_up_s: float = 60.0) -> None:
        self.bootstrap, self.role, self.sec = bootstrap, role, sec
        self.on_bad_record, self.on_change = on_bad_record, on_change
        self.catch_up_s = catch_up_s
        self.silences = SilenceSet()
        self.records = 0  # records taken, good or bad
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    def muted(self, scenario: str, epoch_s: float) -> str | None:
        """The id of a silence muting ``scenario`` at ``epoch_s``, or None (NotificationService's ``muted``)."""
        s = self.silences.muting(scenario, datetime.fromtimestamp(epoch_s, timezone.utc))
        return s.id if s is not None else None

    async def start(self) -> None:
        from aiokafka import TopicPartition

        c = self._consumer = aio_consumer(self.bootstrap, client_id=f"ratiowatch-{self.role}-silences", sec=self.sec)
        await c.start()
        try:
            parts = c.partitions_for_topic(T.SILENCES)
            if not parts:
                await c._client.force_metadata_update()
                parts = c.partitions_for_topic(T.SILENCES)
            if not parts:
                raise RuntimeError(f"topic {T.SILENCES!r} not found at {self.bootstrap}: create the topics first "
                                   "(ratiowatch topics --create --broker ...)")
            tps = [TopicPartition(T.SILENCES, p) for p in sorted(parts)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            end = await c.end_offsets(tps)
            await asyncio.wait_for(self._catch_up(end), self.catch_up_s)
        except BaseException:
            await c.stop()
            raise
        log.info("%s: %d silence(s) read from %s", self.role, len(self.silences), T.SILENCES)
        self._task = asyncio.create_task(self._follow(), name=f"{self.role}-silences")

    async def _catch_up(self, end: dict[Any, int]) -> None:
        c = self._consumer
        todo = {tp for tp, off in end.items() if await c.position(tp) < off}
        while todo:
            for tp, records in (await c.getmany(*todo, timeout_ms=500)).items():
                for r in records:
                    self._take(r)
                if await c.position(tp) >= end[tp]:
                    todo.discard(tp)

    async def _follow(self) -> None:
        while True:
            for records in (await self._consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    self._take(r)

    def _take(self, r: Any) -> None:
        try:
            self.silences.apply(r.key, r.value)
        except SilenceError as e:
            log.warning("%s: skipping a record on %s partition %d offset %d: %s",
                        self.role, T.SILENCES, r.partition, r.offset, e)
            if self.on_bad_record is not None:
                self.on_bad_record(str(e))
        self.records += 1
        if self.on_change is not None:
            self.on_change()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
