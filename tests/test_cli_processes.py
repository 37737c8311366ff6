"""The commands as a user runs them, in separate processes: `ratiowatch broker` shared by
`ratiowatch run --broker`, and the default `ratiowatch run` on the embedded broker."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker
# The installed console script, as a user runs it (`python -m` would put the repo root on sys.path).
RW = [str(Path(sys.executable).with_name("ratiowatch"))]


def test_run_on_the_embedded_default_prints_a_crossing_and_exits_0(tmp_path):
    out = subprocess.run(RW + ["run", "--duration", "25"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ALERT: [SIMULATED] Small caps outperform large caps\n  IWM/SPY 3-month change is +" in out.stdout, out.stdout[-3000:]
    assert re.search(r"stopped: \d+ ticks in, 0 dead-lettered, \d+ events", out.stdout)


def test_broker_process_shared_by_a_worker_in_another_process(tmp_path):
    broker = subprocess.Popen(RW + ["broker", "--partitions", "8"], stdout=subprocess.PIPE, text=True)
    try:
        line = broker.stdout.readline()
        m = re.match(r"bootstrap: (127\.0\.0\.1:\d+)", line)
        assert m, line
        out = subprocess.run(RW + ["run", "--broker", f"kafka://{m.group(1)}", "--duration", "25"],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "ALERT: [SIMULATED] Small caps outperform large caps" in out.stdout, out.stdout[-3000:]
        assert f"broker: kafka://{m.group(1)}" in out.stdout
    finally:
        broker.terminate()
        broker.wait(timeout=20)
    assert broker.returncode == 0


@pytest.mark.parametrize("argv, needle", [
    (["run", "--config", "/nonexistent/scenarios.yaml"], "/nonexistent/scenarios.yaml: file not found"),
    (["run", "--broker", "localhost:9092"], "--broker must look like kafka://host:port"),
    (["run", "--duration", "-1"], "--duration must be > 0"),
    (["run", "--serve", "localhost:http"], "argument --serve: expected HOST:PORT"),
    (["run", "--serve", "0.0.0.0:8765"], "needs a token: set RATIOWATCH_TOKEN"),
    (["run", "--feed", "http://127.0.0.1:1/x"], "--feed must be a ws:// or wss:// URL"),
    (["run", "--feed-format", "fix"], "--feed-format must be one of plain, polygon, alpaca, finnhub, coinbase"),
    (["run", "--feed-subscribe", "{oops"], "--feed-subscribe is not JSON"),
])
def test_bad_start_input_fails_with_exit_2_and_says_why(argv, needle):
    t0 = time.monotonic()
    out = subprocess.run(RW + argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert needle in out.stderr


@pytest.mark.parametrize("role", ["engine", "notify", "web", "source"])
def test_a_role_without_a_broker_says_so_and_exits_2(role):
    out = subprocess.run(RW + [role], capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in __import__("os").environ.items() if k != "RATIOWATCH_BROKER"})
    assert out.returncode == 2
    assert "--broker kafka://HOST:PORT is required" in out.stderr


@pytest.mark.parametrize("role", ["engine", "notify", "web", "source", "run"])
def test_a_role_against_an_unreachable_broker_exits_1_saying_so(role):
    # Port 1 on loopback: nothing listens there. Each role gives up within its bound (10-15 s).
    out = subprocess.run(RW + [role, "--broker", "kafka://127.0.0.1:1"] + (["--start-timeout", "10"] if role in
                         ("engine", "notify", "web") else []), capture_output=True, text=True, timeout=90)
    assert out.returncode == 1, out.stderr[-2000:]
    assert re.search(r"(cannot reach the broker|could not start).*127\.0\.0\.1:1", out.stderr), out.stderr[-2000:]


def test_a_role_serving_beyond_loopback_without_a_token_is_refused():
    env = {k: v for k, v in __import__("os").environ.items() if k != "RATIOWATCH_TOKEN"}
    out = subprocess.run(RW + ["web", "--broker", "kafka://127.0.0.1:1", "--http", "0.0.0.0:9999"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2
    assert "--http 0.0.0.0:9999: serving on a non-loopback address needs a token" in out.stderr


def test_a_role_without_its_http_server_stays_alive_past_the_stall_limit(tmp_path):
    # With --http off nothing serves /healthz, yet the unready watchdog still reads the heartbeat:
    # the role must keep beating, or it would exit 3 once the 10 s stall limit (+3 s) has passed.
    from ratiowatch.streams.app import ensure_topics
    from ratiowatch.streams.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        ensure_topics(broker, 2)
        out = subprocess.run(RW + ["web", "--broker", broker.url, "--http", "off", "--unready-timeout", "3",
                                   "--duration", "20"], capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "not ready for" not in out.stderr
