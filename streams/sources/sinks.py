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

from typing import Any, Protocol

from ..ticks import Tick, encode_ticks
from ..topics import TICKS, TICKS_DLQ

__all__ = ["TickSink", "KafkaTickSink"]


class TickSink(Protocol):
    counters: dict[str, int]

    async def send_ticks(self, ticks: list[Tick], key: bytes) -> None: ...

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

    async def send_ticks(self, ticks: list[Tick], key: bytes) -> None:
        await self.producer.send_and_wait(TICKS, encode_ticks(ticks), key=key)
        self._count(ticks)

    async def send_dlq(self, record: bytes, key: bytes) -> None:
        await self.producer.send_and_wait(TICKS_DLQ, record, key=key)
        self._count(None)
