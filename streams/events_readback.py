"""Reading the ``events`` topic back whole, for an engine taking shards over (agents/pipeline.py):
the events a restarted shard could send again are those already there."""

from __future__ import annotations

import logging

import orjson

from .topics import EVENTS
from .clients import aio_consumer
from .kafka_settings import KafkaSecurity

__all__ = ["events_on_topic"]

log = logging.getLogger(__name__)


async def events_on_topic(bootstrap: str, sec: KafkaSecurity | None, partitions: int,
                          client_id: str) -> dict[str, list[tuple[int, str]]]:
    """scenario id -> (ts_ms, event_id) of every event on the ``events`` topic now."""
    from aiokafka import TopicPartition

    consumer = aio_consumer(bootstrap, client_id=client_id, sec=sec)
    await consumer.start()
    try:
        tps = [TopicPartition(EVENTS, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: dict[str, list[tuple[int, str]]] = {}
        todo = {tp for tp in tps if end[tp] > 0}
        while todo:
            for tp, records in (await consumer.getmany(*todo, timeout_ms=500)).items():
                for r in records:
                    if r.offset < end[tp]:
                        try:
                            ev = orjson.loads(r.value)
                            out.setdefault(ev["scenario"], []).append((ev["ts_ms"], ev["event_id"]))
                        except (orjson.JSONDecodeError, KeyError, TypeError):
                            pass  # not an event of ours: nothing we could repeat
            todo = {tp for tp in todo if await consumer.position(tp) < end[tp]}
        log.info("read %d events back from %s", sum(map(len, out.values())), EVENTS)
        return out
    finally:
        await consumer.stop()
