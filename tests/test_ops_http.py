"""The ops HTTP server: /healthz, /readyz, /metrics, token rules, the --http flag and its
non-loopback refusal, and the web role's page and /ws mounted on the same port. Real HTTP and
websocket connections on 127.0.0.1; time is injected where a test needs it to move."""

from __future__ import annotations

import argparse
import asyncio
import http.client

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

import ratiowatch.ops as ops
from ratiowatch.errors import ConfigError
from ratiowatch.ops import (Health, HttpAddress, HttpExposureError, Metrics, OpsServer, add_http_argument,
                            http_settings, parse_http_address)
from ratiowatch.streams.live import LiveHub

TOKEN = "ops-token-for-tests"
LOOPBACK = HttpAddress("127.0.0.1", 0)


def get(port: int, path: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


async def aget(port, path, headers=None, method="GET"):
    return await asyncio.to_thread(get, port, path, headers, method)


@pytest.fixture
async def start():
    servers: list[OpsServer] = []

    async def start(metrics=None, health=None, **kw) -> OpsServer:
        server = await OpsServer(metrics or Metrics(), health or Health(), **kw).start(LOOPBACK)
        servers.append(server)
        return server

    yield start
    for s in servers:
        await s.close()


def samples(body: bytes) -> dict[tuple[str, tuple], float]:
    """Parse an exposition with prometheus_client's own parser: (name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


# --- health and readiness ---------------------------------------------------------------------------

async def test_readyz_is_503_naming_each_failing_check_then_200_once_all_pass(start):
    health = Health()
    topic_read = health.ready_flag("scenario-status", "scenario-status not read to its end")
    assigned = {"ok": False}
    health.add_ready_check("engine", lambda: None if assigned["ok"] else "no partitions assigned yet")
    server = await start(health=health)

    code, h, body = await aget(server.port, "/readyz")
    assert code == 503 and h["content-type"] == "application/json"
    answer = orjson.loads(body)
    assert answer["status"] == "failing"
    assert answer["checks"]["scenario-status"] == {"ok": False, "reason": "scenario-status not read to its end"}
    assert answer["checks"]["engine"] == {"ok": False, "reason": "no partitions assigned yet"}
    assert answer["checks"]["heartbeat"] == {"ok": True, "reason": None}

    topic_read.ready()
    code, _, body = await aget(server.port, "/readyz")
    assert code == 503 and list(k for k, v in orjson.loads(body)["checks"].items() if not v["ok"]) == ["engine"]

    assigned["ok"] = True
    code, _, body = await aget(server.port, "/readyz")
    assert code == 200 and orjson.loads(body)["status"] == "ok"


async def test_healthz_fails_when_the_heartbeat_is_older_than_its_bound(start):
    clock = {"t": 1000.0}
    health = Health(stall_after_s=10, now=lambda: clock["t"])
    # A heartbeat that never comes within the test: only the injected clock moves.
    server = await start(health=health, heartbeat_s=3600)
    code, _, body = await aget(server.port, "/healthz")
    assert code == 200 and orjson.loads(body)["checks"]["heartbeat"]["ok"] is True
    clock["t"] += 10.5
    code, _, body = await aget(server.port, "/healthz")
    assert code == 503
    assert orjson.loads(body)["checks"]["heartbeat"]["reason"] == "event loop heartbeat is 10.5s old (limit 10s)"
    code, _, _ = await aget(server.port, "/readyz")
    assert code == 503  # a process that is not alive is not ready either
    health.beat()
    assert (await aget(server.port, "/healthz"))[0] == 200


async def test_the_heartbeat_task_keeps_a_live_process_healthy():
    health = Health(stall_after_s=5)
    task = asyncio.create_task(health.heartbeat(0.01))
    try:
        stamped = health._last_beat
        while health._last_beat == stamped:  # until the task has stamped at least once
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert health.liveness().ok and health.loop_lag_s >= 0


def test_a_check_that_raises_fails_with_its_error_instead_of_breaking_the_answer():
    health = Health()
    health.add_ready_check("broken", lambda: 1 / 0)
    v = health.readiness()
    assert not v.ok and v.checks["broken"].reason == "check raised ZeroDivisionError: division by zero"
    with pytest.raises(ValueError, match="already registered"):
        health.add_ready_check("broken", lambda: None)


# --- metrics and tokens -----------------------------------------------------------------------------

async def test_metrics_need_the_token_and_health_stays_open(start):
    metrics = Metrics()
    metrics.ticks_in.inc(42)
    server = await start(metrics=metrics, token=TOKEN)
    for path, headers in [("/metrics", None), ("/metrics?token=wrong", None),
                          ("/metrics", {"Authorization": "Bearer wrong"}), ("/metrics?token=", None)]:
        code, h, _ = await aget(server.port, path, headers)
        assert code == 401, (path, headers)
        assert h["www-authenticate"].startswith("Bearer")
    for path, headers in [("/metrics", {"Authorization": f"Bearer {TOKEN}"}), (f"/metrics?token={TOKEN}", None)]:
        code, h, body = await aget(server.port, path, headers)
        assert code == 200 and h["content-type"].startswith("text/plain; version=0.0.4")
        assert samples(body)[("ratiowatch_ticks_in_total", ())] == 42
    assert (await aget(server.port, "/healthz"))[0] == 200
    assert (await aget(server.port, "/readyz"))[0] == 200
    counted = samples((await aget(server.port, f"/metrics?token={TOKEN}"))[2])
    assert counted[("ratiowatch_http_requests_total", (("code", "401"), ("endpoint", "/metrics")))] == 4
    assert counted[("ratiowatch_http_requests_total", (("code", "200"), ("endpoint", "/healthz")))] == 1


async def test_openmetrics_when_the_scraper_asks_for_it(start):
    server = await start()
    code, h, body = await aget(server.port, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert code == 200 and h["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


async def test_head_answers_headers_only_and_other_methods_are_refused(start):
    server = await start()
    code, h, body = await aget(server.port, "/healthz", method="HEAD")
    assert (code, h["content-length"], body) == (200, "0", b"")
    for method in ("POST", "PUT", "DELETE"):
        code, h, _ = await aget(server.port, "/metrics", method=method)
        assert code == 405 and h["allow"] == "GET, HEAD"


async def test_cross_origin_pages_and_unknown_paths_are_refused(start):
    server = await start()
    code, _, _ = await aget(server.port, "/healthz", {"Origin": "http://evil.example"})
    assert code == 403
    code, _, body = await aget(server.port, "/nope")
    assert code == 404 and b"/metrics" in body and b"/readyz" in body
    with pytest.raises(InvalidStatus):  # no websocket without the page mounted
        async with connect(f"ws://127.0.0.1:{server.port}/ws"):
            pass


async def test_a_broken_lag_source_is_counted_and_does_not_blank_the_scrape(start):
    metrics = Metrics()
    metrics.add_lag_source("engine", lambda: [("ratiowatch-ticks-by-shard", 3, 17)])

    def broken():
        raise ConnectionError("consumer gone")

    metrics.add_lag_source("notify", broken)
    server = await start(metrics=metrics)
    got = samples((await aget(server.port, "/metrics"))[2])
    lag = ("ratiowatch_consumer_lag", (("group", "engine"), ("partition", "3"), ("topic", "ratiowatch-ticks-by-shard")))
    assert got[lag] == 17
    assert got[("ratiowatch_collector_errors_total", (("collector", "consumer_lag:notify"),))] == 1
    assert not any(name == "ratiowatch_consumer_lag" and ("group", "notify") in labels for name, labels in got)


def test_metrics_objects_are_isolated_and_reject_unknown_roles():
    a, b = Metrics(), Metrics()
    a.ticks_in.inc(3)
    a.add_role("engine")
    assert a.value("ratiowatch_ticks_in_total") == 3 and b.value("ratiowatch_ticks_in_total") == 0
    assert a.value("ratiowatch_role_info", {"role": "engine"}) == 1
    assert b.value("ratiowatch_role_info", {"role": "engine"}) is None
    with pytest.raises(ValueError, match="unknown role"):
        a.add_role("worker")


# --- the --http flag ------------------------------------------------------------------------------

def test_http_flag_parses_host_port_forms_and_off():
    p = argparse.ArgumentParser()
    add_http_argument(p, 9464)
    assert p.parse_args([]).http == HttpAddress("127.0.0.1", 9464)
    assert p.parse_args(["--http", "0.0.0.0:9000"]).http == HttpAddress("0.0.0.0", 9000)
    assert p.parse_args(["--http", ":9001"]).http == HttpAddress("127.0.0.1", 9001)
    assert p.parse_args(["--http", "9002"]).http == HttpAddress("127.0.0.1", 9002)
    assert p.parse_args(["--http", "[::1]:9003"]).http == HttpAddress("::1", 9003)
    assert p.parse_args(["--http", "off"]).http is None
    for bad in ["127.0.0.1:http", "127.0.0.1:70000", "::1:9000", "[::1]9000"]:
        with pytest.raises(SystemExit) as e:
            p.parse_args(["--http", bad])
        assert e.value.code == 2


def test_a_non_loopback_http_address_without_a_token_is_refused():
    for addr in ["0.0.0.0:9464", "[::]:9464", "10.1.2.3:9464", "metrics.internal:9464"]:
        with pytest.raises(HttpExposureError) as e:
            http_settings(parse_http_address(addr), environ={})
        assert isinstance(e.value, ConfigError)  # the CLI's exit code 2
        assert str(e.value).startswith(f"--http {parse_http_address(addr)}: ")
        assert "RATIOWATCH_TOKEN" in str(e.value)
    assert http_settings(parse_http_address("0.0.0.0:9464"), environ={"RATIOWATCH_TOKEN": TOKEN})[1] == TOKEN
    with pytest.raises(HttpExposureError):  # a blank token protects nothing
        http_settings(parse_http_address("0.0.0.0:9464"), environ={"RATIOWATCH_TOKEN": " "})
    for addr in ["127.0.0.1:1", "127.9.9.9:1", "[::1]:1", "localhost:1"]:
        assert http_settings(parse_http_address(addr), environ={}) == (parse_http_address(addr), None)
    assert http_settings(None, environ={}) == (None, None)


async def test_the_server_itself_refuses_to_bind_a_non_loopback_address_without_a_token():
    with pytest.raises(HttpExposureError, match="needs a token"):
        await OpsServer(Metrics(), Health()).start(HttpAddress("0.0.0.0", 0))


# --- the web role mounted on the same port ----------------------------------------------------------

async def test_page_status_and_ws_share_the_port_with_metrics(start):
    hub = LiveHub(scenarios=["a", "b"], min_interval_ms=0)
    hub.publish_status({"scenario": "a", "title": "A", "trigger": {"state": "armed"}})
    metrics = Metrics()
    metrics.watch_live(hub)
    server = await start(metrics=metrics, token=TOKEN, live=hub)
    port = server.port
    assert (await aget(port, "/"))[0] == 401 and (await aget(port, "/status"))[0] == 401
    code, h, body = await aget(port, f"/?token={TOKEN}")
    assert code == 200 and h["content-type"].startswith("text/html") and "default-src 'none'" in h["content-security-policy"]
    assert (await aget(port, "/status.js"))[0] == 200  # code, not data: open as on the hub's own server
    code, _, body = await aget(port, "/status", {"Authorization": f"Bearer {TOKEN}"})
    assert code == 200 and [s["scenario"] for s in orjson.loads(body)["scenarios"]] == ["a"]
    code, _, body = await aget(port, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert code == 200 and b"ratiowatch_ticks_in_total" in body

    async with connect(f"ws://127.0.0.1:{port}/ws?token={TOKEN}", origin=f"http://127.0.0.1:{port}") as ws:
        first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (first["type"], first["scenario"]) == ("status", "a")
        hub.publish_event({"scenario": "a", "kind": "fired"})
        event = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (event["type"], event["kind"]) == ("event", "fired")
    async with connect(f"ws://127.0.0.1:{port}/ws") as ws:  # no token: closed with 1008
        with pytest.raises(ConnectionClosedError) as e:
            await asyncio.wait_for(ws.recv(), 10)
        assert e.value.rcvd.code == 1008
    assert hub.stats["unauthorized"] == 3 and hub.stats["connections"] == 2
    with pytest.raises(InvalidStatus):  # a page of another site may not open the stream
        async with connect(f"ws://127.0.0.1:{port}/ws?token={TOKEN}", origin="http://evil.example"):
            pass
    assert hub.stats["bad_origin"] == 1
    got = samples((await aget(port, f"/metrics?token={TOKEN}"))[2])
    assert got[("ratiowatch_live_unauthorized_total", ())] == 3
    assert got[("ratiowatch_live_bad_origin_total", ())] == 1
    assert got[("ratiowatch_live_events_total", ())] == 1
    assert got[("ratiowatch_http_requests_total", (("code", "101"), ("endpoint", "/ws")))] == 2


def test_the_package_exports_what_it_lists():
    import ratiowatch.ops.faust_sensors as faust_sensors

    for module in (ops, ops.metrics, ops.health, ops.http, faust_sensors):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
