"""Which shard owns a scenario, and what travels on the shard topic. Pure.

Per-scenario state needs all of its legs (and its confirmations' legs) in one place, so ticks
keyed by symbol are re-keyed to the shard that owns each scenario using them. A shard is a
partition of the shard topic and of the state table's changelog: they are co-partitioned by
construction (the same partition number). One shard record carries every tick that the shard
needs from what the route stage fetched at once (one segment per source partition), so a tick is
copied at most once per shard, not once per scenario.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Sequence

import orjson

from ratiowatch.config import Scenario
from ratiowatch.streams.ticks import Tick

__all__ = ["shard_of", "ShardMap", "encode_shard_segments", "decode_shard_record"]


def shard_of(scenario_id: str, shards: int) -> int:
    """A stable shard for a scenario id (sha256, never Python's salted hash())."""
    return int.from_bytes(hashlib.sha256(scenario_id.encode()).digest()[:8], "big") % shards


class ShardMap:
    """symbol -> the shards that have a scenario using it; shard -> its scenarios."""

    def __init__(self, scenarios: Iterable[Scenario], shards: int) -> None:
        self.shards = shards
        self.scenarios: dict[int, list[Scenario]] = {n: [] for n in range(shards)}
        by_symbol: dict[str, set[int]] = {}
        for s in scenarios:
            n = shard_of(s.id, shards)
            self.scenarios[n].append(s)
            for sym in s.symbols:
                by_symbol.setdefault(sym, set()).add(n)
        self.by_symbol: dict[str, tuple[int, ...]] = {k: tuple(sorted(v)) for k, v in by_symbol.items()}

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(self.by_symbol)

    def route(self, ticks: Iterable[Sequence[Any]], into: dict[int, list[Any]] | None = None) -> dict[int, list[Any]]:
        """Split ticks by destination shard, keeping arrival order within each shard (appended to
        ``into`` when given, so a whole batch of records fills one dict)."""
        out: dict[int, list[Any]] = {} if into is None else into
        by_symbol = self.by_symbol
        for t in ticks:
            for n in by_symbol.get(t[0], ()):
                lst = out.get(n)
                if lst is None:
                    lst = out[n] = []
                lst.append(t)
        return out


def encode_shard_segments(segments: Sequence[tuple[int, int, Sequence[Sequence[Any]]]]) -> bytes:
    """A shard record carrying ticks from several ``ticks`` partitions: one segment
    ``(source partition, source offset, ticks)`` each. The source names the ``ticks`` record(s) the
    ticks came from: the consumer of the shard topic skips a segment it has already applied after
    a restart. Ticks are (symbol, price, ts_ms) rows."""
    return orjson.dumps({"s": [(p, o, _rows(t)) for p, o, t in segments]})


def _rows(ticks: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
    # Plain tuples and lists go to orjson as they are (a Tick, a NamedTuple, it would refuse).
    return ticks if not ticks or type(ticks[0]) is not Tick else [tuple(t) for t in ticks]


def decode_shard_record(raw: bytes) -> list[tuple[int, int, list[list[Any]]]]:
    """Its segments: (source partition, source offset, ticks as [symbol, price, ts_ms] lists).
    The engine reads ticks by position, so no object is built per tick."""
    d = orjson.loads(raw)
    if "s" in d:
        return d["s"]
    return [(d["p"], d["o"], d["t"])]  # one segment, as versions before segments wrote it
