"""The ops endpoints scraped by a real Prometheus (Debian's package; tests/prometheus_peer.py),
and the shipped Prometheus config and alert rules checked by promtool.

The ops servers run in this test's event loop on 127.0.0.1; Prometheus scrapes them every second
and the assertions read its query API, so what is proven is what an operator would see."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ratiowatch.ops import Health, HttpAddress, Metrics, OpsServer
from prometheus_peer import PrometheusPeer, promtool_binary  # a helper module in tests/, which pytest puts on sys.path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "prometheus"
LOOPBACK = HttpAddress("127.0.0.1", 0)
TOKEN = "prometheus-scrape-token"


@pytest.fixture
async def ops_servers():
    servers: list[OpsServer] = []

    async def start(metrics: Metrics, health: Health | None = None, **kw) -> str:
        server = await OpsServer(metrics, health or Health(), **kw).start(LOOPBACK)
        servers.append(server)
        return f"127.0.0.1:{server.port}"

    yield start
    for s in servers:
        await s.close()


async def test_prometheus_sums_ticks_over_two_engines_and_follows_counters_and_readiness(tmp_path, ops_servers):
    one, two = Metrics(), Metrics()
    one.ticks_in.inc(5)
    two.ticks_in.inc(7)
    one.dead_lettered.labels(reason="late").inc(2)
    two.dead_lettered.labels(reason="bad_price").inc(1)
    health_two = Health()
    recovered = health_two.ready_flag("engine", "state recovery in progress")
    two.watch_health(health_two)
    targets = [await ops_servers(one), await ops_servers(two, health_two)]

    async with PrometheusPeer(tmp_path, {"engine": targets}) as prom:
        up = await prom.wait_targets_up()
        assert sorted(t["labels"]["instance"] for t in up) == sorted(targets)
        await prom.wait_query("count(ratiowatch_ticks_in_total)", lambda v: v == 2, "both engines scraped")
        assert await prom.query("sum(ratiowatch_ticks_in_total)") == 12
        assert await prom.series("sum by (reason) (ratiowatch_ticks_dead_lettered_total)") == {
            (("reason", "bad_price"),): 1.0, (("reason", "late"),): 2.0}
        assert await prom.query('ratiowatch_ready{check="engine"}') == 0

        one.ticks_in.inc(3)  # a live value: the next scrapes see it
        recovered.ready()
        await prom.wait_query("sum(ratiowatch_ticks_in_total)", lambda v: v == 15, "the new total")
        await prom.wait_query('ratiowatch_ready{check="engine"}', lambda v: v == 1, "engine ready")


async def test_consumer_lag_is_read_at_scrape_time_and_a_partition_gone_leaves_no_stale_value(tmp_path, ops_servers):
    lag = {0: 120, 1: 40}
    metrics = Metrics()
    metrics.add_lag_source("ratiowatch", lambda: [("ratiowatch-ticks-by-shard", p, n) for p, n in lag.items()])
    target = await ops_servers(metrics)

    async with PrometheusPeer(tmp_path, {"engine": [target]}) as prom:
        await prom.wait_targets_up()
        await prom.wait_query("sum(ratiowatch_consumer_lag)", lambda v: v == 160, "both partitions' lag")
        assert await prom.query('ratiowatch_consumer_lag{partition="1"}') == 40
        # A rebalance moves partition 1 elsewhere and partition 0 catches up.
        del lag[1]
        lag[0] = 0
        await prom.wait_query('ratiowatch_consumer_lag{partition="1"}', lambda v: v is None, "partition 1 gone")
        assert await prom.query('ratiowatch_consumer_lag{partition="0"}') == 0


async def test_prometheus_scrapes_a_token_protected_server_only_with_the_token(tmp_path, ops_servers):
    metrics = Metrics()
    metrics.add_role("web")
    target = await ops_servers(metrics, token=TOKEN)
    jobs = {"with-token": [target], "without-token": [target]}
    async with PrometheusPeer(tmp_path, jobs, tokens={"with-token": TOKEN}) as prom:
        await prom.wait_targets_up(["with-token"])
        down = await prom.wait_targets("down", ["without-token"])
        assert "401" in down[0]["lastError"]
        assert await prom.query('ratiowatch_role_info{job="with-token"}') == 1
        assert await prom.query('up{job="without-token"}') == 0


# --- the shipped config and rules --------------------------------------------------------------------

def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool_binary(), *args], capture_output=True, text=True, timeout=120)


def test_the_example_prometheus_config_is_valid():
    r = promtool("check", "config", "--syntax-only", str(EXAMPLES / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_example_alert_rules_are_valid_and_fire_as_their_unit_tests_say():
    r = promtool("check", "rules", str(EXAMPLES / "rules.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
    r = promtool("test", "rules", str(EXAMPLES / "rules_test.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
