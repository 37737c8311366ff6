"""Delivery guarantees against real peers and the embedded Kafka-protocol broker: retries with
backoff, dead-lettering to notifications.dlq, ``ratiowatch dlq retry``, and no double delivery
across repeats and restarts. Attempts and outcomes are read back from the ``deliveries`` topic
with a plain kafka-python consumer."""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import socket
import time

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiosmtpd.smtp import SMTP
from kafka import KafkaConsumer, TopicPartition

from ratiowatch.model.sessions import iso_utc
from ratiowatch.commands import dlq
from ratiowatch.config import load_config
from ratiowatch.notifiers import NotificationService, RetryPolicy
from ratiowatch.notifiers.dedup import DeliveryLog
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.topics import DELIVERIES, NOTIFICATIONS_DLQ

import peers  # a helper module in tests/, which pytest puts on sys.path

pytestmark = pytest.mark.broker

FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, deadline_s=30, attempt_timeout_s=20)
HOOK_SECRET = "hookSECRETtoken0042"


# ------------------------------------------------------------------ broker and topics

@pytest.fixture
def broker():
    b = EmbeddedBroker()
    b.create_topic(DELIVERIES, 1)
    b.create_topic(NOTIFICATIONS_DLQ, 1)
    yield b
    b.stop()


@pytest.fixture
async def publish(broker):
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()

    async def publish(topic, key, value):
        await producer.send_and_wait(topic, value, key=key)

    yield publish
    await producer.stop()


def _read(bootstrap: str, topic: str) -> list[dict]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      consumer_timeout_ms=500, request_timeout_ms=5000)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        end = c.end_offsets([tp])[tp]
        out, deadline = [], time.monotonic() + 20
        while c.position(tp) < end and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                out += [json.loads(r.value) for r in recs]
        assert c.position(tp) >= end, f"could not read {topic} to its end"
        return out
    finally:
        c.close()


async def read(broker, topic):
    return await asyncio.to_thread(_read, broker.bootstrap, topic)


def attempts_of(records, event_id, channel):
    return [(r["attempt"], r["outcome"]) for r in records if r["event_id"] == event_id and r["channel"] == channel]


# ------------------------------------------------------------------ peers

class HttpPeer(peers.HttpPeer):
    """Answers each request with the next scripted status, then ``then``."""

    def __init__(self, statuses=(), then=200):
        super().__init__()
        self.statuses, self.then = list(statuses), then
        self.seen: list[tuple[int, bytes]] = []

    async def _handle(self, request):
        body = await request.read()
        status = self.statuses.pop(0) if self.statuses else self.then
        self.seen.append((status, body))
        return web.json_response({}, status=status)

    @property
    def accepted(self) -> list[bytes]:
        return [b for s, b in self.seen if s == 200]


@pytest.fixture
async def peer():
    p = HttpPeer()
    p.port = await p.start()
    yield p
    await p.runner.cleanup()


def write_config(tmp_path, channels: dict) -> str:
    lines = ["channels:"] + [f"  {k}: \"{v}\"" for k, v in channels.items()] + [
        "scenarios:",
        "  - id: small-caps-outperform",
        "    title: Small caps outperform large caps",
        "    description: Small caps (IWM) beat the S&P 500 (SPY) by 10% or more over three months.",
        "    trigger: {series: IWM/SPY, lookback: 63, above: 0.10, rearm: 0.08}",
        f"    notify: [{', '.join(channels)}]",
    ]
    p = tmp_path / "scenarios.yaml"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def event(i: int = 1) -> dict:
    ts = 1_721_160_000_000 + i * 86_400_000
    return {"schema_version": 1, "event_id": f"{i:032x}", "scenario": "small-caps-outperform",
            "title": "Small caps outperform large caps", "rule": "trigger", "kind": "fired", "series": "IWM/SPY",
            "direction": "up", "at": iso_utc(ts), "ts_ms": ts, "value": 0.1042, "threshold": 0.1, "lookback": 63,
            "series_value": 0.35, "description": "IWM/SPY 63-session change >= +10.00%",
            "windows": {"21": 0.05, "63": 0.1042, "126": 0.03, "252": -0.01}, "confirmations": []}


def test_the_test_event_follows_the_schema():
    import jsonschema
    from ratiowatch.agents.events import load_schema
    jsonschema.validate(event(), load_schema())


# ------------------------------------------------------------------ retries

