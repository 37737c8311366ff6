"""`ratiowatch bench` at a small size: every phase runs and accounts for every tick it was sent.

No timing is asserted (the machine decides those); the counts, the shape of the JSON and the
generated market are.
"""

from __future__ import annotations

import orjson
import pytest

from ratiowatch.bench.market import (BenchMarket, batch_records, single_records, source_single_records,
                                     symbol_batch_records)
from ratiowatch.bench.report import format_table
from ratiowatch.bench.run import run_bench
from ratiowatch.cli import main
from ratiowatch.config import load_config

pytestmark = pytest.mark.broker

TICKS = 20_000
BATCH = 200


def test_generated_market_is_a_feed_of_the_scenarios_symbols_in_session_sized_batches():
    m = BenchMarket(None, 40, ticks_per_session=3_000)
    shipped = {"small-caps-outperform", "dollar-below-100", "curve-uninverts"}
    assert shipped <= {s.id for s in m.config.scenarios}
    assert len(m.config.scenarios) == len(load_config().scenarios) + 20  # the shipped ones + one pair per two symbols
    ticks = m.ticks(10_000)
    assert {t[0] for t in ticks} == set(m.config.symbols)  # the subscription, nothing else
    assert [t[2] for t in ticks] == sorted(t[2] for t in ticks)  # event time never goes back
    assert len({t[3] for t in ticks}) == 4  # 10,000 ticks in sessions of 3,000
    records = batch_records(ticks, 128, 4)
    assert sum(r[3] for r in records) == len(ticks)
    session_of_ts = {t[2]: t[3] for t in ticks}
    for r in records:
        items = orjson.loads(r[2])
        assert len(items) == r[3] <= 128
        assert len({session_of_ts[it["ts_ms"]] for it in items}) == 1, "a vendor batch spans two sessions"
    assert {r[1] for r in records} == {b"vendor-%d" % p for p in range(4)}  # keyed by source
    assert all(r[1] == b"vendor-%d" % r[0] for r in records)
    singles = single_records(ticks, 4)
    assert [orjson.loads(r[2])["ts_ms"] for r in singles] == [t[2] for t in ticks]
    # keyed by symbol: one partition per symbol, so each symbol's ticks stay in order
    for recs in (singles, symbol_batch_records(ticks, 128, 4)):
        by_symbol: dict[bytes, set[int]] = {}
        for r in recs:
            by_symbol.setdefault(r[1], set()).add(r[0])
            doc = orjson.loads(r[2])
            assert {it["symbol"] for it in (doc if isinstance(doc, list) else [doc])} == {r[1].decode()}
        assert all(len(parts) == 1 for parts in by_symbol.values())
        assert len({p for parts in by_symbol.values() for p in parts}) == 4  # spread over every partition
    # the default partitioner's partition (murmur2, as the Java client and aiokafka compute it)
    from aiokafka.partitioner import DefaultPartitioner

    assert all(r[0] == DefaultPartitioner()(r[1], [0, 1, 2, 3], None) for r in singles)
    # cut from the same vendor messages: the same ticks in the same order, message by message
    sym_batches = symbol_batch_records(ticks, 128, 4)
    assert sum(r[3] for r in sym_batches) == len(ticks)
    assert sorted(t for r in sym_batches for t in map(tuple, (d.values() for d in orjson.loads(r[2])))) == \
        sorted((t[0], t[1], t[2]) for t in ticks)
    src_singles = source_single_records(ticks, 128, 4)
    assert [orjson.loads(r[2])["ts_ms"] for r in src_singles] == [t[2] for t in ticks]
    assert [(r[0], r[1]) for r in src_singles] == [(b[0], b[1]) for b in records for _ in range(b[3])]
    # the same seed gives the same market in another process
    again = BenchMarket(None, 40, ticks_per_session=3_000)
    assert again.ticks(10_000) == ticks
    assert [s.trigger for s in again.config.scenarios] == [s.trigger for s in m.config.scenarios]


@pytest.fixture(scope="module")
def result():
    return run_bench(ticks=TICKS, scenarios=(10, 100), latency_seconds=1.0, latency_warmup_seconds=0.5)


