"""Replay: real history through the whole streaming path must equal the batch backtest, and a
worker restarted mid-replay loses and repeats nothing; on the broker under test (``kafka_broker``:
the embedded mock or Tansu, RATIOWATCH_TEST_BROKER)."""

from __future__ import annotations

import asyncio
from datetime import date

import orjson
import polars as pl
import pytest

from ratiowatch.agents.events import canonical_order
from ratiowatch.backtest import run_backtest
from ratiowatch.cli import main
from ratiowatch.config import load_config
from ratiowatch.roles.engine import EngineRole
from ratiowatch.streams.topics import EVENTS
from ratiowatch.streams.history import daily_ticks, load_history
from ratiowatch.streams.readback import read_topic
from ratiowatch.streams.ticks import encode_ticks
from tansu_peer import read_to_highwater  # a helper module in tests/, which pytest puts on sys.path

pytestmark = [pytest.mark.broker, pytest.mark.both_brokers]


def test_replay_json_equals_backtest_json_on_the_shipped_scenarios(history_dir, capsys, kafka_broker, tmp_path,
                                                                  monkeypatch):
    # Every shipped scenario (IWM/SPY with its confirmations, the DGS10-DGS2 spread, the DXY level,
    # KRE/XLF, XLI, XBI, HYG...) over the real history from 1971 through mid-2026.
    assert main(["backtest", "--data", str(history_dir), "--json", "--no-charts", "--out", str(tmp_path / "bt")]) == 0
    backtest = capsys.readouterr().out.splitlines()
    monkeypatch.setenv("RATIOWATCH_DATADIR", str(tmp_path))
    assert main(["replay", "--broker", kafka_broker.url, "--data", str(history_dir), "--json"]) == 0
    replayed = capsys.readouterr().out.splitlines()
    # What the streaming path wrote to `events`, read to the fetch's high watermark (either broker).
    written = asyncio.run(read_to_highwater(kafka_broker.bootstrap, EVENTS))
    on_topic = [orjson.dumps(e).decode() for e in canonical_order([orjson.loads(r.value) for r in written],
                                                                   load_config())]
    assert len(backtest) > 2000
    assert on_topic == backtest
    if "list_offsets_log_end" not in kafka_broker.gaps:
        assert replayed == backtest
    else:
        # replay prints what streams/readback.py reads back, to the end offsets ListOffsets answers:
        # on Tansu 0.6.0 too few (3,558 of 3,622 when measured, docs/faults.md), none wrong.
        assert set(replayed) <= set(backtest)
    fired = [orjson.loads(l) for l in on_topic]
    small_caps = [e["at"][:10] for e in fired
                  if e["scenario"] == "small-caps-outperform" and e["rule"] == "trigger" and e["kind"] == "fired"]
    # The dates come from the data; they are listed here so a change in semantics shows as a diff.
    # (With require: 4, README "Warm start, backtest, replay"; without it, 13 dates.)
    assert small_caps == ["2003-07-31", "2003-08-21", "2003-09-15", "2003-11-05", "2008-08-01", "2008-09-23",
                          "2009-06-04", "2020-11-23", "2026-02-19"]


async def test_worker_restarted_mid_replay_loses_and_repeats_nothing(history_dir, kafka_broker, tmp_path):
    # faust recovers the changelog up to its end offsets, and the events are read back to theirs.
    kafka_broker.require("list_offsets_log_end")
    cfg = load_config()
    history = load_history(history_dir, cfg.symbols).filter(pl.col("date") >= date(2005, 1, 1))
    expected = run_backtest(cfg, history).as_published("replay")
    groups = list(daily_ticks(history, cfg.settings.session_timezone))
    half = len(groups) // 2

    broker = kafka_broker  # every topic made, with the shipped config's partitions

    async def worker_run(part):
        rt = EngineRole(cfg, broker_url=broker.url, datadir=str(tmp_path), origin="replay")
        await rt.start()
        sent = 0
        for _, ticks in part:
            while sent - rt.pipeline.counters["records_in"] > 200:
                await asyncio.sleep(0.005)
            await rt.pipeline.ticks_topic.send(key=b"replay", value=encode_ticks(ticks))
            sent += 1
        while rt.pipeline.counters["records_in"] < sent or not rt.pipeline.idle():
            await asyncio.sleep(0.02)
        await rt.stop()  # a clean stop: offsets committed, state flushed
        return rt.pipeline.counters

    first = await worker_run(groups[:half])
    second = await worker_run(groups[half:])  # a new worker: state comes back from the changelog
    records = await asyncio.get_running_loop().run_in_executor(
        None, lambda: list(read_topic(broker.bootstrap, EVENTS)))
    got = canonical_order([orjson.loads(v) for _, v, _, _ in records], cfg)
    ids = [e["event_id"] for e in got]
    assert len(ids) == len(set(ids)), "an event was emitted twice"
    assert got == expected
    assert first["records_in"] == half and second["records_in"] == len(groups) - half
    assert second["duplicates_skipped"] == 0