async def test_two_server_errors_then_success_delivers_once_after_three_attempts(tmp_path, broker, publish, peer):
    peer.statuses = [500, 500]
    cfg = load_config(write_config(tmp_path, {"desk": f"json://127.0.0.1:{peer.port}/hook/{HOOK_SECRET}"}))
    async with NotificationService(cfg, publish, store_path=tmp_path / "n.sqlite", retry=FAST) as svc:
        await svc.handle(event())
        assert await svc.drain(60)
    assert [s for s, _ in peer.seen] == [500, 500, 200] and len(peer.accepted) == 1
    recs = await read(broker, DELIVERIES)
    assert attempts_of(recs, event()["event_id"], "desk") == [(1, "failed"), (2, "failed"), (3, "delivered")]
    assert "error=500" in recs[0]["error"] and recs[2]["error"] is None
    assert all(r["scenario"] == "small-caps-outperform" and isinstance(r["at_ms"], int) for r in recs)
    assert HOOK_SECRET not in json.dumps(recs) and f"127.0.0.1:{peer.port}/hook" not in json.dumps(recs)
    assert await read(broker, NOTIFICATIONS_DLQ) == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_smtp_server_down_for_the_first_attempts_then_delivered(tmp_path, broker, publish):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    received, servers = [], []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            return "250 OK"

    async def publish_and_revive(topic, key, value):
        await publish(topic, key, value)
        rec = json.loads(value)
        if topic == DELIVERIES and rec["outcome"] == "failed" and rec["attempt"] == 2 and not servers:
            # the server comes back after the second failed attempt, before the third
            servers.append(await asyncio.get_running_loop().create_server(
                lambda: SMTP(Handler(), hostname="127.0.0.1"), "127.0.0.1", port))

    url = f"mailto://127.0.0.1:{port}?from=ratiowatch@example.com&to=trader@example.com"
    cfg = load_config(write_config(tmp_path, {"desk-mail": url}))
    policy = RetryPolicy(attempts=5, base_delay_s=0.01, max_delay_s=0.05, deadline_s=60, attempt_timeout_s=20)
    try:
        async with NotificationService(cfg, publish_and_revive, store_path=tmp_path / "n.sqlite", retry=policy) as svc:
            await svc.handle(event())
            assert await svc.drain(60)
    finally:
        for srv in servers:
            srv.close()
    assert len(received) == 1 and received[0]["Subject"].startswith("Small caps outperform large caps: IWM/SPY")
    recs = await read(broker, DELIVERIES)
    assert attempts_of(recs, event()["event_id"], "desk-mail") == [(1, "failed"), (2, "failed"), (3, "delivered")]
    assert "Connection error" in recs[0]["error"]


# ------------------------------------------------------------------ dead letters and `dlq retry`

async def test_never_succeeding_goes_to_the_dlq_and_dlq_retry_delivers_it_later(tmp_path, broker, publish, peer):
    peer.then = 503
    path = write_config(tmp_path, {"desk": f"json://127.0.0.1:{peer.port}/hook/{HOOK_SECRET}"})
    store = tmp_path / "n.sqlite"
    async with NotificationService(load_config(path), publish, store_path=store, retry=FAST) as svc:
        await svc.handle(event(1))
        await svc.handle(event(2))
        assert await svc.drain(60)
    assert peer.accepted == [] and len(peer.seen) == 6
    dead = await read(broker, NOTIFICATIONS_DLQ)
    assert [(d["channel"], d["event_ids"], d["attempts"]) for d in dead] == [
        ("desk", [event(1)["event_id"]], 3), ("desk", [event(2)["event_id"]], 3)]
    assert "error=503" in dead[0]["error"] and dead[0]["notices"][0]["event"] == event(1)
    recs = await read(broker, DELIVERIES)
    assert attempts_of(recs, event(1)["event_id"], "desk") == [(1, "failed"), (2, "failed"), (3, "failed"),
                                                                 (3, "dead_lettered")]
    assert HOOK_SECRET not in json.dumps(dead) + json.dumps(recs)

    # the endpoint is healthy again: `ratiowatch dlq retry` sends both, once
    peer.then = 200
    args = argparse.Namespace(action="retry", broker=broker.url, config=path, store=str(store), attempts=3,
                              timeout=60.0, history=None)
    assert await asyncio.to_thread(dlq.run, args, policy=FAST) == 0
    assert len(peer.accepted) == 2
    sent = sorted(json.loads(json.loads(b)["message"])["events"][0]["event_id"] for b in peer.accepted)
    assert sent == [event(1)["event_id"], event(2)["event_id"]]
    # run again: everything on the DLQ is already delivered, nothing is sent twice
    assert await asyncio.to_thread(dlq.run, args, policy=FAST) == 0
    assert len(peer.accepted) == 2
    recs = await read(broker, DELIVERIES)
    assert attempts_of(recs, event(1)["event_id"], "desk")[4:] == [(1, "delivered"), (0, "skipped_duplicate")]