def test_every_phase_processes_every_tick_sent(result):
    lim, base, eng = result["limit"], result["baseline"], result["engine"]
    for r in (lim, lim["single_tick_records"], eng, eng["single_tick_records"]):
        assert r["ticks"] == r["sent"] == TICKS
    assert lim["records"] == eng["records"] == TICKS // BATCH
    assert lim["single_tick_records"]["records"] == eng["single_tick_records"]["records"] == TICKS
    for r in (base, base["single_tick_records"]):
        assert r["ticks"] == r["sent"] == TICKS  # the baseline's cap (25,000) is above this size
        assert 0 < r["ratios"] <= TICKS
    phases = eng["keyed"]["phases"]
    assert set(phases) == {"by_symbol.batches", "by_source.single", "latency.by_symbol.batches",
                           "latency.by_source.single", "latency.by_symbol.single"}
    stream = BenchMarket(None, 500).ticks(TICKS)
    assert lim["symbol_batches"]["ticks"] == lim["symbol_batches"]["sent"] == TICKS
    assert lim["symbol_batches"]["records"] == phases["by_symbol.batches"]["records"] \
        == len(symbol_batch_records(stream, BATCH, 8)) > TICKS // BATCH
    assert phases["by_source.single"]["records"] == TICKS
    for name in ("by_symbol.batches", "by_source.single"):
        assert phases[name]["ticks"] == phases[name]["sent"] == TICKS
    for name in ("latency.by_symbol.batches", "latency.by_source.single", "latency.by_symbol.single"):
        r = phases[name]
        assert r["ticks"] == r["sent"] == eng["latency"]["ticks"]  # the same latency stream, keyed otherwise
        assert r["events_read"] == r["events"] == r["counters"]["events"] > 0
        assert r["scenarios"] == eng["latency"]["scenarios"]
    assert phases["latency.by_symbol.single"]["records"] == phases["latency.by_source.single"]["records"] \
        == eng["latency"]["ticks"]
    for r in (eng, eng["single_tick_records"], *eng["by_scenarios_detail"].values(), eng["latency"], *phases.values()):
        c = r["counters"]
        assert c["ticks_in"] == r["ticks"] == r["sent"]
        assert c["ticks_routed"] == r["ticks"]  # every generated tick is valid and subscribed
        assert c.get("dead_lettered", 0) == 0
        assert c["shard_copies_in"] == c["shard_copies_sent"] == c["shard_ticks_applied"] >= r["ticks"]
        assert c["records_in"] == r["records"]
    shipped = len(load_config().scenarios)
    for count, d in eng["by_scenarios_detail"].items():
        assert d["ticks"] == TICKS // 2 and d["scenarios"] == max(int(count), shipped)  # the shipped ones at least


def test_json_has_every_figure_the_report_promises(result):
    for name in ("limit", "baseline", "engine"):
        r = result[name]
        assert {"ticks", "seconds", "ticks_per_s"} <= set(r)
        assert r["ticks_per_s"] > 0 and r["seconds"] > 0
    eng = result["engine"]
    assert set(eng["latency_ms"]) == {"p50", "p99", "max"}
    assert eng["latency"]["latency_samples"] > 0  # events came back from `events` and were timed
    assert eng["latency"]["scenarios"] == 1_000  # the latency market (shipped + generated scenarios)
    assert eng["latency"]["events_read"] == eng["latency"]["events"] == eng["latency"]["counters"]["events"]
    assert 0 < eng["latency_ms"]["p50"] <= eng["latency_ms"]["p99"] <= eng["latency_ms"]["max"]
    assert eng["peak_rss_mb"] > 0
    assert set(eng["by_scenarios"]) == {"10", "100"} and all(v > 0 for v in eng["by_scenarios"].values())
    assert eng["single_tick_records"]["ticks_per_s"] > 0
    assert eng["vs_limit"] > 0 and eng["vs_baseline"] > 0
    assert eng["single_tick_records"]["vs_limit"] > 0
    # where the latency phase's time went, event by event, in the worker
    b = eng["latency"]["latency_breakdown_ms"]
    assert 0 < b["events_traced"] <= eng["latency"]["events"]
    assert b["released_by_timer"] + b["released_by_arrival"] == b["events_traced"]
    assert b["commit_writes"]["count"] >= 0 and set(b["commit_writes"]) == {"count", "p50", "p99", "max", "flush_ms"}
    for part in ("ticks_hop", "shard_hop", "watermark_wait", "evaluation", "produce_to_send"):
        assert set(b[part]) == {"p50", "p99", "max"} and b[part]["p50"] is not None
    # each part is a cut of the whole: none exceeds it (same clock, same event)
    assert max(b[p]["max"] for p in ("ticks_hop", "shard_hop", "watermark_wait", "evaluation")) \
        <= b["produce_to_send"]["max"]
    # the latency phase again with grace_ms 0: the same stream, every event read back and timed
    g = eng["latency_grace_0"]
    assert set(g["latency_ms"]) == {"p50", "p99", "max"} and g["latency_samples"] > 0
    assert 0 < g["latency_ms"]["p50"] <= g["latency_ms"]["p99"] <= g["latency_ms"]["max"]
    assert g["corrections"] >= 0 and g["latency_breakdown_ms"]["events_traced"] > 0
    K = eng["keyed"]
    for keying in ("by_source", "by_symbol"):
        for shape in ("batches", "single"):
            x = K[keying][shape]
            assert x["ticks"] == TICKS and x["ticks_per_s"] > 0 and x["vs_limit"] > 0
            assert x["ticks_per_record"] == round(TICKS / x["records"], 2)
            assert set(x["latency_ms"]) == {"p50", "p99", "max"} and x["latency_samples"] > 0
            assert 0 < x["latency_ms"]["p50"] <= x["latency_ms"]["p99"] <= x["latency_ms"]["max"]
            assert x["pending_max"] >= 0 and x["latency_pending_max"] >= 0
            assert x["offered_seconds"] == 1.5 and x["latency_phase_seconds"] > 0  # 0.5 s + 1 s at 10,000 ticks/s
    assert K["by_source"]["batches"]["ticks_per_s"] == eng["ticks_per_s"]  # the engine's main phases, reused
    assert K["by_symbol"]["single"]["ticks_per_s"] == eng["single_tick_records"]["ticks_per_s"]
    assert K["by_source"]["batches"]["latency_ms"] == eng["latency_ms"]
    assert K["by_source"]["batches"]["pending_max"] == eng["counters"].get("pending_max", 0)
    for shape in ("batches", "single"):
        rt = K["symbol_vs_source"][shape]
        assert set(rt) == {"ticks_per_s", "ticks_per_cpu_s", "vs_limit", "latency_p50", "latency_p99", "latency_max"}
        sym, src = K["by_symbol"][shape], K["by_source"][shape]
        assert rt["ticks_per_s"] == round(sym["ticks_per_s"] / src["ticks_per_s"], 2)
    orjson.loads(orjson.dumps(result))  # one JSON object
    table = format_table(result)
    for line in ("limit     aiokafka    batches ", "baseline  faust       single ", "engine    ratiowatch  batches ",
                 "latency", "peak RSS", "event time, what the watermark costs", "source    batches ",
                 "symbol    single ", "keyed by symbol / by source, batches: ticks/s", "where it goes, ms p50 / p99",
                 "with grace_ms 0 "):
        assert line in table
    assert "peers" not in result and "Bytewax" not in table  # only with --peers
    assert f"{TICKS:,}" in table


