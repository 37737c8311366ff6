"""Security: secrets come from the environment (or files it names) and never print; what we serve
binds 127.0.0.1 unless told otherwise and wants its token when one is set; a websocket client
cannot send more or faster than allowed; Kafka TLS/SASL settings reach every client we build.
Real HTTP and websocket servers on 127.0.0.1; the one seam is the topic probe of a Runtime, as
no SASL broker runs here (tests/test_kafka_settings.py proves the TLS mapping with a handshake)."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
from urllib.parse import quote

import faust
import orjson
import pytest
from aiohttp import web
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from ratiowatch.cli import build_parser, main
from ratiowatch.config import load_config
from ratiowatch.errors import ConfigError
from ratiowatch.notifiers import NotificationService, RetryPolicy
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.live import LiveHub

# Secret values set through the environment; none of them may appear in anything we print.
SECRETS = {
    "SEC_SMTP_PASSWORD": "smtpPW-7d41c9e2",
    "SEC_SLACK_A": "TSLACKA0042", "SEC_SLACK_B": "BSLACKB0042", "SEC_SLACK_C": "slackC0042secretsecret",
    "SEC_HOOK_TOKEN": "hooktok-92aa61f0", "SEC_HOOK_KEY": "apikey-55b0e1d3", "SEC_HOOK_USER": "hookuser9",
    "SEC_HOOK_PASS": "hookpass-1e0b", "SEC_NTFY_TOPIC": "ntfytopic-c0ffee42",
}
SCENARIO = ("  - id: small-caps-outperform\n"
            "    trigger: {series: IWM/SPY, lookback: 63, above: 0.10, rearm: 0.08}\n")


def _config(tmp_path, channels: dict[str, str]) -> str:
    lines = ["channels:"] + [f"  {name}: \"{url}\"" for name, url in channels.items()]
    lines += ["scenarios:", SCENARIO.rstrip("\n"), f"    notify: [{', '.join(channels)}]"]
    p = tmp_path / "scenarios.yaml"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


@pytest.fixture
def secret_env(monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    return SECRETS


def _leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def test_config_show_never_prints_a_secret_set_through_the_environment(tmp_path, secret_env, capsys):
    path = _config(tmp_path, {
        "mail": "mailtos://alerts:${SEC_SMTP_PASSWORD}@smtp.example.com:587?to=desk@example.com",
        "slack": "slack://${SEC_SLACK_A}/${SEC_SLACK_B}/${SEC_SLACK_C}/#markets",
        "hook": "jsons://${SEC_HOOK_USER}:${SEC_HOOK_PASS}@hooks.example.com/in/${SEC_HOOK_TOKEN}?key=${SEC_HOOK_KEY}",
        "phone": "ntfys://ntfy.sh/${SEC_NTFY_TOPIC}",
    })
    assert main(["config", "show", "--config", path]) == 0
    out, err = capsys.readouterr()
    assert "<secret>" in out and "smtp.example.com" in out  # it shows where, not with what
    assert _leaks(out + err) == []
    cfg = load_config(path)
    assert _leaks(repr(cfg) + str(cfg.channels)) == []  # a Config in a traceback or a log line


class _Failing:
    """An HTTP endpoint that answers 500 and echoes what it got, as careless servers do."""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(status=500, text=f"failed {request.path_qs} {request.headers.get('Authorization')} "
                                             f"{body[:200]!r}")

    async def start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)  # the peer's own log is not ours to judge
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
async def test_a_failing_delivery_never_logs_or_records_a_secret(tmp_path, secret_env, caplog, capfd, level):
    peer = _Failing()
    port = await peer.start()
    path = _config(tmp_path, {
        "hook": f"json://${{SEC_HOOK_USER}}:${{SEC_HOOK_PASS}}@127.0.0.1:{port}/in/${{SEC_HOOK_TOKEN}}?key=${{SEC_HOOK_KEY}}",
        "gone": "json://127.0.0.1:9/in/${SEC_NTFY_TOPIC}",  # nothing listens: connection refused
    })
    records: list[tuple[str, bytes]] = []

    async def publish(topic, key, value):
        records.append((topic, value))

    caplog.set_level(level)  # every logger, apprise's and urllib3's included
    ev = {"schema_version": 1, "event_id": "e" * 32, "scenario": "small-caps-outperform", "title": "t",
          "rule": "trigger", "kind": "fired", "series": "IWM/SPY", "direction": "up", "at": "2026-01-02T21:00:00Z",
          "ts_ms": 1_767_387_600_000, "value": 0.11, "threshold": 0.1, "lookback": 63, "series_value": 0.4,
          "description": "d", "windows": {}, "confirmations": []}
    try:
        async with NotificationService(load_config(path), publish, store_path=tmp_path / "n.sqlite",
                                       retry=RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.01,
                                                         deadline_s=10, attempt_timeout_s=5)) as svc:
            await svc.handle(ev)
            assert await svc.drain(60)
    finally:
        await peer.runner.cleanup()
    outcomes = [json.loads(v)["outcome"] for t, v in records if t == "deliveries"]
    assert outcomes.count("dead_lettered") == 2  # both channels failed and gave up: the path under test ran
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "error=500" in logged or "500" in logged
    out, err = capfd.readouterr()
    assert _leaks(logged) == []
    assert _leaks(out + err) == []
    assert _leaks(b"\n".join(v for _, v in records).decode()) == []


async def test_served_endpoints_bind_localhost_by_default_and_the_broker_too():
    hub = LiveHub()
    server = await hub.serve(port=0)
    try:
        assert {s.getsockname()[0] for s in server.sockets} == {"127.0.0.1"}
    finally:
        server.close()
        await server.wait_closed()
    parser, _ = build_parser()
    run_args = parser.parse_args(["run", "--serve"])
    assert str(run_args.serve) == "127.0.0.1:8765"
    with EmbeddedBroker() as b:
        assert all(h.startswith("127.0.0.1:") for h in b.bootstrap.split(","))


def _get(port: int, path: str, headers=None) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path, headers=headers or {})
        return c.getresponse().status
    finally:
        c.close()


async def test_the_token_must_match_exactly():
    token = "Tok-3f9a51c2e7"
    hub = LiveHub()
    server = await hub.serve(port=0, token=token)
    port = server.sockets[0].getsockname()[1]
    try:
        near_misses = [token[:-1], token + "x", token.lower(), " " + token, token + " ", "", "\x00" + token]
        for given in near_misses:
            assert await asyncio.to_thread(_get, port, f"/status?token={quote(given)}") == 401, given
            if given.isprintable():  # a control character in a header: the HTTP parser drops the connection
                assert await asyncio.to_thread(_get, port, "/status", {"Authorization": f"Bearer {given}x"}) == 401
        assert await asyncio.to_thread(_get, port, f"/status?token={token}") == 200
        assert await asyncio.to_thread(_get, port, "/status", {"Authorization": f"bearer {token}"}) == 200
        with pytest.raises(ValueError):
            await hub.serve(port=0, token="  ")  # a blank token would protect nothing
    finally:
        server.close()
        await server.wait_closed()
    assert hub.stats["unauthorized"] == len(near_misses) + sum(g.isprintable() for g in near_misses)


async def test_websocket_size_limit_is_exact_and_a_flood_is_cut_off_without_hurting_others():
    hub = LiveHub(scenarios=["a"], max_message_bytes=256, client_rate=(2.0, 5), now=lambda: 50.0)
    hub.publish_status({"scenario": "a", "ts_ms": 1})
    server = await hub.serve(port=0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
    try:
        async with connect(url) as calm, connect(url) as big, connect(url) as flood:
            for ws in (calm, big, flood):
                assert orjson.loads(await ws.recv())["type"] == "status"
            padded = '{"subscribe": ["a"]' + " " * (256 - len('{"subscribe": ["a"]}')) + "}"
            assert len(padded.encode()) == 256
            await big.send(padded)  # exactly the limit: handled
            assert orjson.loads(await big.recv())["type"] == "subscribed"
            await big.send(padded + " ")  # one byte over: the connection closes
            with pytest.raises(ConnectionClosedError) as e:
                while True:
                    await big.recv()
            assert e.value.rcvd.code == 1009
            for _ in range(200):  # far more than the burst, with a clock that never refills it
                try:
                    await flood.send('{"subscribe": "*"}')
                except ConnectionClosedError:
                    break
            with pytest.raises(ConnectionClosedError) as e:
                async with asyncio.timeout(10):
                    while True:
                        await flood.recv()
            assert (e.value.rcvd.code, e.value.rcvd.reason) == (1008, "rate limit")
            hub.publish_event({"scenario": "a", "event_id": "x", "kind": "fired"})
            assert orjson.loads(await calm.recv())["type"] == "event"  # the others carry on
    finally:
        server.close()
        await server.wait_closed()
    assert hub.stats["oversized"] == 1 and hub.stats["rate_limited"] >= 100


SASL_ENV = {"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RATIOWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "RATIOWATCH_KAFKA_SASL_USERNAME": "ratiowatch", "RATIOWATCH_KAFKA_SASL_PASSWORD": "kafkaPW-6f1d2c"}


def test_a_runtime_hands_kafka_sasl_settings_from_the_environment_to_every_client(monkeypatch, tmp_path):
    import ratiowatch.roles.engine as runtime_mod
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
    from kafka import KafkaConsumer

    for k, v in SASL_ENV.items():
        monkeypatch.setenv(k, v)
    probed = {}
    monkeypatch.setattr(runtime_mod, "ensure_topics_exist", lambda bootstrap, partitions, app_id, **kw: probed.update(kw))
    rt = runtime_mod.EngineRole(load_config(), broker_url="kafka://127.0.0.1:9", datadir=str(tmp_path))
    want = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "ratiowatch", "sasl_plain_password": "kafkaPW-6f1d2c"}
    # kafka-python: the topic probe and the readback clients (with the version pin of streams/clients.py)
    assert probed == {**want, "api_version": (3, 0)} and rt.client_kwargs == probed
    KafkaConsumer(bootstrap_servers="127.0.0.1:9", **rt.client_kwargs).close()  # accepted
    # faust: the app's credentials, as its aiokafka driver (and the pipeline's events reader) turn them into kwargs
    cred = rt.app.conf.broker_credentials
    assert isinstance(cred, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(cred, rt.app.conf.ssl_context)
    assert (auth["security_protocol"], auth["sasl_mechanism"], auth["sasl_plain_username"],
            auth["sasl_plain_password"]) == ("SASL_PLAINTEXT", "SCRAM-SHA-512", "ratiowatch", "kafkaPW-6f1d2c")
    assert "kafkaPW" not in repr(cred) and "kafkaPW" not in str(rt.app.conf.broker_credentials)


def test_kafka_credentials_cannot_come_from_the_scenario_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("settings:\n  sasl_password: hunter2\nscenarios:\n" + SCENARIO)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "unknown key 'sasl_password'" in str(e.value)
