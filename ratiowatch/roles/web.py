"""The ``web`` role: the status page, ``/status`` and ``/ws``, built from topics alone.

It reads ``scenario-status`` (compacted, one record per scenario) from the beginning and then
follows it and ``events``, with partitions assigned by hand: it is in no consumer group, so every
web process sees every scenario whatever engine owns it, and a restarted one rebuilds the whole
page from the topic within seconds. It is ready (``/readyz``) once it has read ``scenario-status``
to the end offsets it found at start.

A record it cannot use (not JSON, no scenario id) is counted, logged with its offset and skipped:
a bad record on a topic must not take the page down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from ratiowatch.ops.health import Health
from ratiowatch.ops.metrics import Metrics
from ratiowatch.streams import topics as T
from ratiowatch.streams.clients import aio_consumer
from ratiowatch.streams.kafka_settings import KafkaSecurity
from ratiowatch.streams.live import LiveHub

__all__ = ["WebRole", "RECENT_EVENTS"]

log = logging.getLogger(__name__)

RECENT_EVENTS = 100  # per partition of ``events``: the crossings a fresh page starts with


class WebRole:
    def __init__(self, hub: LiveHub, *, bootstrap: str, sec: KafkaSecurity | None = None,
                 metrics: Metrics | None = None, health: Health | None = None, client_id: str = "ratiowatch-web") -> None:
        self.hub = hub
        self.bootstrap = bootstrap
        self.sec = sec
        self.client_id = client_id
        self.metrics = metrics if metrics is not None else Metrics()
        self.health = health if health is not None else Health()
        self.metrics.add_role("web")
        self.ready = self.health.ready_flag("web", "scenario-status not read to its end yet")
        self.counters = {"statuses": 0, "events": 0, "bad_records": 0}
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None

    async def start(self) -> None:
        from aiokafka import TopicPartition

        c = self._consumer = aio_consumer(self.bootstrap, client_id=self.client_id, sec=self.sec)
        await c.start()
        try:
            tps = []
            for topic in (T.SCENARIO_STATUS, T.EVENTS):
                parts = await self._partitions(topic)
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            c.assign(tps)
            begin = await c.beginning_offsets(tps)
            end = await c.end_offsets(tps)
            for tp in tps:
                start = begin[tp] if tp.topic == T.SCENARIO_STATUS else max(begin[tp], end[tp] - RECENT_EVENTS)
                c.seek(tp, start)
        except BaseException:
            await c.stop()
            raise
        self._todo = {tp: end[tp] for tp in tps if tp.topic == T.SCENARIO_STATUS and end[tp] > begin[tp]}
        if not self._todo:
            self.ready.ready()
        self._task = asyncio.create_task(self._follow(), name="web-follow")

    async def _partitions(self, topic: str) -> set[int]:
        parts = self._consumer.partitions_for_topic(topic)
        if not parts:
            await self._consumer._client.force_metadata_update()
            parts = self._consumer.partitions_for_topic(topic)
        if not parts:
            raise RuntimeError(f"topic {topic!r} not found at {self.bootstrap}: create the topics first "
                               "(ratiowatch topics --create, or an engine on this cluster)")
        return parts

    async def _follow(self) -> None:
        c = self._consumer
        while True:
            batches = await c.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for r in records:
                    self._take(tp.topic, r)
                if self._todo and tp in self._todo and r.offset + 1 >= self._todo[tp]:
                    del self._todo[tp]
                    if not self._todo:
                        self.ready.ready()
                        log.info("web: scenario-status read to its end (%d statuses)", self.counters["statuses"])

    def _take(self, topic: str, r: Any) -> None:
        if r.value is None:  # a tombstone: the scenario was removed
            return
        try:
            doc = orjson.loads(r.value)
            if not isinstance(doc, dict) or not isinstance(doc.get("scenario"), str):
                raise ValueError("no scenario id")
        except (orjson.JSONDecodeError, ValueError) as e:
            self.counters["bad_records"] += 1
            self.metrics.bad_records.labels(role="web", topic=topic).inc()
            log.warning("web: skipping a record on %s partition %d offset %d: %s", topic, r.partition, r.offset, e)
            return
        if topic == T.SCENARIO_STATUS:
            self.counters["statuses"] += 1
            self.hub.publish_status(doc)
        else:
            self.counters["events"] += 1
            self.hub.publish_event(doc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
