"""`ratiowatch bench` at a small size: every phase runs and accounts for every tick it was sent.

No timing is asserted (the machine decides those); the counts, the shape of the JSON and the
generated market are.
"""

from __future__ import annotations

import orjson
import pytest

from ratiowatch.bench import format_table, run_bench
from ratiowatch.bench_market import BenchMarket, batch_records, single_records
from ratiowatch.cli import main

pytestmark = pytest.mark.broker

TICKS = 20_000
BATCH = 200


def test_generated_market_is_a_feed_of_the_scenarios_symbols_in_session_sized_batches():
    m = BenchMarket(None, 40, ticks_per_session=3_000)
    shipped = {"small-caps-outperform", "dollar-below-100", "curve-uninverts"}
    assert shipped <= {s.id for s in m.config.scenarios}
    assert len(m.config.scenarios) == 9 + 20  # the shipped scenarios + one pair per two symbols
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
    singles = single_records(ticks, 4)
    assert [orjson.loads(r[2])["ts_ms"] for r in singles] == [t[2] for t in ticks]
    # one partition per symbol, so each symbol's ticks stay in order
    by_symbol: dict[bytes, set[int]] = {}
    for r in singles:
        by_symbol.setdefault(r[1], set()).add(r[0])
    assert all(len(parts) == 1 for parts in by_symbol.values())
    # the same seed gives the same market in another process
    again = BenchMarket(None, 40, ticks_per_session=3_000)
    assert again.ticks(10_000) == ticks
    assert [s.trigger for s in again.config.scenarios] == [s.trigger for s in m.config.scenarios]


@pytest.fixture(scope="module")
def result():
    return run_bench(ticks=TICKS, scenarios=(10, 100), latency_seconds=1.0)


def test_every_phase_processes_every_tick_sent(result):
    lim, base, eng = result["limit"], result["baseline"], result["engine"]
    for r in (lim, lim["single_tick_records"], eng, eng["single_tick_records"]):
        assert r["ticks"] == r["sent"] == TICKS
    assert lim["records"] == eng["records"] == TICKS // BATCH
    assert lim["single_tick_records"]["records"] == eng["single_tick_records"]["records"] == TICKS
    for r in (base, base["single_tick_records"]):
        assert r["ticks"] == r["sent"] == TICKS  # the baseline's cap (25,000) is above this size
        assert 0 < r["ratios"] <= TICKS
    for r in (eng, eng["single_tick_records"], *eng["by_scenarios_detail"].values(), eng["latency"]):
        c = r["counters"]
        assert c["ticks_in"] == r["ticks"] == r["sent"]
        assert c["ticks_routed"] == r["ticks"]  # every generated tick is valid and subscribed
        assert c.get("dead_lettered", 0) == 0
        assert c["shard_copies_in"] == c["shard_copies_sent"] == c["shard_ticks_applied"] >= r["ticks"]
        assert c["records_in"] == r["records"]
    for count, d in eng["by_scenarios_detail"].items():
        assert d["ticks"] == TICKS // 2 and d["scenarios"] == int(count)


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
    orjson.dumps(result)  # one JSON object
    table = format_table(result)
    for line in ("limit     aiokafka    batches ", "baseline  faust       single ", "engine    ratiowatch  batches ",
                 "latency", "peak RSS"):
        assert line in table
    assert f"{TICKS:,}" in table


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--scenarios", "10,x"])
    assert e.value.code == 2
    assert "whole numbers" in capsys.readouterr().err
    assert main(["bench", "--latency-seconds", "0"]) == 2
