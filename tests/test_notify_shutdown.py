"""Shutdown reports what is pending: a notification mid-retry when the notify role stops is named
(channel, scenario, failed attempts, the last error) with where it resumes, and it does resume
there: the role's inbox, not the committed ``events`` offset, which is already past it. A notify
role started again on the same folder sends it, once, to the server that came back."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import time

import orjson
import pytest
from aiosmtpd.smtp import SMTP
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ratiowatch.model.sessions import iso_utc
from ratiowatch.config import load_config
from ratiowatch.notifiers import RetryPolicy
from ratiowatch.notifiers.service import describe_unsent
from ratiowatch.notifiers.worker import Unsent
from ratiowatch.roles.notify import NOTIFY_APP_ID, NotifyRole
from ratiowatch.streams.topics import EVENTS
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.clients import kafka_python_kwargs_for

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning")]
PARTITIONS = 2
# keeps failing fast against a closed port, for as long as the test needs
PATIENT = RetryPolicy(attempts=10_000, base_delay_s=0.05, max_delay_s=0.2, deadline_s=3600, attempt_timeout_s=5)


def _event() -> dict:
    ts = 1_721_246_400_000
    return {"schema_version": 1, "event_id": "ab" * 16, "scenario": "small-caps-outperform",
            "title": "Small caps outperform large caps", "rule": "trigger", "kind": "fired", "series": "IWM/SPY",
            "direction": "up", "at": iso_utc(ts), "ts_ms": ts, "value": 0.1042, "threshold": 0.1, "lookback": 63,
            "series_value": 0.35, "description": "IWM/SPY 63-session change >= +10.00%",
            "windows": {"21": 0.05, "63": 0.1042}, "confirmations": []}


def _config(tmp_path, port: int):
    p = tmp_path / "scenarios.yaml"
    p.write_text("\n".join([
        "channels:",
        f'  desk-mail: "mailto://127.0.0.1:{port}?from=ratiowatch@example.com&to=trader@example.com"',
        "scenarios:",
        "  - id: small-caps-outperform",
        "    title: Small caps outperform large caps",
        "    trigger: {series: IWM/SPY, lookback: 63, above: 0.10, rearm: 0.08}",
        "    notify: [desk-mail]",
    ]) + "\n")
    return load_config(p)


async def _until(cond, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _committed(bootstrap: str) -> dict[int, int | None]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=NOTIFY_APP_ID, enable_auto_commit=False,
                      **kafka_python_kwargs_for())
    try:
        return {p: c.committed(TopicPartition(EVENTS, p)) for p in range(PARTITIONS)}
    finally:
        c.close()


def _report(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ratiowatch.roles.notify"]


@pytest.mark.broker
async def test_a_stop_mid_retry_is_reported_and_a_restart_on_the_same_folder_sends_it(tmp_path, caplog):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there yet: connection refused
    cfg = _config(tmp_path, port)
    datadir = str(tmp_path / "data")
    caplog.set_level(logging.INFO, logger="ratiowatch.roles.notify")
    with EmbeddedBroker() as broker:
        ensure_topics(broker, PARTITIONS)
        role = NotifyRole(cfg, bootstrap=broker.bootstrap, partitions=PARTITIONS, datadir=datadir, retry=PATIENT)
        await role.start()
        try:
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, **kafka_python_kwargs_for())
            meta = producer.send(EVENTS, key=b"small-caps-outperform", value=orjson.dumps(_event())).get(10)
            producer.close()
            await _until(lambda: any(u.state == "retrying" and u.failed_attempts >= 2
                                     for u in role.service.unsent_now()), "the notification to be retrying")
            # what the report must not claim: the committed offset is already past the event
            await _until(lambda: (_committed(broker.bootstrap)[meta.partition] or 0) > meta.offset,
                         "the event's offset to be committed while its notification retries")
        finally:
            await role.stop()
        (line,) = _report(caplog)
        inbox = role.service.store_path.replace("notifications.sqlite", "inbox.sqlite")
        assert line.startswith("notify: stopping with 1 notification not sent (1 mid-retry): desk-mail: "
                               "small-caps-outperform (1 event, retrying after "), line
        assert f"last: channel desk-mail: connection refused by 127.0.0.1:{port}" in line, line
        assert f"they resume from the inbox {inbox}, not from the committed `events` offset" in line, line
        assert [u.event_ids for u in role.service.unsent] == [(_event()["event_id"],)]

        # the server comes back; a notify role on the same folder sends the notification, once
        received = []

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                received.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        server = await asyncio.get_running_loop().create_server(lambda: SMTP(Handler(), hostname="127.0.0.1"),
                                                                "127.0.0.1", port)
        caplog.clear()
        again = NotifyRole(cfg, bootstrap=broker.bootstrap, partitions=PARTITIONS, datadir=datadir, retry=PATIENT)
        await again.start()
        try:
            await _until(lambda: received and again.service.pending == 0, "the notification to be sent")
        finally:
            await again.stop()
            server.close()
            await server.wait_closed()
    assert len(received) == 1 and received[0]["Subject"].startswith("Small caps outperform large caps"), received
    assert again.handled == 1  # handed over from the inbox: the group did not read the event again
    assert _report(caplog)[-1] == "notify: stopped with no notification pending"


def test_describe_unsent_names_each_state():
    text = describe_unsent([
        Unsent("desk-mail", "small-caps", ("e1", "e2"), "retrying", 3, "channel desk-mail: connection refused by h:25"),
        Unsent("desk-slack", "small-caps", ("e1",), "held"),
        Unsent("desk-slack", "dollar-below-100", ("e3",), "grouping"),
        Unsent("desk-mail", "curve", ("e4",), "sending", redelivery=True),
        Unsent("desk-mail", "breadth", ("e5",), "sending", 1, "channel desk-mail: no answer from h:25 in time"),
    ])
    assert text == ("6 notifications not sent (3 mid-retry): desk-mail: small-caps (2 events, retrying after 3 failed "
                    "attempts; last: channel desk-mail: connection refused by h:25); desk-slack: small-caps (1 event, "
                    "held by quiet hours or the rate limit); desk-slack: dollar-below-100 (1 event, in an open group "
                    "window); desk-mail: curve (1 event, attempt 1 under way at the stop, which may still reach the "
                    "channel; a dlq re-delivery); desk-mail: breadth (1 event, attempt 2 under way at the stop, which "
                    "may still reach the channel; last failure: channel desk-mail: no answer from h:25 in time)")
    assert describe_unsent([]) == ""