async def test_dlq_retry_reports_a_channel_that_still_fails(tmp_path, broker, publish, peer):
    peer.then = 503
    path = write_config(tmp_path, {"desk": f"json://127.0.0.1:{peer.port}/hook"})
    async with NotificationService(load_config(path), publish, store_path=tmp_path / "n.sqlite", retry=FAST) as svc:
        await svc.handle(event(1))
        assert await svc.drain(60)
    args = argparse.Namespace(action="retry", broker=broker.url, config=path, store=str(tmp_path / "n.sqlite"),
                              attempts=2, timeout=60.0, history=None)
    assert await asyncio.to_thread(dlq.run, args, policy=FAST) == 1
    assert len(await read(broker, NOTIFICATIONS_DLQ)) == 1  # not dead-lettered a second time
    assert dlq.run(argparse.Namespace(**{**vars(args), "broker": None})) == 2  # the broker is required


async def test_a_refusal_is_permanent_and_dead_lettered_at_once(tmp_path, broker, publish, peer):
    peer.then = 404
    cfg = load_config(write_config(tmp_path, {"desk": f"json://127.0.0.1:{peer.port}/gone"}))
    async with NotificationService(cfg, publish, store_path=tmp_path / "n.sqlite", retry=FAST) as svc:
        await svc.handle(event())
        assert await svc.drain(60)
    assert len(peer.seen) == 1
    recs = await read(broker, DELIVERIES)
    assert attempts_of(recs, event()["event_id"], "desk") == [(1, "failed"), (1, "dead_lettered")]
    assert len(await read(broker, NOTIFICATIONS_DLQ)) == 1


# ------------------------------------------------------------------ never twice

async def test_the_same_event_handled_twice_is_delivered_once(tmp_path, broker, publish, peer):
    cfg = load_config(write_config(tmp_path, {"desk": f"json://127.0.0.1:{peer.port}/hook"}))
    async with NotificationService(cfg, publish, store_path=tmp_path / "n.sqlite", retry=FAST) as svc:
        await svc.handle(event())
        await svc.handle(event())
        assert await svc.drain(60)
        await svc.handle(event())  # and once more after it was delivered
        assert await svc.drain(60)
    assert len(peer.accepted) == 1
    recs = await read(broker, DELIVERIES)
    assert attempts_of(recs, event()["event_id"], "desk") == [(1, "delivered"), (0, "skipped_duplicate"),
                                                              (0, "skipped_duplicate")]


async def test_a_restarted_service_does_not_deliver_again(tmp_path, broker, publish, peer):
    cfg = load_config(write_config(tmp_path, {"desk": f"json://127.0.0.1:{peer.port}/hook"}))
    store = tmp_path / "n.sqlite"
    async with NotificationService(cfg, publish, store_path=store, retry=FAST) as svc:
        await svc.handle(event())
        assert await svc.drain(60)
    # a new process on the same record: a replay of the same event
    async with NotificationService(cfg, publish, store_path=store, retry=FAST) as svc2:
        await svc2.handle(event())
        await svc2.handle(event(2))
        assert await svc2.drain(60)
    assert len(peer.accepted) == 2
    recs = await read(broker, DELIVERIES)
    assert attempts_of(recs, event()["event_id"], "desk") == [(1, "delivered"), (0, "skipped_duplicate")]
    log = DeliveryLog(store)
    assert log.count("desk") == 2
    log.close()


async def test_a_failing_publish_does_not_stop_delivery(tmp_path, peer, caplog):
    async def broken(topic, key, value):
        raise ConnectionError("broker unreachable")

    cfg = load_config(write_config(tmp_path, {"desk": f"json://127.0.0.1:{peer.port}/hook"}))
    async with NotificationService(cfg, broken, store_path=tmp_path / "n.sqlite", retry=FAST) as svc:
        await svc.handle(event())
        assert await svc.drain(60)
    assert len(peer.accepted) == 1
    assert "could not write to deliveries" in caplog.text
