"""Right events whatever the keying: ticks keyed by symbol (one record a tick, spread over the
partitions), read as a backlog, give exactly the backtest's events on the real history, with
nothing good dead-lettered as late; so do ticks keyed by source, and a worker SIGKILLed mid-way
through the backlog and restarted. And a tick truly past the allowed lateness is still dead-lettered.

The backtest (ratiowatch/backtest.py, polars) is the independent computation; the engine must
equal it event for event."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from ratiowatch.agents.events import canonical_order
from ratiowatch.backtest import run_backtest
from ratiowatch.config import load_config
from ratiowatch.roles.engine import EngineRole
from ratiowatch.streams.topics import EVENTS, TICKS, TICKS_DLQ
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.history import daily_ticks, load_history
from ratiowatch.streams.origin import REPLAY
from ratiowatch.streams.readback import read_topic
from ratiowatch.streams.ticks import encode_ticks
from scenario_control import apply_scenarios

pytestmark = pytest.mark.broker
FIXTURES = Path(__file__).parent / "fixtures"
RW = [str(Path(sys.executable).with_name("ratiowatch"))]


def _producer(bootstrap: str) -> KafkaProducer:
    # gzip: a tick a record over 55 years is ~140,000 records; compressed, each partition stays
    # well inside the embedded broker's 5 MB.
    return KafkaProducer(bootstrap_servers=bootstrap, api_version=(3, 0), compression_type="gzip",
                         linger_ms=20, batch_size=256 * 1024)


def send_backlog(bootstrap: str, cfg, history, keyed_by: str) -> int:
    """The history as ticks, in date order: keyed by symbol one tick a record (the default
    partitioner spreads the symbols over the partitions), or keyed by source one date a record."""
    p = _producer(bootstrap)
    sent = 0
    for _, ticks in daily_ticks(history, cfg.settings.session_timezone):
        if keyed_by == "symbol":
            for t in ticks:
                p.send(TICKS, key=t.symbol.encode(),
                       value=orjson.dumps({"symbol": t.symbol, "price": t.price, "ts_ms": t.ts_ms}))
        else:
            p.send(TICKS, key=b"vendor-1", value=encode_ticks(ticks))
        sent += len(ticks)
    p.flush()
    p.close()
    return sent


def read_events(bootstrap: str, cfg) -> list[dict]:
    return canonical_order([orjson.loads(v) for _, v, _, _ in read_topic(bootstrap, EVENTS)], cfg)


@pytest.fixture(scope="module")
def shipped(history_dir):
    cfg = load_config()
    history = load_history(history_dir, cfg.symbols, cfg.settings.signed_symbols)
    return cfg, history, run_backtest(cfg, history).as_published(REPLAY)


@pytest.mark.parametrize("keyed_by", ["symbol", "source"])
async def test_a_backlog_sent_before_the_worker_starts_gives_the_backtest_events(shipped, keyed_by):
    cfg, history, expected = shipped
    with EmbeddedBroker() as broker:
        ensure_topics(broker, cfg.settings.partitions)
        sent = send_backlog(broker.bootstrap, cfg, history, keyed_by)
        rt = EngineRole(cfg, broker_url=broker.url, origin=REPLAY)  # history sent again, as the backtest
        await rt.start()
        try:
            deadline = time.monotonic() + 240
            while rt.pipeline.counters["ticks_in"] < sent or not rt.pipeline.idle():
                assert time.monotonic() < deadline, dict(rt.pipeline.counters)
                await asyncio.sleep(0.05)
            await rt.app.producer.flush()
            counters = rt.pipeline.counters.copy()
        finally:
            await rt.stop()
        got = await asyncio.get_running_loop().run_in_executor(None, read_events, broker.bootstrap, cfg)
    assert counters["ticks_in"] == sent and counters["dead_lettered"] == 0, counters
    assert len(expected) > 2000
    assert got == expected


def _engine(broker_url: str, datadir: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """`ratiowatch engine` in its own process; returns it and its ops HTTP port."""
    out = open(log, "a")
    proc = subprocess.Popen(RW + ["engine", "--broker", broker_url, "--origin", "replay", "--http", "127.0.0.1:0"],
                            stdout=subprocess.PIPE,
                            stderr=out, text=True, env={**__import__("os").environ, "RATIOWATCH_DATADIR": str(datadir),
                                                        "RATIOWATCH_SESSION_TIMEOUT_S": "6"})
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
    assert m, line
    return proc, int(m.group(1))


def _metric(port: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{name} ([0-9.e+]+)$", body, re.M)
    return float(m.group(1)) if m else 0.0


def test_an_engine_killed_mid_backlog_and_restarted_gives_the_backtest_events(shipped, tmp_path):
    cfg, history, expected = shipped
    broker = subprocess.Popen(RW + ["broker", "--partitions", str(cfg.settings.partitions)],
                              stdout=subprocess.PIPE, text=True)
    try:
        bootstrap = re.match(r"bootstrap: (127\.0\.0\.1:\d+)", broker.stdout.readline()).group(1)
        apply_scenarios(bootstrap, cfg.path)
        sent = send_backlog(bootstrap, cfg, history, "symbol")
        first, port = _engine(f"kafka://{bootstrap}", tmp_path / "d", tmp_path / "engine.log")
        try:
            # Killed once it has read a third of the backlog, whatever it has committed by then.
            deadline = time.monotonic() + 120
            while _metric(port, "ratiowatch_ticks_in_total") < sent / 3:
                assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "engine.log").read_text()[-3000:]
                time.sleep(0.05)
            first.kill()
            first.wait(timeout=20)
        finally:
            if first.poll() is None:
                first.kill()
        second, port = _engine(f"kafka://{bootstrap}", tmp_path / "d", tmp_path / "engine.log")
        try:
            deadline = time.monotonic() + 300
            got: list[dict] = []
            while len(got) < len(expected):
                assert second.poll() is None and time.monotonic() < deadline, (len(got), len(expected))
                time.sleep(0.5)
                got = read_events(bootstrap, cfg)
            dead = _metric(port, 'ratiowatch_ticks_dead_lettered_total{reason="late"}')
            dlq = [orjson.loads(v) for _, v, _, _ in read_topic(bootstrap, TICKS_DLQ)]
        finally:
            second.terminate()
            second.wait(timeout=30)
    finally:
        broker.terminate()
        broker.wait(timeout=20)
    assert dead == 0, [(d["detail"], d.get("partition"), d.get("offset")) for d in dlq[:5]]
    assert got == expected  # nothing lost, nothing twice, nothing moved


async def test_intraday_ticks_keyed_by_symbol_across_partitions_and_a_tick_past_the_allowed_lateness():
    # levels.yaml: spy-level fires when SPY >= 100 and re-arms below 100; iwm-spy-ratio on IWM/SPY.
    cfg = load_config(FIXTURES / "levels.yaml")
    t0 = 1_767_000_000_000  # 2025-12-29 09:20 UTC
    with EmbeddedBroker() as broker:
        ensure_topics(broker, cfg.settings.partitions)
        p = _producer(broker.bootstrap)
        # A backlog over several partitions: SPY and IWM keyed by symbol. Read partition by
        # partition, SPY's later ticks must not make IWM's earlier ones late, nor the reverse.
        for i in range(240):  # a tick a minute for four hours, both symbols
            ts = t0 + i * 60_000
            p.send(TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": 98.0 + (i % 60) / 20, "ts_ms": ts}))
            p.send(TICKS, key=b"IWM", value=orjson.dumps({"symbol": "IWM", "price": 40.0, "ts_ms": ts}))
        p.flush()
        rt = EngineRole(cfg, broker_url=broker.url)
        await rt.start()
        try:
            deadline = time.monotonic() + 60
            while rt.pipeline.counters["ticks_in"] < 480 or not rt.pipeline.idle():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert rt.pipeline.counters["dead_lettered"] == 0
            # Now a tick from an hour before the newest applied one: past allowed_lateness_s.
            late_ts = t0 + 239 * 60_000 - 3_600_000
            p.send(TICKS, key=b"SPY", value=orjson.dumps({"symbol": "SPY", "price": 150.0, "ts_ms": late_ts}))
            p.flush()
            while rt.pipeline.counters["ticks_in"] < 481 or not rt.pipeline.idle():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            counters = rt.pipeline.counters.copy()
            await rt.app.producer.flush()
        finally:
            await rt.stop()
        loop = asyncio.get_running_loop()
        events = await loop.run_in_executor(None, read_events, broker.bootstrap, cfg)
        dlq = [orjson.loads(v) for _, v, _, _ in await loop.run_in_executor(
            None, lambda: list(read_topic(broker.bootstrap, TICKS_DLQ)))]
    # Late in its own partition's order (an hour behind the SPY tick before it): dead-lettered once,
    # by the route stage, with its partition and offset, whatever shards use SPY.
    assert counters["dead_lettered"] == counters["dlq.late"] == len(dlq) == 1
    (d,) = dlq
    assert d["reason"] == "late" and d["input"]["ts_ms"] == late_ts and d["offset"] == 240
    assert d["detail"].startswith(f"partition {d['partition']}: event time 2025-12-29T12:19:00Z is more than 300 s "
                                  "behind 2025-12-29T13:19:00Z")
    # The independent expectation, from the definition of the rule on the prices sent: SPY runs
    # 98.00 .. 100.95 each hour; at 100 first at minute 40 of each hour (fires), below 100 again
    # at minute 0 of the next (re-arms), every hour, four hours.
    spy = [(e["kind"], e["ts_ms"]) for e in events if e["scenario"] == "spy-level"]
    want = []
    for hour in range(4):
        want.append(("fired", t0 + (hour * 60 + 40) * 60_000))
        if hour < 3:
            want.append(("rearmed", t0 + (hour + 1) * 60 * 60_000))
    assert spy == want
