"""Where a source's ticks go: a :class:`TickSink`. ``ratiowatch source`` and ``ratiowatch run``
write through a plain aiokafka producer (:class:`KafkaTickSink`), which counts what it sent.

Keys (how each source keys its records, as it naturally would):

- a websocket feed: one vendor message is one batch record keyed by the feed's source label
  (``feed:alpaca:wss://host/path``, no credentials): a feed's records stay in order on one partition;
- a poller: one batch per series and round, keyed by the symbol (``DGS10``);
- the simulated market: one batch per step (every symbol), keyed ``sim``.

Dead letters are keyed like the ticks of the same source.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ..origin import LIVE, header
from ..ticks import Tick, encode_ticks
from ..topics import TICKS, TICKS_DLQ

__all__ = ["TickSink", "KafkaTickSink"]


class TickSink(Protocol):
    counters: dict[str, int]

    async def send_ticks(self, ticks: list[Tick], key: bytes, origin: str = LIVE) -> None: ...

    async def send_dlq(self, record: bytes, key: bytes) -> None: ...


class _Counting:
    def __init__(self) -> None:
        self.counters = {"ticks": 0, "batches": 0, "dead_lettered": 0}

    def _count(self, ticks: list[Tick] | None) -> None:
        if ticks is None:
            self.counters["dead_lettered"] += 1
        else:
            self.counters["ticks"] += len(ticks)
            self.counters["batches"] += 1


class KafkaTickSink(_Counting):
    """Over a started aiokafka producer (build it with
    ``streams.clients.aio_producer(bootstrap, client_id="ratiowatch-source")``). Each send waits
    for the broker's acknowledgement: a tick is never counted as sent before it is on the topic."""

    def __init__(self, producer: Any) -> None:
        super().__init__()
        self.producer = producer

    async def send_ticks(self, ticks: list[Tick], key: bytes, origin: str = LIVE) -> None:
        # Live ticks go without the origin header, as any other producer's (streams/origin.py).
        await self._send(TICKS, encode_ticks(ticks), key, ticks, None if origin == LIVE else header(origin))

    async def send_dlq(self, record: bytes, key: bytes) -> None:
        await self._send(TICKS_DLQ, record, key, None)

    async def _send(self, topic: str, value: bytes, key: bytes, ticks: list[Tick] | None,
                    headers: list[tuple[str, bytes]] | None = None) -> None:
        # A stop (cancellation) does not abandon a send already handed to the producer: it may be
        # on the topic already, and then it must be counted too (the counts are the source's
        # word on what it sent).
        sent = asyncio.ensure_future(self.producer.send_and_wait(topic, value, key=key, headers=headers))
        try:
            await asyncio.shield(sent)
        except asyncio.CancelledError:
            await sent
            self._count(ticks)
            raise
        self._count(ticks)


class MeteredSink:
    """A TickSink that also counts into the process's Prometheus metrics
    (``ratiowatch_source_ticks_sent_total``, and dead letters by reason)."""

    def __init__(self, inner: Any, metrics: Any) -> None:
        self.inner, self.metrics, self.counters = inner, metrics, inner.counters

    async def send_ticks(self, ticks: list[Tick], key: bytes, origin: str = LIVE) -> None:
        await self.inner.send_ticks(ticks, key, origin)
        self.metrics.source_ticks_sent.inc(len(ticks))

    async def send_dlq(self, record: bytes, key: bytes) -> None:
        import orjson

        await self.inner.send_dlq(record, key)
        self.metrics.dead_lettered.labels(reason=str(orjson.loads(record).get("reason", "unknown"))).inc()
