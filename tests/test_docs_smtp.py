"""docs/notifications.md's local SMTP recipe, against a stock relay (issue 20, "the SMTP recipe works
against a stock local relay").

The relay is aiosmtpd exactly as the docs start it, ``python -m aiosmtpd -n -l 127.0.0.1:PORT``, as a
subprocess: its default handler prints every message it receives to stdout, and it offers no AUTH.
The URL is the one the docs write, with only PORT filled in, delivered by ratiowatch's notification
service. The docs also say why the URL has no ``user:pass@``: with one, nothing is sent; that is
checked too.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ratiowatch.agents.engine import ScenarioEngine
from ratiowatch.config import default_config_path, load_config
from ratiowatch.notifiers import NotificationService, RetryPolicy
from ratiowatch.streams.history import daily_ticks, load_history

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "notifications.md"
FAST = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.05, deadline_s=30, attempt_timeout_s=20)


def documented() -> tuple[str, str]:
    """(the relay command, the channel URL) as docs/notifications.md writes them."""
    text = DOC.read_text()
    relay = re.search(r"`(python -m aiosmtpd [^`]*PORT[^`]*)`", text)
    assert relay, "docs/notifications.md no longer names the stock relay `python -m aiosmtpd ... PORT`"
    after = text[relay.end():]
    url = re.search(r"`(mailto://[^`]*PORT[^`]*)`", after)
    assert url, "docs/notifications.md: no `mailto://...PORT...` URL after the relay command"
    return relay[1], url[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def crossing(history_dir):
    """The last 'fired' trigger event of small-caps-outperform over the real history."""
    cfg = load_config()
    sc = cfg.scenario("small-caps-outperform")
    eng = ScenarioEngine(sc, cfg.settings)
    st, found = eng.new_state(), None
    for _d, ticks in daily_ticks(load_history(history_dir, sc.symbols), cfg.settings.session_timezone):
        for e in eng.apply(st, ticks[0].ts_ms, ticks):
            if e["rule"] == "trigger" and e["kind"] == "fired":
                found = e
    assert found
    return found


@pytest.fixture
def relay(tmp_path):
    """The documented relay command, run as written (PORT filled in, `python` this interpreter)."""
    cmd, _url = documented()
    port = free_port()
    argv = [sys.executable if a == "python" else a for a in cmd.replace("PORT", str(port)).split()]
    out = tmp_path / "relay.out"
    with open(out, "w") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:  # until it accepts connections
            assert proc.poll() is None, out.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"the relay never listened: {out.read_text()}"
                time.sleep(0.1)
        yield port, out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def service(tmp_path, url: str, published: list) -> NotificationService:
    raw = yaml.safe_load(Path(default_config_path()).read_text())
    raw["channels"] = {"local-mail": url}
    for s in raw["scenarios"]:
        s["notify"] = ["local-mail"] if s["id"] == "small-caps-outperform" else ["console"]
    path = tmp_path / "scenarios.yaml"
    path.write_text(yaml.safe_dump(raw))

    async def publish(topic, key, value):
        published.append((topic, value))

    return NotificationService(load_config(path), publish, store_path=tmp_path / "n.sqlite", retry=FAST)


async def deliver(tmp_path, url: str, event: dict) -> list[tuple[str, bytes]]:
    published: list[tuple[str, bytes]] = []
    svc = service(tmp_path, url, published)
    await svc.start()
    try:
        await svc.handle(event)
        assert await svc.drain(60)
    finally:
        await svc.stop()
    return published


async def test_the_documented_url_delivers_to_a_stock_aiosmtpd(tmp_path, relay, crossing):
    port, out = relay
    _cmd, url = documented()
    url = url.replace("PORT", str(port))
    published = await deliver(tmp_path, url, crossing)
    deliveries = [json.loads(v) for t, v in published if t == "deliveries"]
    assert [d["outcome"] for d in deliveries][-1:] == ["delivered"], deliveries
    assert not [v for t, v in published if t == "notifications.dlq"]
    # aiosmtpd's default handler prints what it received.
    deadline = time.monotonic() + 10
    while "END MESSAGE" not in out.read_text():
        assert time.monotonic() < deadline, out.read_text()[-2000:]
        await asyncio.sleep(0.1)
    text = out.read_text()
    assert text.count("MESSAGE FOLLOWS") == 1, text[-2000:]
    frm, to = re.search(r"from=([^&]+)", url)[1], re.search(r"to=([^&]+)", url)[1]
    assert re.search(rf"^To: {re.escape(to)}$", text, re.M) and re.search(rf"^From: .*{re.escape(frm)}", text, re.M)
    assert "Subject: Small caps outperform large caps" in text


async def test_with_a_login_the_stock_relay_refuses_it_as_the_docs_say(tmp_path, relay, crossing):
    port, out = relay
    _cmd, url = documented()
    assert "@127.0.0.1" not in url and "@HOST" not in url, f"the documented local URL carries a login: {url}"
    with_login = url.replace("PORT", str(port)).replace("mailto://", "mailto://user:pass@")
    published = await deliver(tmp_path, with_login, crossing)
    assert [t for t, _v in published if t == "notifications.dlq"], published
    assert "MESSAGE FOLLOWS" not in out.read_text()
