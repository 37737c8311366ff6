"""The simulated market never starts in the past of the state it joins (issue 20, item 2): before
it starts against a broker, the source reads the newest event time on `ticks` (the last record
of each partition, one tick or a batch) and starts at the NYSE session after it, from the newest
prices there; when that cannot be read it refuses, saying why. Embedded broker, 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from ratiowatch.config import load_config
from ratiowatch.roles.sim_start import SimStartRefused, newest_on_ticks, plan_sim_start
from ratiowatch.roles.source import run_sources
from ratiowatch.roles.source_options import SourceOptions
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.clients import aio_consumer, aio_producer
from ratiowatch.streams.sources.sinks import KafkaTickSink
from ratiowatch.streams.simfeed import DEFAULT_SYMBOLS
from ratiowatch.streams.ticks import Tick, encode_ticks, parse_ticks
from ratiowatch.streams.topics import TICKS

pytestmark = pytest.mark.broker
RW = [str(Path(sys.executable).with_name("ratiowatch"))]
NY = ZoneInfo("America/New_York")


def ms(y: int, m: int, d: int, hh: int = 16, mm: int = 0) -> int:
    return int(datetime(y, m, d, hh, mm, tzinfo=NY).timestamp() * 1000)


NEWEST = ms(2029, 3, 2)          # a Friday close; the next NYSE session is Monday 2029-03-05
LEVELS = {s: 100.0 + i for i, s in enumerate(sorted(DEFAULT_SYMBOLS))}
LEVELS.update({"DGS10": 3.1, "DGS2": 2.7, "DXY": 96.5})


async def plant(bootstrap: str, records: list[tuple[int, bytes]]) -> None:
    """Write (partition, value) records to `ticks`, as earlier sources did."""
    producer = aio_producer(bootstrap, client_id="test-plant")
    await producer.start()
    try:
        for partition, value in records:
            await producer.send_and_wait(TICKS, value, key=b"planted", partition=partition)
    finally:
        await producer.stop()


def state_in_2029() -> list[tuple[int, bytes]]:
    """A cluster whose ticks reached 2029-03-02: a batch (the newest) on partition 3, a single tick
    the day before on partition 0, an older batch on partition 5, and on partition 6 a valid tick
    followed by a record that is not JSON (the source reads back past it)."""
    return [
        (5, encode_ticks([Tick(s, p * 0.9, ms(2027, 6, 1)) for s, p in LEVELS.items()])),
        (0, orjson.dumps({"symbol": "IWM", "price": 1.0, "ts_ms": ms(2029, 3, 1)})),
        (3, encode_ticks([Tick(s, p, NEWEST) for s, p in LEVELS.items()])),
        (6, orjson.dumps({"symbol": "SPY", "price": 2.0, "ts_ms": ms(2028, 12, 28)})),
        (6, b"not json at all"),
    ]


async def first_sim_record(bootstrap: str, timeout_s: float = 60) -> list[Tick]:
    """The ticks of the first record keyed `sim` on `ticks` (read from the beginning)."""
    from aiokafka import TopicPartition

    c = aio_consumer(bootstrap, client_id="test-sim-readback")
    await c.start()
    try:
        parts = [TopicPartition(TICKS, p) for p in range(8)]
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        async with asyncio.timeout(timeout_s):
            while True:
                for recs in (await c.getmany(timeout_ms=500)).values():
                    for r in recs:
                        if r.key == b"sim":
                            return parse_ticks(r.value)[0]
    finally:
        await c.stop()


def ny_day(ts_ms: int) -> date:
    return datetime.fromtimestamp(ts_ms / 1000, NY).date()


async def test_the_plan_continues_after_the_newest_tick_from_its_prices():
    config = load_config()
    with EmbeddedBroker() as broker:
        ensure_topics(broker, 8)
        await plant(broker.bootstrap, state_in_2029())
        newest, last = await newest_on_ticks(broker.bootstrap)
        assert newest == NEWEST
        assert last["SPY"] == (NEWEST, LEVELS["SPY"]) and last["IWM"] == (NEWEST, LEVELS["IWM"])
        plan = await plan_sim_start(config, bootstrap=broker.bootstrap)
        assert plan.start == date(2029, 3, 5)
        assert plan.describe().startswith("simulated market starts 2029-03-05: continuing after 2029-03-02, "
                                          "the newest tick on `ticks`"), plan.describe()
        assert all(plan.levels[s] == LEVELS[s] for s in config.symbols)

        # the sim source, started from the plan, writes its first print after the newest tick
        producer = aio_producer(broker.bootstrap, client_id="ratiowatch-source")
        await producer.start()
        stop = asyncio.Event()
        source = asyncio.create_task(run_sources(SourceOptions(sim_rate=100.0), config, KafkaTickSink(producer), stop,
                                                 start=plan.start, levels=plan.levels))
        try:
            first = await first_sim_record(broker.bootstrap)
        finally:
            stop.set()
            await source
            await producer.stop()
    assert {t.symbol for t in first} == config.symbols
    assert min(t.ts_ms for t in first) > NEWEST
    assert ny_day(first[0].ts_ms) == date(2029, 3, 5)
    by = {t.symbol: t.price for t in first}
    assert by["IWM"] == pytest.approx(LEVELS["IWM"], rel=0.03)      # continues from the newest prices
    assert by["DXY"] == pytest.approx(LEVELS["DXY"], rel=0.01)
    assert by["DGS10"] == pytest.approx(LEVELS["DGS10"], abs=0.1)


async def test_an_empty_ticks_topic_gives_the_default_start_and_history_the_day_after_it(history_dir):
    config = load_config()
    with EmbeddedBroker() as broker:
        ensure_topics(broker, 8)
        plan = await plan_sim_start(config, bootstrap=broker.bootstrap)
        assert plan.start == date(2026, 1, 2) and plan.levels == {}
        assert "`ticks` is empty and no --history" in plan.why
        # with history: the session after its last date (2026-08-20, a Thursday), from its closes
        plan = await plan_sim_start(config, bootstrap=broker.bootstrap, history_dir=history_dir)
        assert plan.start == date(2026, 8, 21) and plan.levels["DXY"] == pytest.approx(98.9)
        assert "after the history's last date (2026-08-20)" in plan.why
        # ticks newer than the history win, and their prices override its closes
        await plant(broker.bootstrap, state_in_2029())
        plan = await plan_sim_start(config, bootstrap=broker.bootstrap, history_dir=history_dir)
        assert plan.start == date(2029, 3, 5) and plan.levels["DXY"] == LEVELS["DXY"]
    plan = await plan_sim_start(config)   # a new embedded broker: nothing to read
    assert plan.start == date(2026, 1, 2) and "a new embedded broker and no --history" in plan.why


async def test_it_refuses_when_the_newest_tick_cannot_be_read():
    config = load_config()
    with EmbeddedBroker() as broker:
        broker.create_topic("events", 1)   # a cluster without `ticks`
        with pytest.raises(SimStartRefused, match="the broker has no `ticks` topic"):
            await plan_sim_start(config, bootstrap=broker.bootstrap)
        broker.create_topic(TICKS, 2)
        await plant(broker.bootstrap, [(1, orjson.dumps({"symbol": "SPY", "price": 2.0, "ts_ms": NEWEST}))]
                    + [(1, b"garbage %d" % i) for i in range(5)])
        with pytest.raises(SimStartRefused, match=r"partition\(s\) 1 hold no valid tick \(up to 3 read back"):
            await newest_on_ticks(broker.bootstrap, scan_back=3)
        newest, _ = await newest_on_ticks(broker.bootstrap, scan_back=6)   # far enough back: found
        assert newest == NEWEST
    with pytest.raises(SimStartRefused, match=r"could not read .*127\.0\.0\.1:1"):
        await plan_sim_start(config, bootstrap="127.0.0.1:1", timeout_s=5)


async def _line(proc: subprocess.Popen, pattern: str, seen: list[str], timeout_s: float = 60) -> re.Match:
    async with asyncio.timeout(timeout_s):
        while True:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                raise AssertionError(f"output ended before {pattern!r}:\n" + "".join(seen[-40:]))
            seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m


@pytest.mark.parametrize("command", [["source", "--http", "off"], ["run"]])
async def test_the_commands_continue_after_the_newest_tick_and_say_so(command, tmp_path):
    with EmbeddedBroker() as broker:
        ensure_topics(broker, 8)
        await plant(broker.bootstrap, state_in_2029())
        env = {**os.environ, "RATIOWATCH_DATADIR": str(tmp_path / "data")}
        proc = subprocess.Popen(RW + command + ["--broker", broker.url, "--sim-rate", "20"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env)
        seen: list[str] = []
        try:
            await _line(proc, r"simulated market starts 2029-03-05: continuing after 2029-03-02, the newest tick on "
                              r"`ticks` \(2029-03-02 16:00 EST\)", seen)
            first = await first_sim_record(broker.bootstrap)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
            seen.append(out)
        assert proc.returncode == 0, "".join(seen)[-3000:]
    assert min(t.ts_ms for t in first) > NEWEST and ny_day(first[0].ts_ms) == date(2029, 3, 5)


async def test_the_source_command_refuses_and_says_why(tmp_path):
    with EmbeddedBroker() as broker:
        ensure_topics(broker, 2)
        await plant(broker.bootstrap, [(0, orjson.dumps({"symbol": "SPY", "price": 2.0, "ts_ms": NEWEST}))]
                    + [(0, b"garbage")] * 70)
        out = subprocess.run(RW + ["source", "--broker", broker.url, "--http", "off"], capture_output=True, text=True,
                             timeout=90, cwd=tmp_path)
        assert out.returncode == 1, out.stderr[-2000:]
        assert ("ratiowatch source: the simulated market does not start: the last records of `ticks` partition(s) 0 "
                "hold no valid tick") in out.stderr, out.stderr[-2000:]
        assert "--no-sim" in out.stderr
        # nothing was written
        from aiokafka import TopicPartition

        c = aio_consumer(broker.bootstrap, client_id="test-count")
        await c.start()
        try:
            tps = [TopicPartition(TICKS, p) for p in range(2)]
            assert sum((await c.end_offsets(tps)).values()) == 71
        finally:
            await c.stop()
