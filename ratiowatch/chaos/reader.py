"""The chaos run's reader: the output topics read from the beginning as a downstream service would
(no consumer group, manual assignment), each record stamped with the time it arrived, so the
verdict can tell when each event, dead letter and notification came out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from aiokafka import TopicPartition

from ratiowatch.streams.clients import aio_consumer

__all__ = ["read_topics"]

log = logging.getLogger(__name__)


async def read_topics(bootstrap: str, sinks: dict[str, list[tuple[float, bytes]]], stop: asyncio.Event,
                      rereads: Counter[str], places: dict[str, list[tuple[int, int, int]]]) -> None:
    """Read ``sinks``' topics from the beginning as a downstream service would (no group, manual
    assignment), recording when each record arrived."""
    consumer = aio_consumer(bootstrap, client_id="chaos-reader")
    await consumer.start()
    try:
        tps = []
        for topic in sinks:
            parts = consumer.partitions_for_topic(topic)
            while not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic)
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # A record handed over twice at the same offset is the reader's, not the topic's: count it
        # apart (``rereads``), as a downstream service tracking its position would skip it. Two
        # copies at different offsets are on the topic, and count as duplicates.
        next_offset: dict[Any, int] = {}
        while not stop.is_set():
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            except Exception as e:  # the broker may be down: keep trying, as a consumer would
                log.debug("reader: %s", e)
                await asyncio.sleep(0.2)
                continue
            now = time.monotonic()
            for tp, records in batch.items():
                sink = sinks[tp.topic]
                first = next_offset.get(tp, -1)
                for r in records:
                    if r.offset < first:
                        rereads[tp.topic] += 1
                        continue
                    sink.append((now, r.value))
                    if tp.topic in places:
                        places[tp.topic].append((tp.partition, r.offset, r.timestamp))
                next_offset[tp] = max(first, records[-1].offset + 1)
    finally:
        await consumer.stop()
