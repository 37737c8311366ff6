"""The Kafka security settings of the environment reach every Kafka client that ``ratiowatch dlq
retry``, ``ratiowatch topics --create``, the read-back (streams/readback.py) and the example
events consumer build.

How: every client constructor of both libraries (kafka-python's consumer, producer and admin
client; aiokafka's consumer and producer) is wrapped so that it records the keyword arguments the
command hands it. The wrapper then builds the real client against the embedded broker, which
speaks PLAINTEXT only, with the security options swapped for PLAINTEXT, so the command runs to its
real end (reads the DLQ, delivers to a real HTTP peer, writes ``deliveries``; lists the broker's
topics). A client built anywhere without the settings, or by a constructor nobody expected, fails
the test. The expected options are written out here from docs/deployment.md, not computed by
the code under test. (Whether each library turns these options into a TLS handshake or a SASL
exchange is proven in tests/test_kafka_settings.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import time
from pathlib import Path

import aiokafka
import kafka
import kafka.admin
import pytest
from aiohttp import web

from ratiowatch.model.sessions import iso_utc
from ratiowatch.cli import build_parser, main
from ratiowatch.config import load_config
from ratiowatch.notifiers import NotificationService, RetryPolicy
from ratiowatch.streams import readback
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.topics import DELIVERIES, NOTIFICATIONS_DLQ, all_topics

pytestmark = pytest.mark.broker

PASSWORD = "kafkaPW-6f1d2c-never-printed"
FAST = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.05, deadline_s=30, attempt_timeout_s=20)


def _cert(folder, name: str, cn: str) -> tuple[str, str]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    return {"ca": _cert(d, "ca", "kafka-ca-for-test"), "client": _cert(d, "client", "ratiowatch-client")}


def _sasl_env(certs):
    return {"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "RATIOWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "RATIOWATCH_KAFKA_SASL_USERNAME": "ratiowatch", "RATIOWATCH_KAFKA_SASL_PASSWORD": PASSWORD}


def _sasl_ssl_env(certs):
    return {"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RATIOWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "RATIOWATCH_KAFKA_SASL_USERNAME": "desk", "RATIOWATCH_KAFKA_SASL_PASSWORD": PASSWORD,
            "RATIOWATCH_KAFKA_SSL_CAFILE": certs["ca"][0], "RATIOWATCH_KAFKA_SSL_CERTFILE": certs["client"][0],
            "RATIOWATCH_KAFKA_SSL_KEYFILE": certs["client"][1], "RATIOWATCH_KAFKA_SSL_CHECK_HOSTNAME": "false"}


ENVS = {"sasl_plaintext": _sasl_env, "sasl_ssl_mutual_tls": _sasl_ssl_env}


def _expect_kafka_python(env: dict) -> dict:
    """kafka-python's options for ``env``, written from the variables' documented meaning."""
    want = {"security_protocol": env["RATIOWATCH_KAFKA_SECURITY_PROTOCOL"],
            "sasl_mechanism": env["RATIOWATCH_KAFKA_SASL_MECHANISM"],
            "sasl_plain_username": env["RATIOWATCH_KAFKA_SASL_USERNAME"], "sasl_plain_password": PASSWORD}
    if "RATIOWATCH_KAFKA_SSL_CAFILE" in env:
        want.update(ssl_cafile=env["RATIOWATCH_KAFKA_SSL_CAFILE"], ssl_certfile=env["RATIOWATCH_KAFKA_SSL_CERTFILE"],
                    ssl_keyfile=env["RATIOWATCH_KAFKA_SSL_KEYFILE"], ssl_check_hostname=False)
    return want


def _check_aiokafka(kw: dict, env: dict) -> None:
    assert kw["security_protocol"] == env["RATIOWATCH_KAFKA_SECURITY_PROTOCOL"]
    assert kw["sasl_mechanism"] == env["RATIOWATCH_KAFKA_SASL_MECHANISM"]
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == (env["RATIOWATCH_KAFKA_SASL_USERNAME"], PASSWORD)
    if "RATIOWATCH_KAFKA_SSL_CAFILE" in env:
        ctx = kw["ssl_context"]
        assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.check_hostname is False
        # the CA file of the environment, not the system's CAs
        assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "kafka-ca-for-test"),),)]
    else:
        assert kw.get("ssl_context") is None


class Recorder:
    """Wraps the client constructors; ``built``: (constructor, kwargs) of every client made."""

    def __init__(self, monkeypatch) -> None:
        self.built: list[tuple[str, dict]] = []
        self._wrap(monkeypatch, kafka, "KafkaConsumer")
        self._wrap(monkeypatch, kafka, "KafkaProducer")
        self._wrap(monkeypatch, kafka.admin, "KafkaAdminClient")
        self._wrap(monkeypatch, aiokafka, "AIOKafkaConsumer")
        self._wrap(monkeypatch, aiokafka, "AIOKafkaProducer")
        # the read-back imports its consumer class when it is imported
        monkeypatch.setattr(readback, "KafkaConsumer", self._recording("KafkaConsumer", kafka.KafkaConsumer))

    def _wrap(self, monkeypatch, module, name: str) -> None:
        monkeypatch.setattr(module, name, self._recording(name, getattr(module, name)))

    def _recording(self, name: str, real):
        if getattr(real, "_recorded", False):
            return real

        def build(*args, **kw):
            self.built.append((name, dict(kw)))
            # the embedded broker speaks PLAINTEXT only: what the command asked for is recorded above
            plain = {k: v for k, v in kw.items() if not k.startswith(("sasl_", "ssl_")) and k != "security_protocol"}
            return real(*args, **plain)

        build._recorded = True
        return build

    def of(self, name: str) -> list[dict]:
        return [kw for n, kw in self.built if n == name]


@pytest.fixture
def recorder(monkeypatch):
    return Recorder(monkeypatch)


def _set_env(monkeypatch, env: dict) -> None:
    for k in list(os.environ):
        if k.startswith("RATIOWATCH_KAFKA_"):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


# ------------------------------------------------------------------ dlq retry

class FlakyPeer:
    """An HTTP endpoint answering ``status`` (settable) and keeping the bodies it accepted."""

    def __init__(self) -> None:
        self.status, self.accepted, self.seen = 503, [], 0

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen += 1
        if self.status == 200:
            self.accepted.append(body)
        return web.json_response({}, status=self.status)

    async def start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]


def _event(i: int) -> dict:
    ts = 1_721_160_000_000 + i * 86_400_000
    return {"schema_version": 1, "event_id": f"{i:032x}", "scenario": "small-caps-outperform",
            "title": "Small caps outperform large caps", "rule": "trigger", "kind": "fired", "series": "IWM/SPY",
            "direction": "up", "at": iso_utc(ts), "ts_ms": ts, "value": 0.1042, "threshold": 0.1, "lookback": 63,
            "series_value": 0.35, "description": "IWM/SPY 63-session change >= +10.00%",
            "windows": {"21": 0.05, "63": 0.1042}, "confirmations": []}


def _config(tmp_path, port: int) -> str:
    p = tmp_path / "scenarios.yaml"
    p.write_text("channels:\n"
                 f"  desk: \"json://127.0.0.1:{port}/hook\"\n"
                 "scenarios:\n"
                 "  - id: small-caps-outperform\n"
                 "    title: Small caps outperform large caps\n"
                 "    trigger: {series: IWM/SPY, lookback: 63, above: 0.10, rearm: 0.08}\n"
                 "    notify: [desk]\n")
    return str(p)


def _read_all(bootstrap: str, topic: str) -> list[dict]:
    return [json.loads(v) for _, v, _, _ in readback.read_topic(bootstrap, topic, timeout_s=20)]


@pytest.mark.parametrize("env_name", sorted(ENVS))
async def test_dlq_retry_gives_every_client_the_security_settings_of_the_environment(
        env_name, certs, tmp_path, monkeypatch):
    _set_env(monkeypatch, {})
    peer = FlakyPeer()
    port = await peer.start()
    broker = EmbeddedBroker()
    try:
        broker.create_topic(DELIVERIES, 1)
        broker.create_topic(NOTIFICATIONS_DLQ, 1)
        path = _config(tmp_path, port)
        store = tmp_path / "delivered.sqlite"
        # dead-letter one notification: the channel answers 503 to every attempt
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            async def publish(topic, key, value):
                await producer.send_and_wait(topic, value, key=key)

            async with NotificationService(load_config(path), publish, store_path=store, retry=FAST) as svc:
                await svc.handle(_event(1))
                assert await svc.drain(60)
        finally:
            await producer.stop()
        assert len(await asyncio.to_thread(_read_all, broker.bootstrap, NOTIFICATIONS_DLQ)) == 1

        env = ENVS[env_name](certs)
        _set_env(monkeypatch, env)
        rec = Recorder(monkeypatch)
        peer.status = 200
        rc = await asyncio.to_thread(main, ["dlq", "retry", "--broker", broker.url, "--config", path,
                                            "--store", str(store), "--attempts", "2", "--timeout", "60"])
        assert rc == 0
        assert len(peer.accepted) == 1  # the command really ran: read the DLQ, delivered, ...

        # ... and every Kafka client it built got the cluster's settings
        names = sorted(n for n, _ in rec.built)
        assert names == ["AIOKafkaProducer", "KafkaConsumer"], rec.built
        want = _expect_kafka_python(env)
        (consumer_kw,) = rec.of("KafkaConsumer")
        assert {k: consumer_kw.get(k) for k in want} == want
        assert consumer_kw["api_version"] == (3, 0)
        (producer_kw,) = rec.of("AIOKafkaProducer")
        _check_aiokafka(producer_kw, env)
        assert producer_kw["acks"] == "all"
        # the producer it built wrote the delivery record (read back by a client of the test)
        delivered = [r for r in await asyncio.to_thread(_read_all, broker.bootstrap, DELIVERIES)
                     if r["outcome"] == "delivered"]
        assert [(r["channel"], r["event_id"]) for r in delivered] == [("desk", _event(1)["event_id"])]
    finally:
        broker.stop()
        await peer.runner.cleanup()


def test_dlq_retry_with_bad_security_settings_builds_no_client_and_exits_2(monkeypatch, recorder, capsys):
    _set_env(monkeypatch, {"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                           "RATIOWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                           "RATIOWATCH_KAFKA_SASL_USERNAME": "desk",
                           "RATIOWATCH_KAFKA_SASL_PASWORD": PASSWORD})  # misspelt: must not fall back to no SASL
    assert main(["dlq", "retry", "--broker", "kafka://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "RATIOWATCH_KAFKA_SASL_PASWORD" in err and PASSWORD not in err
    assert recorder.built == []


# ------------------------------------------------------------------ topics --create

@pytest.mark.parametrize("env_name", sorted(ENVS))
def test_topics_create_gives_every_client_the_security_settings_of_the_environment(
        env_name, certs, monkeypatch, recorder, capsys):
    env = ENVS[env_name](certs)
    _set_env(monkeypatch, env)
    with EmbeddedBroker() as b:
        for s in all_topics(4):
            b.create_topic(s.name, s.partitions)
        # the embedded broker refuses CreateTopics: the command then lists what it has, with a consumer
        assert main(["topics", "--broker", b.url, "--partitions", "4", "--create"]) == 0
    out = capsys.readouterr().out
    assert "the embedded broker creates topics itself" in out and "events: present, 4 partitions" in out
    assert sorted(n for n, _ in recorder.built) == ["KafkaAdminClient", "KafkaConsumer"], recorder.built
    want = _expect_kafka_python(env)
    for name, kw in recorder.built:
        assert {k: kw.get(k) for k in want} == want, name
    assert recorder.of("KafkaConsumer")[0]["api_version"] == (3, 0)


# ------------------------------------------------------------------ read-back and the example

def test_read_topic_takes_the_environment_by_default_and_explicit_settings_win(certs, monkeypatch, recorder):
    env = _sasl_env(certs)
    _set_env(monkeypatch, env)
    with EmbeddedBroker() as b:
        b.create_topic("t", 2)
        assert list(readback.read_topic(b.bootstrap, "t", timeout_s=20)) == []
        assert list(readback.read_topic(b.bootstrap, "t", timeout_s=20, client_id="mine", api_version=(2, 8))) == []
    (default_kw, explicit_kw) = recorder.of("KafkaConsumer")
    want = _expect_kafka_python(env)
    assert {k: default_kw.get(k) for k in want} == want and default_kw["api_version"] == (3, 0)
    assert {k: explicit_kw.get(k) for k in want} == want
    assert (explicit_kw["client_id"], explicit_kw["api_version"]) == ("mine", (2, 8))


def test_the_example_events_consumer_builds_its_consumer_with_the_environment(certs, monkeypatch):
    import importlib.util

    env = _sasl_ssl_env(certs)
    _set_env(monkeypatch, env)
    spec = importlib.util.spec_from_file_location(
        "events_consumer_sec", Path(__file__).resolve().parents[1] / "examples" / "events_consumer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rec = Recorder(monkeypatch)
    monkeypatch.setattr(mod, "KafkaConsumer", rec._recording("KafkaConsumer", mod.KafkaConsumer))
    with EmbeddedBroker() as b:
        b.create_topic("events", 2)
        t0 = time.monotonic()
        counts = mod.consume(b.bootstrap, group="sec-test", timeout=1.0, session_timeout_ms=6000)
        assert time.monotonic() - t0 < 60
    assert counts["read"] == 0 and counts["partitions"] == 2  # it joined the group and got both partitions
    (kw,) = rec.of("KafkaConsumer")
    want = _expect_kafka_python(env)
    assert {k: kw.get(k) for k in want} == want and kw["api_version"] == (3, 0)


# ------------------------------------------------------------------ help text

@pytest.mark.parametrize("argv", [["dlq", "retry"], ["topics"]])
def test_help_does_not_promise_an_embedded_broker_the_command_refuses(argv, capsys):
    parser, _ = build_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args([*argv, "--help"])
    assert e.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("  --broker URL"))
    rest = [ln for ln in lines[first + 1:]]
    end = next((i for i, ln in enumerate(rest) if not ln.strip() or ln.startswith("  -")), len(rest))
    broker_help = " ".join(" ".join(lines[first:first + 1 + end]).split())
    assert "embedded" not in broker_help and "required" in broker_help, broker_help


# ------------------------------------------------------------------ dlq retry's delivery record

def test_dlq_retry_uses_the_notify_roles_delivery_record_by_default(tmp_path, monkeypatch):
    """Without --store, `dlq retry` opens the very file the notify role keeps for the same cluster,
    so a pair the notify role delivered is not sent twice."""
    from ratiowatch.commands.dlq import notify_store_path
    from ratiowatch.roles.notify import NotifyRole

    _set_env(monkeypatch, {})
    monkeypatch.setenv("RATIOWATCH_DATADIR", str(tmp_path / "data"))
    role = NotifyRole(load_config(), bootstrap="kafka-1:9092,kafka-2:9092")  # built, never started
    assert Path(role.service.store_path) == notify_store_path("kafka-1:9092,kafka-2:9092")
    assert notify_store_path("kafka-1:9092,kafka-2:9092").is_relative_to(tmp_path / "data")
    # another cluster, another record
    assert notify_store_path("other:9092") != notify_store_path("kafka-1:9092,kafka-2:9092")
