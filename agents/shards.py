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

from ratiowatch.model import Scenario
from ratiowatch.streams.ticks import Tick

__all__ = ["shard_of", "ShardMap", "Segment", "encode_shard_segments", "decode_shard_record"]


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

    def route(self, ticks: Iterable[Sequence[Any]]) -> dict[int, list[Any]]:
        """Split ticks by destination shard, keeping arrival order within each shard."""
        out: dict[int, list[Any]] = {}
        by_symbol = self.by_symbol
        for t in ticks:
            for n in by_symbol.get(t[0], ()):
                lst = out.get(n)
                if lst is None:
                    lst = out[n] = []
                lst.append(t)
        return out


# A segment: (source partition, source offset, ticks, progress, caught up).
Segment = tuple[int, int, Sequence[Sequence[Any]], int, bool]


def encode_shard_segments(segments: Sequence[Segment]) -> bytes:
    """A shard record: one segment per ``ticks`` partition (or chunk of one) that it carries.

    - *source offset*: the last ``ticks`` record the ticks come from, so the consumer of the shard
      topic skips a segment it has already applied after a restart (-1 with no ticks);
    - *ticks*: (symbol, price, ts_ms) rows, possibly none;
    - *progress*: the newest event time routed from that partition so far, to any shard, and
      *caught up*: whether the router had then routed it to its end offset. The shard's
      watermark is made of these (agents/watermark.py)."""
    return orjson.dumps({"s": [(p, o, _rows(t), w, c) for p, o, t, w, c in segments]})


def _rows(ticks: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
    # Plain tuples and lists go to orjson as they are (a Tick, a NamedTuple, it would refuse).
    return ticks if not ticks or type(ticks[0]) is not Tick else [tuple(t) for t in ticks]


def decode_shard_record(raw: bytes) -> list[list[Any]]:
    """Its segments as [partition, offset, ticks as [symbol, price, ts_ms] lists, progress, caught
    up]. The engine reads ticks by position, so no object is built per tick."""
    return orjson.loads(raw)["s"]
