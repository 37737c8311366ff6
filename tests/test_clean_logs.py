"""Logs an on-call engineer can trust: nothing at ERROR level in normal operation.

A clean `ratiowatch run` and two engines joining one group log no ERROR line; the Kafka clients'
known-harmless ERROR records are downgraded at their loggers (ratiowatch/logs.py), exactly those,
and only while the library says exactly that."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiokafka import errors as aio_errors
from kafka import KafkaConsumer
from kafka import errors as kafka_errors

from ratiowatch import logs
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker

RW = str(Path(sys.executable).with_name("ratiowatch"))
# the CLI's format: "%(asctime)s %(levelname)s %(name)s: %(message)s"
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>DEPRECATION WARNING|[A-Z]+) ")


def error_lines(text: str) -> list[str]:
    """Lines logged at ERROR or above, and tracebacks (an exception printed by whatever)."""
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if (m and m.group("level") in ("ERROR", "CRITICAL", "DEPRECATION WARNING")) or line.startswith("Traceback"):
            out.append(line)
    return out


def levels(text: str) -> set[str]:
    return {m.group("level") for line in text.splitlines() if (m := LINE.match(line))}


# ------------------------------------------------------------------ whole processes

@pytest.mark.broker
def test_a_clean_run_logs_no_error(tmp_path):
    out = subprocess.run([RW, "-v", "run", "--duration", "30"], capture_output=True, text=True, timeout=180,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "stopped:" in out.stdout and "ALERT" in out.stdout, out.stdout[-2000:]
    # -v logs INFO: the check below sees every level the run logged (it is not blind)
    assert "INFO" in levels(out.stderr), out.stderr[-2000:]
    bad = error_lines(out.stderr) + error_lines(out.stdout)
    assert not bad, "a clean run logged at ERROR level:\n" + "\n".join(bad)


class Engine:
    """`ratiowatch -v engine --broker URL --http off`, its output collected."""

    def __init__(self, url: str, cwd: Path) -> None:
        env = dict(os.environ, RATIOWATCH_SESSION_TIMEOUT_S="6")
        self.proc = subprocess.Popen([RW, "-v", "engine", "--broker", url, "--http", "off"], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def owns(self) -> set[int]:
        owned = [m.group(1) for line in self.lines if (m := re.search(r"owns shards ([\d,]*|none) of", line))]
        return set() if not owned or owned[-1] == "none" else {int(s) for s in owned[-1].split(",")}

    def text(self) -> str:
        return "".join(self.lines)


@pytest.mark.broker
def test_two_engines_joining_one_group_log_no_error(tmp_path):
    with EmbeddedBroker() as broker:
        ensure_topics(broker, 8)
        # started together, as `docker compose up --scale engine=2` starts them: a join with a
        # rebalance (and, on the embedded broker, a refused late SyncGroup now and then)
        a, b = Engine(broker.url, tmp_path), Engine(broker.url, tmp_path)
        try:
            deadline = time.monotonic() + 120
            while not (a.owns() and b.owns() and not a.owns() & b.owns() and len(a.owns() | b.owns()) == 8):
                assert a.proc.poll() is None and b.proc.poll() is None, a.text()[-3000:] + b.text()[-3000:]
                assert time.monotonic() < deadline, ("the engines did not split the shards:\n"
                                                     + a.text()[-3000:] + "\n---\n" + b.text()[-3000:])
                time.sleep(0.5)
        finally:
            for e in (a, b):
                if e.proc.poll() is None:
                    e.proc.send_signal(signal.SIGTERM)
            codes = [e.proc.wait(timeout=60) for e in (a, b)]
            for e in (a, b):
                e.reader.join(timeout=10)
    assert codes == [0, 0], a.text()[-3000:] + b.text()[-3000:]
    text = a.text() + b.text()
    assert "INFO" in levels(text)
    bad = error_lines(text)
    assert not bad, "two engines joining logged at ERROR level:\n" + "\n".join(bad)
    # what the embedded broker's refused SyncGroup leaves, when it happens: ratiowatch's WARNING,
    # and aiokafka's record of it at INFO
    if "SyncGroup for group ratiowatch was refused" in text:
        assert re.search(r" INFO aiokafka\.consumer\.group_coordinator: Unexpected error from SyncGroup: "
                         r"\[Error 42\] InvalidRequestError", text), text[-3000:]


# ------------------------------------------------------------------ the filters, record by record

class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def captured():
    """Records reaching the root handlers, with the filters on; every logger touched restored."""
    names = ("aiokafka.consumer.group_coordinator", "kafka.protocol.parser", "kafka.conn", "kafka")
    saved = {n: logging.getLogger(n).level for n in names}
    root = logging.getLogger()
    root_level = root.level
    h = Records()
    root.addHandler(h)
    root.setLevel(logging.INFO)
    for n in names:
        logging.getLogger(n).setLevel(logging.NOTSET)
    logs.install()
    try:
        yield h
    finally:
        logs.uninstall()
        root.removeHandler(h)
        root.setLevel(root_level)
        for n, lvl in saved.items():
            logging.getLogger(n).setLevel(lvl)


def test_the_known_harmless_records_are_downgraded_and_nothing_else(captured):
    coord = logging.getLogger("aiokafka.consumer.group_coordinator")
    # exactly as aiokafka 0.14 writes them (group_coordinator.py)
    tmpl = "OffsetCommit failed for group %s due to group error (%s), will rejoin"
    coord.error(tmpl, "ratiowatch", aio_errors.RebalanceInProgressError("ratiowatch"))
    coord.error(tmpl, "ratiowatch", aio_errors.UnknownMemberIdError("ratiowatch"))  # not known-harmless
    coord.error("Unexpected error from SyncGroup: %s", aio_errors.InvalidRequestError())
    coord.error("Unexpected error from SyncGroup: %s", aio_errors.GroupAuthorizationFailedError())
    coord.error("Heartbeat failed: %r", aio_errors.RebalanceInProgressError("ratiowatch"))
    conn = logging.getLogger("kafka.conn")
    conn.log(logging.ERROR, "%s: Closing connection. %s", "<BrokerConnection node_id=1 host=127.0.0.1:9092 <connected>>",
             kafka_errors.KafkaConnectionError("Socket EVENT_READ without in-flight-requests"))
    conn.log(logging.ERROR, "%s: Closing connection. %s", "<BrokerConnection node_id=1 host=127.0.0.1:9092 <connected>>",
             kafka_errors.KafkaConnectionError("Broken pipe"))

    assert captured.at(logging.INFO) == [
        "OffsetCommit failed for group ratiowatch due to group error ([Error 27] RebalanceInProgressError: "
        "ratiowatch), will rejoin",
        "Unexpected error from SyncGroup: [Error 42] InvalidRequestError",
        "<BrokerConnection node_id=1 host=127.0.0.1:9092 <connected>>: Closing connection. KafkaConnectionError: "
        "Socket EVENT_READ without in-flight-requests",
    ]
    errors = captured.at(logging.ERROR)
    assert len(errors) == 4, errors
    assert "UnknownMemberIdError" in errors[0] and "GroupAuthorizationFailedError" in errors[1]
    assert errors[2].startswith("Heartbeat failed") and "Broken pipe" in errors[3]


def test_a_downgraded_record_stays_out_of_a_run_without_v(captured):
    logging.getLogger().setLevel(logging.WARNING)  # the CLI without -v
    logging.getLogger("aiokafka.consumer.group_coordinator").error(
        "Unexpected error from SyncGroup: %s", aio_errors.InvalidRequestError())
    assert captured.records == []


@pytest.mark.broker
def test_a_kafka_python_client_without_the_version_pin_logs_no_error(captured):
    """kafka-python's ApiVersions probe against the embedded broker: an ERROR without the filters
    (so this test can fail), WARNINGs with them, naming the decoding failure."""
    def probe() -> None:
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)  # no api_version
        try:
            assert "t" in c.topics()
        finally:
            c.close()

    with EmbeddedBroker() as broker:
        broker.create_topic("t", 1)
        logs.uninstall()
        probe()
        unfiltered = captured.at(logging.ERROR)
        assert any("Unable to decode 17-byte buffer" in m for m in unfiltered), unfiltered
        captured.records.clear()
        logs.install()
        probe()
    assert captured.at(logging.ERROR) == [] and captured.at(logging.CRITICAL) == []
    warned = captured.at(logging.WARNING)
    assert any("Unable to decode 17-byte buffer" in m and "ApiVersionsResponse" in m for m in warned), warned
