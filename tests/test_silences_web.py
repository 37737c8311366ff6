"""The web role and silences, on the embedded broker: the silence API on the ops server (token
rules, bad input, writes reaching the topic), "muted" in /status and on the page in headless
Chromium, and a silence written by another process (the command) showing up on its own."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import orjson
import pytest
from kafka import KafkaProducer

from ratiowatch.agents.engine import ShardEngine
from ratiowatch.commands._control import write_silence
from ratiowatch.config import load_config
from ratiowatch.notifiers.silences import encode, new_silence
from ratiowatch.ops.health import Health
from ratiowatch.ops.http import HttpAddress, OpsServer
from ratiowatch.ops.metrics import Metrics
from ratiowatch.roles.web import WebRole
from ratiowatch.streams.topics import SCENARIO_STATUS, SILENCES
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.clients import kafka_python_kwargs_for
from ratiowatch.streams.live import LiveHub
from ratiowatch.streams.readback import read_topic
from test_status_page_browser import chromium_page, require_browser

pytestmark = pytest.mark.broker
FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "silence-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _status(cfg) -> dict:
    eng, states, t0 = ShardEngine(cfg.scenarios, cfg.settings), {}, 1_767_000_000_000
    eng.apply(states, t0, [("SPY", 101.0, t0)])
    return eng.engines["spy-level"].status(states["spy-level"])


async def _until(cond, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_silence_api_status_and_page():
    require_browser()  # before anything starts: a missing browser fails at once
    cfg = load_config(FIXTURES / "levels.yaml")
    with EmbeddedBroker() as broker:
        ensure_topics(broker, cfg.settings.partitions)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, **kafka_python_kwargs_for())
        producer.send(SCENARIO_STATUS, key=b"spy-level", value=orjson.dumps(_status(cfg)))
        producer.send(SILENCES, key=b"junk", value=b"[]")  # written by hand: counted, skipped
        producer.flush()
        producer.close()
        metrics, health = Metrics(), Health()
        hub = LiveHub(scenarios=[s.id for s in cfg.scenarios])
        web = WebRole(hub, bootstrap=broker.bootstrap, metrics=metrics, health=health,
                      scenarios=[(s.id, s.title) for s in cfg.scenarios])
        await web.start()
        with_token = await OpsServer(metrics, health, token=TOKEN, live=hub).start(HttpAddress("127.0.0.1", 0))
        no_token = await OpsServer(metrics, Health(), live=hub).start(HttpAddress("127.0.0.1", 0))
        base, open_base = f"http://127.0.0.1:{with_token.port}", f"http://127.0.0.1:{no_token.port}"
        try:
            assert metrics.value("ratiowatch_bad_records_total", {"role": "web", "topic": SILENCES}) == 1
            async with aiohttp.ClientSession() as http:
                async def call(method, url, headers=AUTH, **params):
                    async with http.request(method, url, headers=headers, params=params) as r:
                        body = await r.read()
                        return r.status, (orjson.loads(body) if r.content_type == "application/json" else body)

                async def status_of(sid):
                    _code, doc = await call("GET", f"{base}/status")
                    return next(s for s in doc["scenarios"] if s["scenario"] == sid)

                await _until(lambda: hub.snapshot().get("spy-level"), "status read")
                code, doc = await call("GET", f"{base}/api/scenarios")
                assert code == 200 and doc == {"scenarios": [
                    {"id": "spy-level", "title": "SPY above 100", "muted": None},
                    {"id": "iwm-spy-ratio", "title": "IWM/SPY above 0.5", "muted": None}]}

                # the write API: off without a token; with one, the token is needed; bad input is 400
                code, doc = await call("POST", f"{open_base}/api/silences", headers={}, scenario="spy-level",
                                       **{"for": "1h", "comment": "x"})
                assert code == 403 and "write API is off" in doc["error"]
                code, _ = await call("POST", f"{base}/api/silences", headers={}, scenario="spy-level",
                                     **{"for": "1h", "comment": "x"})
                assert code == 401
                code, _ = await call("GET", f"{base}/api/silences", headers={})
                assert code == 401
                for params, why in [({"scenario": "nope", "for": "1h", "comment": "x"}, "unknown scenario 'nope'"),
                                    ({"scenario": "spy-level", "for": "0s", "comment": "x"}, "longer than zero"),
                                    ({"scenario": "spy-level", "until": "2020-01-01T00:00Z", "comment": "x"},
                                     "not in the future"),
                                    ({"scenario": "spy-level", "for": "1h"}, "--comment is required"),
                                    ({"scenario": "spy-level", "for": "1h", "comment": "x", "colour": "red"},
                                     "unknown field colour")]:
                    code, doc = await call("POST", f"{base}/api/silences", **params)
                    assert (code, why in doc["error"]) == (400, True), doc
                code, _ = await call("PUT", f"{base}/api/silences")
                assert code == 405
                assert list(read_topic(broker.bootstrap, SILENCES)) != [] and \
                    [k for k, *_ in read_topic(broker.bootstrap, SILENCES)] == [b"junk"]  # nothing written

                code, doc = await call("POST", f"{base}/api/silences", scenario="spy-level",
                                       **{"for": "2h", "comment": "known rally", "author": "ana"})
                assert code == 201, doc
                sid, until = doc["silence"]["id"], doc["silence"]["ends_at"]
                assert doc["silence"]["state"] == "active"
                assert [k for k, *_ in read_topic(broker.bootstrap, SILENCES)] == [b"junk", sid.encode()]
                muted = (await status_of("spy-level"))["muted"]
                assert muted == {"until": until, "silence": sid, "comment": "known rally", "author": "ana"}
                code, doc = await call("GET", f"{base}/api/silences")
                assert [(s["id"], s["state"]) for s in doc["silences"]] == [(sid, "active")]
                code, doc = await call("GET", f"{base}/api/scenarios")
                assert doc["scenarios"][0]["muted"]["silence"] == sid and doc["scenarios"][1]["muted"] is None

                async with chromium_page() as page:
                    await page.goto(f"{base}/?token={TOKEN}")
                    mute = page.locator('.card[data-scenario="spy-level"] .mute')
                    shown = until.replace("T", " ")[:16]
                    await mute.filter(has_text=f"Muted until {shown}").wait_for(timeout=15000)
                    assert "known rally (ana)" in await mute.text_content()

                    code, doc = await call("DELETE", f"{base}/api/silences/{sid}")
                    assert code == 200 and doc["silence"]["state"] == "expired"
                    await mute.wait_for(state="hidden", timeout=15000)  # pushed over the websocket
                assert (await status_of("spy-level"))["muted"] is None
                code, doc = await call("DELETE", f"{base}/api/silences/{sid}")
                assert code == 409 and "already expired" in doc["error"]
                code, doc = await call("DELETE", f"{base}/api/silences/no-such")
                assert code == 404
                code, doc = await call("GET", f"{base}/api/silences")
                assert [(s["id"], s["state"]) for s in doc["silences"]] == [(sid, "expired")]

                # a silence written elsewhere (the command, another web process) shows up, and once
                # it runs out it stops showing, with no record on the topic to say so
                other = new_silence([], all_scenarios=True, duration="5s", comment="desk offsite", author="bo",
                                    now=datetime.now(timezone.utc), known=[])
                await asyncio.to_thread(write_silence, broker.bootstrap, *encode(other))
                got = await _until(lambda: _muted_by(status_of, "spy-level", other.id), "other silence shown")
                assert got["author"] == "bo" and got["until"] == other.as_json()["ends_at"]
                await _until(lambda: _unmuted(status_of, "spy-level"), "ran-out silence no longer shown", timeout=20)
                assert datetime.now(timezone.utc) >= other.ends_at
        finally:
            await with_token.close()
            await no_token.close()
            await web.stop()
            hub.close()


async def _unmuted(status_of, scenario):
    return (await status_of(scenario))["muted"] is None


async def _muted_by(status_of, scenario, silence_id):
    m = (await status_of(scenario))["muted"]
    return m if m and m["silence"] == silence_id else None
