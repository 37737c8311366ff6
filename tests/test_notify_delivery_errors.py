"""Delivery errors name the cause, the host and the port: against a real aiosmtpd on 127.0.0.1
that refuses the login, and a closed port. An auth failure is dead-lettered at once (another
attempt cannot fix a password); a refused connection is retried."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest
from aiosmtpd.smtp import AuthResult

from aiokafka import AIOKafkaProducer

from ratiowatch.model.sessions import iso_utc
from ratiowatch.config import load_config
from ratiowatch.model import Channel
from ratiowatch.notifiers import NotificationService, PermanentError, RetryableError, RetryPolicy
from ratiowatch.notifiers.deliver import AppriseSender, explain
from ratiowatch.notifiers.redact import Redactor
from ratiowatch.notifiers.render import Message
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.readback import read_topic
from ratiowatch.streams.topics import DELIVERIES, NOTIFICATIONS_DLQ

import peers  # tests/ is on sys.path

PASSWORD = "pa55-Word-Never-Shown"
WRONG = "Not-The-Pa55word"
MSG = Message("Small caps outperform large caps", "body", None)


class RefusingSmtp(peers.SmtpPeer):
    """A stock aiosmtpd answer to a bad login: 535 5.7.8 Authentication credentials invalid."""

    def _auth(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login, auth_data.password))
        ok = auth_data.login == self.login and auth_data.password == self.password.encode()
        return AuthResult(success=ok, handled=False)


@pytest.fixture
async def smtp():
    p = RefusingSmtp(password=PASSWORD)
    p.port = await p.start()
    yield p
    await p.stop()


@pytest.fixture
def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    return port


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


async def read(broker, topic: str) -> list[dict]:
    return [json.loads(v) for _k, v, _p, _o in await asyncio.to_thread(lambda: list(read_topic(broker.bootstrap, topic)))]


def attempts_of(records, event_id, channel):
    return [(r["attempt"], r["outcome"]) for r in records if r["event_id"] == event_id and r["channel"] == channel]


def write_config(tmp_path, channels: dict) -> str:
    p = tmp_path / "scenarios.yaml"
    p.write_text("\n".join(
        ["channels:"] + [f'  {k}: "{v}"' for k, v in channels.items()] +
        ["scenarios:", "  - id: small-caps-outperform", "    title: Small caps outperform large caps",
         "    trigger: {series: IWM/SPY, lookback: 63, above: 0.10, rearm: 0.08}",
         f"    notify: [{', '.join(channels)}]"]) + "\n")
    return str(p)


def event() -> dict:
    ts = 1_721_246_400_000
    return {"schema_version": 1, "event_id": "0" * 31 + "1", "scenario": "small-caps-outperform",
            "title": "Small caps outperform large caps", "rule": "trigger", "kind": "fired", "series": "IWM/SPY",
            "direction": "up", "at": iso_utc(ts), "ts_ms": ts, "value": 0.1042, "threshold": 0.1, "lookback": 63,
            "series_value": 0.35, "description": "IWM/SPY 63-session change >= +10.00%",
            "windows": {"21": 0.05, "63": 0.1042}, "confirmations": []}


def mail_url(port: int, password: str) -> str:
    return f"mailto://alerts-bot:{password}@127.0.0.1:{port}?from=ratiowatch@example.com&to=trader@example.com"


async def send(url: str) -> Exception:
    sender = AppriseSender(Redactor([url]))
    with pytest.raises((PermanentError, RetryableError)) as e:
        await sender.send(Channel("desk-mail", url), MSG, None, 20)
    return e.value


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_a_refused_login_and_a_refused_connection_say_different_things_with_host_and_port(smtp, closed_port):
    auth = await send(mail_url(smtp.port, WRONG))
    refused = await send(mail_url(closed_port, PASSWORD))
    # the server did see the login it refused (smtplib tries each mechanism it offers: PLAIN, LOGIN)
    assert smtp.logins and set(smtp.logins) == {(b"alerts-bot", WRONG.encode())}

    assert isinstance(auth, PermanentError), auth
    assert str(auth).startswith(f"channel desk-mail: the SMTP server 127.0.0.1:{smtp.port} refused the login "
                                "(535 5.7.8 Authentication credentials invalid)"), auth
    assert isinstance(refused, RetryableError), refused
    assert str(refused).startswith(f"channel desk-mail: connection refused by 127.0.0.1:{closed_port}"), refused
    for e in (auth, refused):
        assert WRONG not in str(e) and PASSWORD not in str(e) and "alerts-bot" not in str(e)
        assert "Connection error while submitting email" in str(e)  # what apprise said is kept


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_the_right_password_is_delivered(smtp):
    sender = AppriseSender(Redactor([mail_url(smtp.port, PASSWORD)]))
    await sender.send(Channel("desk-mail", mail_url(smtp.port, PASSWORD)), MSG, None, 20)
    assert len(smtp.messages) == 1 and smtp.messages[0]["Subject"] == MSG.title


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_apprise_debug_lines_reach_no_handler_unless_asked_for(smtp):
    """The cause is read from apprise's DEBUG records; lowering apprise's logger for that must not
    print them in a run that did not ask for DEBUG."""
    root = logging.getLogger()
    seen: list[logging.LogRecord] = []
    h = logging.Handler()
    h.emit = seen.append
    level = root.level
    root.addHandler(h)
    root.setLevel(logging.WARNING)
    try:
        await send(mail_url(smtp.port, WRONG))
    finally:
        root.removeHandler(h)
        root.setLevel(level)
    apprise_records = [r for r in seen if r.name.startswith("apprise")]
    assert apprise_records and all(r.levelno >= logging.WARNING for r in apprise_records), \
        [(r.levelname, r.getMessage()) for r in apprise_records]


@pytest.mark.broker
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_on_the_topics_the_auth_failure_is_dead_lettered_at_once_and_the_refusal_retried(
        tmp_path, broker, publish, smtp, closed_port):
    cfg = load_config(write_config(tmp_path, {"auth-mail": mail_url(smtp.port, WRONG),
                                              "down-mail": mail_url(closed_port, PASSWORD)}))
    policy = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, deadline_s=30, attempt_timeout_s=20)
    async with NotificationService(cfg, publish, store_path=tmp_path / "n.sqlite", retry=policy) as svc:
        await svc.handle(event())
        assert await svc.drain(60)
    recs, dlq = await read(broker, DELIVERIES), await read(broker, NOTIFICATIONS_DLQ)
    eid = event()["event_id"]
    assert attempts_of(recs, eid, "auth-mail") == [(1, "failed"), (1, "dead_lettered")]
    assert attempts_of(recs, eid, "down-mail") == [(1, "failed"), (2, "failed"), (3, "failed"), (3, "dead_lettered")]
    by_channel = {d["channel"]: d for d in dlq}
    assert f"127.0.0.1:{smtp.port} refused the login (535" in by_channel["auth-mail"]["error"]
    assert f"connection refused by 127.0.0.1:{closed_port}" in by_channel["down-mail"]["error"]
    assert WRONG not in json.dumps(recs + dlq) and PASSWORD not in json.dumps(recs + dlq)


def test_explain_reads_the_causes_apprise_logs():
    assert explain(["Socket Exception: (535, b'5.7.8 Authentication credentials invalid')"], "mx.example.com:587") == (
        "the SMTP server mx.example.com:587 refused the login (535 5.7.8 Authentication credentials invalid): "
        "check the user name and password in the channel URL", False)
    why, retry = explain(["Socket Exception: SMTP AUTH extension not supported by server."], "127.0.0.1:1025")
    assert why.startswith("the SMTP server 127.0.0.1:1025 does not offer a login (no AUTH)") and retry is False
    why, retry = explain(["Socket Exception: (451, b'4.3.0 Try again later')"], "127.0.0.1:25")
    assert why == "the SMTP server 127.0.0.1:25 answered 451 4.3.0 Try again later" and retry is True
    # requests names the peer it tried; that wins over the URL's host
    why, retry = explain(["Socket Exception: HTTPConnectionPool(host='10.0.0.7', port=8080): Max retries exceeded "
                          "(Caused by NewConnectionError('...: Failed to establish a new connection: [Errno 111] "
                          "Connection refused'))"], None)
    assert why.startswith("connection refused by 10.0.0.7:8080") and retry is True
    assert explain([], "127.0.0.1:25", timed_out_s=5.0) == ("no answer from 127.0.0.1:25 within 5s", True)
    assert explain(["JSON Payload: {...}"], "127.0.0.1:25") == (None, None)  # nothing recognisable: classify()
