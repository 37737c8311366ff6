"""Following a small compacted control topic (``scenarios``, ``silences``) whole, in every process
that needs it.

No consumer group: each process reads the topic from the beginning and then keeps following it.
:meth:`TopicFollower.start` returns only once the records that were on the topic when it started
are taken, so a process never acts in its first seconds on less than what is in force (an engine
evaluating without a scenario applied an hour ago, a notify process sending what a silence mutes).

A record that ``take`` refuses (written by hand, not what the topic holds) is dead-lettered on
``control.dlq`` with the reason, counted through ``on_bad_record`` and skipped: the last good
version stays in force. Its ``dlq_id`` digests the topic, partition and offset, so a restarted
process that reads it again writes the same id (consumers keep one per id).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from .topics import CONTROL_DLQ
from .clients import aio_consumer, aio_producer, topic_partitions
from .kafka_settings import KafkaSecurity
from .ticks import Rejected, dlq_record

__all__ = ["TopicFollower", "BadControlRecord"]

log = logging.getLogger(__name__)


class BadControlRecord(ValueError):
    """A record on a control topic that is not what the topic holds; the message says why."""


class TopicFollower:
    """``take(key, value)`` applies one record (raising BadControlRecord for a bad one);
    ``on_change()`` runs after each fetched batch that took records, once caught up."""

    def __init__(self, topic: str, take: Callable[[bytes | None, bytes | None], None], *, bootstrap: str,
                 role: str, sec: KafkaSecurity | None = None, on_bad_record: Callable[[str], None] | None = None,
                 on_change: Callable[[], None] | None = None, catch_up_s: float = 60.0) -> None:
        self.topic, self.take = topic, take
        self.bootstrap, self.role, self.sec = bootstrap, role, sec
        self.on_bad_record, self.on_change = on_bad_record, on_change
        self.catch_up_s = catch_up_s
        self.records = 0  # records taken, good or bad
        self._consumer: Any = None
        self._producer: Any = None  # for dead letters, started on the first one
        self._task: asyncio.Task[None] | None = None
        self._fetched = asyncio.Event()  # set after each fetch round of the follow loop

    async def start(self) -> None:
        from aiokafka import TopicPartition

        c = self._consumer = aio_consumer(self.bootstrap, client_id=f"ratiowatch-{self.role}-{self.topic}", sec=self.sec)
        await c.start()
        try:
            parts = await topic_partitions(c, self.topic)
            if not parts:
                raise RuntimeError(f"topic {self.topic!r} not found at {self.bootstrap}: create the topics first "
                                   "(ratiowatch topics --create --broker ...)")
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            end = await c.end_offsets(tps)
            await asyncio.wait_for(self._catch_up(end), self.catch_up_s)
        except BaseException:
            await self.stop()
            raise
        if self.on_change is not None:
            self.on_change()
        self._task = asyncio.create_task(self._follow(), name=f"{self.role}-{self.topic}")

    async def _catch_up(self, end: dict[Any, int]) -> None:
        c = self._consumer
        todo = {tp for tp, off in end.items() if await c.position(tp) < off}
        while todo:
            for tp, records in (await c.getmany(*todo, timeout_ms=500)).items():
                for r in records:
                    await self._take(r)
                if await c.position(tp) >= end[tp]:
                    todo.discard(tp)

    async def _follow(self) -> None:
        while True:
            took = False
            for records in (await self._consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    await self._take(r)
                    took = True
            if took and self.on_change is not None:
                self.on_change()
            self._fetched.set()  # sync() looks at the positions again
            self._fetched = asyncio.Event()

    async def sync(self, timeout_s: float = 10.0) -> bool:
        """Until every record on the topic now is taken (a role that meets a version it has not
        read yet: it is there). False when that takes longer than ``timeout_s``."""
        c = self._consumer
        tps = list(c.assignment())
        end = await c.end_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while any(await c.position(tp) < end[tp] for tp in tps):
            left = deadline - loop.time()
            if left <= 0:
                log.warning("%s: %s not read to its end within %gs", self.role, self.topic, timeout_s)
                return False
            try:
                await asyncio.wait_for(self._fetched.wait(), left)
            except asyncio.TimeoutError:
                pass
        return True

    async def _take(self, r: Any) -> None:
        self.records += 1
        try:
            self.take(r.key, r.value)
        except BadControlRecord as e:
            log.warning("%s: skipping a record on %s partition %d offset %d: %s (dead-lettered on %s)",
                        self.role, self.topic, r.partition, r.offset, e, CONTROL_DLQ)
            if self.on_bad_record is not None:
                self.on_bad_record(str(e))
            await self._dead_letter(r, str(e))

    async def _dead_letter(self, r: Any, reason: str) -> None:
        raw = r.value.decode("utf-8", "replace") if r.value is not None else None
        item = {"key": r.key.decode("utf-8", "replace") if r.key is not None else None, "value": raw}
        record = dlq_record(Rejected("bad_" + self.topic.replace("-", "_"), reason, item), source=self.topic,
                            at_ms=int(time.time() * 1000), partition=r.partition, offset=r.offset)
        if self._producer is None:
            self._producer = aio_producer(self.bootstrap, client_id=f"ratiowatch-{self.role}-control-dlq", sec=self.sec)
            await self._producer.start()
        await self._producer.send_and_wait(CONTROL_DLQ, record, key=self.topic.encode())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        self._consumer = self._producer = None
