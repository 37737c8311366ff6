"""Dead-letter details an on-call engineer can read: times in ISO-8601 UTC (never raw epoch
milliseconds in a detail), and the partition and offset of every input read from a partition;
an input that never was on one (a websocket message) has neither field, rather than a null."""

from __future__ import annotations

import re
from collections import Counter
from types import SimpleNamespace

import orjson

from ratiowatch.agents.route import Router
from ratiowatch.agents.shards import ShardMap
from ratiowatch.config import load_config
from ratiowatch.streams.topics import TICKS
from ratiowatch.streams.feed import FeedClient
from ratiowatch.streams.ticks import Rejected, dlq_record, parse_tick_obj

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{3})?Z"
EPOCH_MS = re.compile(r"(?<![\d.])\d{13}(?![\d.])")  # a 13-digit number: epoch milliseconds
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_a_record_from_a_partition_has_both_and_one_from_a_feed_has_neither():
    rej = Rejected("bad_price", "price must be a number, got str", {"symbol": "SPY", "price": "x", "ts_ms": T0})
    on_topic = orjson.loads(dlq_record(rej, source=TICKS, at_ms=T0 + 1, partition=3, offset=0))
    assert (on_topic["partition"], on_topic["offset"]) == (3, 0)  # offset 0 is an offset, not a missing one
    assert on_topic["at"] == "2026-01-01T00:00:00.001Z" and on_topic["at_ms"] == T0 + 1
    from_feed = orjson.loads(dlq_record(rej, source="feed:ws://127.0.0.1:1/", at_ms=T0))
    assert "partition" not in from_feed and "offset" not in from_feed, from_feed
    assert from_feed["at"] == "2026-01-01T00:00:00Z"
    assert None not in from_feed.values() and None not in on_topic.values()


async def test_the_route_stage_dead_letters_with_partition_offset_and_iso_times():
    cfg = load_config()
    letters: list[dict] = []

    async def dead_letter(rej, partition, offset):  # what agents/pipeline.py writes for each
        letters.append(orjson.loads(dlq_record(rej, source=TICKS, at_ms=T0, partition=partition, offset=offset)))

    async def send_shard(n, value):
        pass

    router = Router(ShardMap(cfg.scenarios, cfg.settings.partitions), signed=frozenset(cfg.settings.signed_symbols),
                    lateness_ms=cfg.settings.allowed_lateness_s * 1000, send_shard=send_shard, dead_letter=dead_letter,
                    positions=dict, now=lambda: 0.0, counters=Counter())

    def rec(offset, value):
        return SimpleNamespace(value=orjson.dumps(value) if not isinstance(value, bytes) else value, offset=offset,
                               headers=None, key=None)

    hour = 3_600_000
    records = [rec(0, {"symbol": "SPY", "price": 500.0, "ts_ms": T0 + 2 * hour}),
               rec(1, b"{not json"),
               rec(2, {"symbol": "SPY", "price": -1.0, "ts_ms": T0 + 2 * hour}),
               rec(3, {"symbol": "SPY", "price": 501.0, "ts_ms": T0}),                      # 2 h behind: late
               rec(4, {"symbol": "SPY", "price": 501.0, "ts_ms": 5_000_000_000_000})]       # past 2100
    await router.handle([(5, records, 5)])
    by_reason = {d["reason"]: d for d in letters}
    assert set(by_reason) == {"not_json", "bad_price", "late", "bad_ts"}, letters
    assert sorted((d["partition"], d["offset"]) for d in letters) == [(5, 1), (5, 2), (5, 3), (5, 4)], letters
    late = by_reason["late"]["detail"]
    assert re.search(r"event time 2026-01-01T00:00:00Z is more than \d+ s behind 2026-01-01T02:00:00Z", late), late
    assert "2128-06-11T08:53:20Z" in by_reason["bad_ts"]["detail"]  # what the number read as
    for d in letters:
        if d["reason"] != "bad_ts":  # that one echoes the number it was sent, with its reading
            assert not EPOCH_MS.search(d["detail"]), d["detail"]
        assert re.fullmatch(ISO, d["at"])


async def test_a_feed_message_dead_letters_without_partition_or_offset():
    out: list[dict] = []

    async def publish_ticks(ticks):
        pass

    async def publish_dlq(value):
        out.append(orjson.loads(value))

    client = FeedClient("ws://127.0.0.1:1/", fmt="plain", symbols=["SPY"], publish_ticks=publish_ticks,
                        publish_dlq=publish_dlq, clock=lambda: T0 / 1000)
    await client._handle(b"{nope")  # what the connection loop does with each message it receives
    await client._handle(orjson.dumps({"symbol": "SPY", "price": 1.0, "ts": 5e10}))
    assert [d["reason"] for d in out] == ["not_json", "bad_ts"]
    for d in out:
        assert "partition" not in d and "offset" not in d and d["at"] == "2026-01-01T00:00:00Z", d
        assert not EPOCH_MS.search(d["detail"]), d["detail"]
    assert "is 3554-06-09T16:53:20Z, outside 1970..2100" in out[1]["detail"]


def test_an_out_of_range_time_says_what_it_reads_as():
    assert parse_tick_obj({"symbol": "SPY", "price": 1.0, "ts_ms": 4_102_444_800_001}).detail == (
        "ts_ms must be whole epoch milliseconds in 1970..2100, got 4102444800001 (2100-01-01T00:00:00.001Z)")
    assert parse_tick_obj({"symbol": "SPY", "price": 1.0, "ts": "2150-01-01T00:00:00+00:00"}).detail == (
        "ts '2150-01-01T00:00:00+00:00' is 2150-01-01T00:00:00Z, outside 1970..2100")
    # too far out for a date: the number alone
    assert parse_tick_obj({"symbol": "SPY", "price": 1.0, "ts_ms": 10**30}).detail == (
        f"ts_ms must be whole epoch milliseconds in 1970..2100, got {10**30}")
