"""Event time across source partitions, without a broker: the real route and evaluate stages
(agents/route.py, agents/evaluate.py) wired to each other in memory, fed the same ticks through
random partition interleavings and batch cuts. Whatever the arrival order, the events must be
those of the engine applied to the ticks in event-time order, and no tick may be called late."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratiowatch.agents.engine import ShardEngine
from ratiowatch.agents.evaluate import Evaluator
from ratiowatch.agents.route import Router
from ratiowatch.agents.shards import ShardMap
from ratiowatch.agents.watermark import EventTimeGate
from ratiowatch.config import parse_config

CONFIG = parse_config({
    "settings": {"partitions": 2, "grace_ms": 50, "allowed_lateness_s": 300},
    "scenarios": [
        {"id": "ratio", "title": "IWM/SPY up", "trigger": {"series": "IWM/SPY", "above": 0.41, "rearm": 0.40}},
        {"id": "spread", "title": "curve", "trigger": {"series": "DGS10-DGS2", "above": 0.0}},
        {"id": "change", "title": "XLF 2-session change", "trigger": {"series": "XLF", "lookback": 2, "above": 0.01}},
    ],
})
SYMBOLS = ["IWM", "SPY", "DGS10", "DGS2", "XLF"]
DAY = 86_400_000


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Wiring:
    """One router per source partition and one evaluator, records passed by hand."""

    def __init__(self, sources: int) -> None:
        self.clock = Clock()
        self.map = ShardMap(CONFIG.scenarios, CONFIG.settings.partitions)
        self.counters: Counter[str] = Counter()
        self.shard_records: dict[int, list[bytes]] = {n: [] for n in range(self.map.shards)}
        self.shard_offsets: dict[int, int] = {}
        self.events: list[dict] = []
        self.late: list = []
        self.offsets = {p: 0 for p in range(sources)}
        self.ends = {p: 0 for p in range(sources)}  # what the "broker" holds per partition
        self.router = Router(self.map, signed=CONFIG.settings.signed_symbols, lateness_ms=300_000, send_shard=self._send,
                             dead_letter=self._rejected, positions=lambda: {}, now=self.clock, counters=self.counters)
        self.evaluator = Evaluator(CONFIG, self.map.scenarios, sources=sources, emit=self._emit,
                                   dead_letter=self._late, now=self.clock, counters=self.counters)
        self.shards = {n: self.evaluator.new_shard(n) for n in range(self.map.shards)}

    async def _send(self, n: int, value: bytes) -> None:
        self.shard_records[n].append(value)

    async def _rejected(self, rej, partition, offset) -> None:
        raise AssertionError(f"rejected {rej}")

    async def _emit(self, ev: dict) -> None:
        self.events.append(ev)

    async def _late(self, rej, partition, shard) -> None:
        self.late.append(rej)

    async def route(self, partition: int, ticks: list[tuple[str, float, int]], highwater: int,
                    at: int | None = None) -> None:
        """Route ``ticks`` as records of ``partition`` from offset ``at`` (default: the next one;
        an earlier one is a re-read, as after faust seeks back to the committed offsets)."""
        import orjson

        if at is not None:
            self.offsets[partition] = at
        records = []
        for t in ticks:
            records.append(SimpleNamespace(headers=(), value=orjson.dumps({"symbol": t[0], "price": t[1], "ts_ms": t[2]}),
                                           offset=self.offsets[partition]))
            self.offsets[partition] += 1
        await self.router.handle([(partition, records, highwater)])

    async def finish(self) -> None:
        """Everything is read: the last batch of each partition said "caught up"; once they have
        all been quiet for the idle time, the gate releases the rest."""
        await self.deliver()
        self.clock.t += 1.0
        for sh in self.shards.values():
            await self.evaluator.release(sh, self.clock())

    def assert_events_of(self, ticks: list[tuple[str, float, int]]) -> None:
        """The events are those of the ticks in event-time order; nothing was late or left waiting."""
        assert self.late == []
        assert sorted(map(key, self.events)) == sorted(map(key, reference_events(ticks)))
        assert all(not sh.gate.pending for sh in self.shards.values())

    async def deliver(self) -> None:
        for n, recs in self.shard_records.items():
            if recs:
                batch, self.shard_records[n] = recs, []
                first = self.shard_offsets.get(n, 0)
                self.shard_offsets[n] = first + len(batch)
                await self.evaluator.handle(self.shards[n], [SimpleNamespace(value=v, timestamp=0, offset=first + i)
                                                             for i, v in enumerate(batch)])


def reference_events(ticks: list[tuple[str, float, int]]) -> list[dict]:
    """The engine fed the whole tick set at once, in event-time order (arrival order kept within
    a timestamp): what a single ordered stream gives."""
    states: dict = {}
    engines = [ShardEngine(CONFIG.scenarios, CONFIG.settings)]
    ordered = sorted(ticks, key=lambda t: t[2])
    return engines[0].apply_sorted(states, ordered, set())


def key(ev: dict) -> tuple:
    return ev["scenario"], ev["rule"], ev["kind"], ev["ts_ms"], ev["value"]


# A day of ticks per symbol, in time order; several symbols share each timestamp (a same-time group).
days = st.lists(st.tuples(*[st.floats(1.0, 200.0) for _ in SYMBOLS]), min_size=2, max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prices=days, sources=st.integers(2, 4), cuts=st.lists(st.integers(1, 9), min_size=1, max_size=40),
       order=st.randoms(use_true_random=False))
def test_random_partition_interleavings_give_the_events_of_event_time_order(prices, sources, cuts, order):
    ticks = [(sym, float(f"{p:.4f}"), d * DAY) for d, row in enumerate(prices) for sym, p in zip(SYMBOLS, row)]
    # Keyed by symbol: each partition holds its symbols' ticks in time order.
    part_of = {sym: i % sources for i, sym in enumerate(SYMBOLS)}
    by_part = {p: [t for t in ticks if part_of[t[0]] == p] for p in range(sources)}

    async def go() -> Wiring:
        w = Wiring(sources)
        for p, ts in by_part.items():
            w.ends[p] = len(ts)
        pos = {p: 0 for p in range(sources)}
        cut_iter = itertools.cycle(cuts)
        # A backlog: every partition has all its ticks on the broker before the worker reads,
        # and the router reads them in chunks from partitions picked at random.
        while any(pos[p] < len(by_part[p]) for p in by_part):
            p = order.choice([q for q in by_part if pos[q] < len(by_part[q])])
            n = next(cut_iter)
            chunk = by_part[p][pos[p]:pos[p] + n]
            pos[p] += len(chunk)
            await w.route(p, chunk, highwater=w.ends[p])
            if order.random() < 0.5:
                await w.deliver()
        await w.finish()
        return w

    asyncio.run(go()).assert_events_of(ticks)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prices=days, reread=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 60)), min_size=1, max_size=4),
       order=st.randoms(use_true_random=False))
def test_records_read_again_are_skipped_exactly_and_never_called_late(prices, reread, order):
    # Keyed by symbol over two partitions; now and then the router reads a partition again from
    # an earlier offset (a seek back to the committed offset), in other chunks than the first time.
    ticks = [(sym, float(f"{p:.4f}"), d * DAY) for d, row in enumerate(prices) for sym, p in zip(SYMBOLS, row)]
    by_part = {p: [t for i, t in enumerate(ticks) if SYMBOLS.index(t[0]) % 2 == p] for p in (0, 1)}

    async def go() -> Wiring:
        w = Wiring(2)
        pos = {0: 0, 1: 0}
        jumps = iter(reread)
        while any(pos[p] < len(by_part[p]) for p in by_part):
            p = order.choice([q for q in by_part if pos[q] < len(by_part[q])])
            n = order.randint(1, 7)
            await w.route(p, by_part[p][pos[p]:pos[p] + n], highwater=len(by_part[p]), at=pos[p])
            pos[p] = min(pos[p] + n, len(by_part[p]))
            if order.random() < 0.3:
                back, _ = next(jumps, (None, None))
                if back is not None:
                    pos[p] = min(back, pos[p])  # read again from there
            await w.deliver()
        await w.finish()
        return w

    asyncio.run(go()).assert_events_of(ticks)


def test_a_partition_with_a_backlog_holds_the_watermark_however_long_it_is_silent():
    gate = EventTimeGate(2, idle_ms=50, lateness_ms=300_000)
    gate.observe(0, 5 * DAY, caught_up=True, now=0.0)
    gate.observe(1, 1 * DAY, caught_up=False, now=0.0)
    gate.admit([["A", 1.0, d * DAY] for d in range(6)], 0, now=0.0)
    assert [t[2] for t in gate.take_ready(now=1e6)] == [0]  # only what is older than partition 1
    gate.observe(1, 3 * DAY, caught_up=False, now=1e6)
    assert [t[2] for t in gate.take_ready(now=1e6)] == [DAY, 2 * DAY]


def caught_up_gate(progress_0: int, progress_1: int, idle_ms: float = 50) -> EventTimeGate:
    """A gate over two partitions whose routers said at time 0 they were caught up at these event times."""
    gate = EventTimeGate(2, idle_ms=idle_ms, lateness_ms=300_000)
    gate.observe(0, progress_0, caught_up=True, now=0.0)
    gate.observe(1, progress_1, caught_up=True, now=0.0)
    return gate


def test_a_caught_up_partition_stops_holding_once_idle_but_not_before():
    gate = caught_up_gate(10, 20)
    gate.admit([["A", 1.0, 10], ["B", 1.0, 20]], 0, now=0.0)
    assert gate.take_ready(now=0.049) == []           # both still within the idle time
    assert [t[2] for t in gate.take_ready(now=0.050)] == [10, 20]  # both idle: all released
    assert gate.frontier == 20


def test_after_a_pause_the_first_record_waits_the_grace_from_its_arrival_for_the_quiet_partitions():
    # Both partitions caught up and quiet for 10 s (a feed that paused, the market's open). The
    # record of partition 1 produced with partition 0's arrives 30 ms after it: counting the
    # grace from partition 1's last tick, 10 s ago, would have applied 95 at once and 90 behind it.
    gate = caught_up_gate(10, 10)
    gate.admit([["A", 1.0, 95], ["A", 1.1, 100]], 0, now=10.0)
    gate.observe(0, 100, caught_up=True, now=10.0)
    assert gate.take_ready(now=10.0) == []
    assert gate.take_ready(now=10.049) == []  # 95 is younger than the grace: partition 1 holds it
    gate.admit([["B", 2.0, 90]], 0, now=10.03)
    gate.observe(1, 90, caught_up=True, now=10.03)
    assert gate.take_ready(now=10.079) == []  # partition 1 spoke at 10.03: it holds from 90 for 50 ms
    assert [t[2] for t in gate.take_ready(now=10.08)] == [90, 95, 100]
    assert gate.corrections == 0


def test_a_caught_up_partition_holds_only_the_ticks_younger_than_the_grace():
    gate = caught_up_gate(10, 50)
    gate.admit([["A", 1.0, 20], ["A", 1.0, 30]], 0, now=1.0)
    gate.admit([["A", 1.0, 40]], 1, now=1.03)
    assert [t[2] for t in gate.take_ready(now=1.05)] == [20, 30]  # 40 arrived 20 ms ago: it waits
    assert [t[2] for t in gate.take_ready(now=1.08)] == [40]


def test_a_timestamp_group_is_held_whole_when_part_of_it_is_younger_than_the_grace():
    gate = caught_up_gate(10, 10)
    gate.admit([["A", 1.0, 20], ["A", 1.0, 30]], 0, now=1.0)
    gate.admit([["B", 1.0, 30]], 1, now=1.03)
    assert [t[2] for t in gate.take_ready(now=1.06)] == [20]  # B at 30 is recent: A at 30 waits with it
    assert [t[:3] for t in gate.take_ready(now=1.08)] == [["A", 1.0, 30], ["B", 1.0, 30]]


def test_caught_up_words_do_not_count_while_the_shard_has_not_read_its_own_input():
    # Records wait on the shard topic (a shard catching up after a restart, or slower than its
    # routers): partition 1's word "caught up at 10" is older than them, so it holds at 10.
    gate = caught_up_gate(40, 10, idle_ms=0)
    gate.admit([["A", 1.0, 20], ["A", 1.0, 40]], 0, now=0.0)
    assert gate.take_ready(now=1.0, idle=False) == []
    gate.observe(1, 30, caught_up=True, now=1.0)
    assert [t[2] for t in gate.take_ready(now=1.0, idle=False)] == [20]  # older than both: applied
    assert [t[2] for t in gate.take_ready(now=1.0)] == [40]  # read to the end: the words count again


def test_with_no_grace_a_caught_up_partition_holds_nothing_back():
    gate = caught_up_gate(10, 20, idle_ms=0)
    gate.admit([["A", 1.0, 10], ["B", 1.0, 20]], 0, now=0.0)
    assert [t[2] for t in gate.take_ready(now=0.0)] == [10, 20]


def test_a_stale_caught_up_claim_holds_the_watermark():
    # A router that died stops renewing its word: its partition holds until a new owner speaks.
    gate = EventTimeGate(2, idle_ms=50, lateness_ms=300_000, claim_ttl_s=5.0)
    gate.observe(0, 10, caught_up=True, now=0.0)
    gate.observe(1, 30, caught_up=False, now=0.0)
    gate.admit([["B", 1.0, 20]], 0, now=0.0)
    gate.observe(1, 30, caught_up=True, now=0.0)
    assert gate.take_ready(now=6.0) == []  # partition 0's claim is older than its ttl
    gate.observe(0, 10, caught_up=True, now=6.0)
    assert [t[2] for t in gate.take_ready(now=6.1)] == [20]


@pytest.mark.parametrize("behind_ms, late", [(300_000, False), (300_001, True)])
def test_lateness_is_judged_against_the_applied_frontier_with_its_boundary_kept(behind_ms, late):
    gate = EventTimeGate(1, idle_ms=0, lateness_ms=300_000)
    gate.observe(0, 1_000_000, caught_up=True, now=0.0)
    gate.admit([["A", 1.0, 1_000_000]], 0, now=0.0)
    assert gate.take_ready(now=0.0)
    tick = ["A", 2.0, 1_000_000 - behind_ms]
    assert gate.admit([tick], 1, now=0.0) == ([tick] if late else [])


def test_the_durable_form_keeps_progress_and_frontier_and_the_waiting_ticks_come_back_by_re_reading():
    gate = EventTimeGate(2, idle_ms=50, lateness_ms=1000)
    gate.observe(0, 50, caught_up=True, now=0.0)
    gate.observe(1, 40, caught_up=False, now=0.0)
    gate.admit([["A", 1.0, 30]], 7, now=0.0)
    gate.admit([["B", 2.0, 45], ["A", 3.0, 48]], 8, now=0.0)
    assert [t[2] for t in gate.take_ready(now=0.0)] == [30]
    assert gate.oldest_record() == 8  # the commit is held back to here
    back = EventTimeGate(2, idle_ms=50, lateness_ms=1000)
    back.restore(gate.to_dict())
    assert back.frontier == 30 and back.pending == []
    assert {p: s.progress for p, s in back.sources.items()} == {0: 50, 1: 40}
    assert all(not s.caught_up for s in back.sources.values())
    # Read again from record 7 on: what was applied (<= the frontier) is skipped, what waited waits.
    assert back.readmit([["A", 1.0, 30]], 7, now=0.0) == 0
    assert back.readmit([["B", 2.0, 45], ["A", 3.0, 48]], 8, now=0.0) == 2
    assert [t[:3] for t in back.pending] == [["B", 2.0, 45], ["A", 3.0, 48]]
    assert back.take_ready(now=100.0) == []  # nothing released on the strength of an old word