def test_peers_run_the_same_stream_or_are_reported_as_not_installed():
    """Each peer installed for this interpreter processes every tick sent, as a ratio to the given
    limit; one that is not installed is reported so, not as a failure."""
    from ratiowatch.bench.peers import PEERS, installed, run_peers
    from ratiowatch.bench.report import format_peers

    market = BenchMarket(None, 40, ticks_per_session=3_000)
    stream = market.ticks(2_000)
    peers = run_peers(single_records(stream, 4), 4, market.partners(), 100_000.0)
    versions = installed(peers["python"])
    assert set(versions) == set(PEERS)
    for peer in PEERS:
        r = peers[peer]
        if versions[peer] is None:
            assert r == {"installed": False}
            continue
        assert "error" not in r, r
        assert r["ticks"] == r["sent"] == r["records"] == 2_000
        assert r["version"] == versions[peer] and 0 < r["ratios"] <= 2_000
        assert r["vs_limit"] == round(r["ticks_per_s"] / 100_000.0, 3)
    lim = {"ticks": 2_000, "seconds": 0.01, "ticks_per_s": 100_000, "ticks_per_cpu_s": 100_000}
    eng = {**lim, "ticks_per_s": 50_000, "vs_limit": 0.5}
    lines = format_peers({"limit": {"single_tick_records": lim}, "engine": {"single_tick_records": eng},
                          "peers": {**peers, "quixstreams": {"installed": False}}})
    assert any(line.startswith("Quix Streams") and "not installed" in line for line in lines)
    assert lines[-1].startswith("engine (ratiowatch)") and lines[-1].rstrip().endswith("0.50")


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--scenarios", "10,x"])
    assert e.value.code == 2
    assert "whole numbers" in capsys.readouterr().err
    assert main(["bench", "--latency-seconds", "0"]) == 2
    assert main(["bench", "--peers-python", "/usr/bin/python3"]) == 2  # only with --peers


async def test_a_worker_whose_faust_app_crashed_is_reported_not_waited_for(tmp_path):
    """A crashed app never processes the rest of the ticks: the phase must fail at once with the
    reason (the parent then exits 1 naming the phase) instead of waiting for its deadline."""
    from ratiowatch.bench.workers import _check_alive
    from ratiowatch.streams.app import create_app

    app = create_app("kafka://127.0.0.1:9", partitions=1, app_id="bench-crash", datadir=str(tmp_path))
    _check_alive(app)  # alive: nothing raised
    await app.crash(RuntimeError("MessageSizeTooLargeError: the message is 1154570 bytes"))
    with pytest.raises(RuntimeError, match=r"crashed: RuntimeError: MessageSizeTooLargeError"):
        _check_alive(app)
