"""Delivery to real peers on 127.0.0.1: an SMTP server (aiosmtpd) for email with the chart, HTTP
servers for apprise's json://, form://, ntfy:// and mmost:// (Mattermost's Slack-compatible
incoming webhook), and the console. Slack's own cloud cannot be reached here: for ``slack://``
only apprise's HTTP call is replaced, to check the payload it would send."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import logging
import struct
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult

from ratiowatch.agents.engine import ScenarioEngine
from ratiowatch.config import default_config_path, load_config
from ratiowatch.notifiers import NotificationService, RetryPolicy
from ratiowatch.notifiers.chart import history_from_folder
from ratiowatch.notifiers.render import render_slack
from ratiowatch.notifiers.route import FIRING, Notice
from ratiowatch.streams.history import daily_ticks, load_history

HISTORY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "history"
TZ = "America/New_York"
PASSWORD = "pa55-Word-Never-Shown"
TOKEN = "mmTOKENsecret0123456789"
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, deadline_s=30, attempt_timeout_s=20)


# ------------------------------------------------------------------ peers

from peers import HttpPeer, SmtpPeer  # noqa: E402  (tests/ is on sys.path)


# ------------------------------------------------------------------ config and events

def config_with(tmp_path, channels: dict, notify: list[str], scenario="small-caps-outperform"):
    """The shipped scenario file with these channels, ``scenario`` notifying ``notify``."""
    raw = yaml.safe_load(Path(default_config_path()).read_text())
    raw["channels"] = channels
    for s in raw["scenarios"]:
        s["notify"] = notify if s["id"] == scenario else ["console"]
    p = tmp_path / "scenarios.yaml"
    p.write_text(yaml.safe_dump(raw))
    return load_config(p)


@pytest.fixture(scope="module")
def crossing():
    """The newest 'fired' trigger event the engine finds for small-caps-outperform in real history."""
    cfg = load_config()
    sc = cfg.scenario("small-caps-outperform")
    eng, st, found = ScenarioEngine(sc, cfg.settings), None, None
    st = eng.new_state()
    for _d, ticks in daily_ticks(load_history(HISTORY, sc.symbols), TZ):
        for e in eng.apply(st, ticks[0].ts_ms, ticks):
            if e["rule"] == "trigger" and e["kind"] == "fired":
                found = e
    return found


class Recorder:
    def __init__(self):
        self.records: list[tuple[str, bytes | None, bytes]] = []

    async def __call__(self, topic, key, value):
        self.records.append((topic, key, value))

    def deliveries(self):
        return [json.loads(v) for t, _k, v in self.records if t == "deliveries"]


# ------------------------------------------------------------------ email

@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_html_email_with_chart_reaches_a_real_smtp_server(tmp_path, crossing, caplog):
    for name in ("apprise", "ratiowatch"):  # what our process logs (the SMTP peer's own log is the server's)
        caplog.set_level(logging.DEBUG, logger=name)
    smtp = SmtpPeer()
    port = await smtp.start()
    url = f"mailto://alerts-bot:{PASSWORD}@127.0.0.1:{port}?from=ratiowatch@example.com&to=trader@example.com"
    cfg = config_with(tmp_path, {"desk-mail": url}, ["desk-mail"])
    rec = Recorder()
    svc = NotificationService(cfg, rec, history_for=history_from_folder(HISTORY, TZ),
                              store_path=tmp_path / "n.sqlite", retry=FAST)
    await svc.start()
    try:
        await svc.handle(crossing)
        assert await svc.drain(60)
    finally:
        await svc.stop()
        await smtp.stop()

    assert smtp.logins == [(b"alerts-bot", PASSWORD.encode())]
    assert len(smtp.messages) == 1
    msg = smtp.messages[0]
    value = f"{crossing['value'] * 100:+.2f}%"
    assert msg["Subject"] == f"Small caps outperform large caps: IWM/SPY 3-month change {value}"
    assert msg["To"] == "trader@example.com" and msg["From"].endswith("ratiowatch@example.com")
    html_part = next(p for p in msg.walk() if p.get_content_type() == "text/html")
    body = html_part.get_content()
    assert f"<b>{value}</b>: crossed above the trigger <b>+10.00%</b> (re-arms at +8.00%)" in body
    met = sum(1 for c in crossing["confirmations"] if c["met"])
    assert f"<b>Confirmations</b>: {met} of {len(crossing['confirmations'])} met" in body
    for c in crossing["confirmations"]:
        assert c["label"] in body
    readings = next(line for line in body.splitlines() if "<b>Readings</b>" in line)
    names = {"21": "1 month", "63": "3 months", "126": "6 months", "252": "12 months"}
    for w, v in crossing["windows"].items():
        assert f"{names[w]} <b>{v * 100:+.2f}%</b>" in readings
    assert "Small caps (IWM) beat the S&amp;P 500 (SPY)" in body
    plain = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_content()
    assert f"Readings: 1 month {crossing['windows']['21'] * 100:+.2f}%" in plain  # readable without HTML too
    pngs = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(pngs) == 1 and pngs[0].get_filename() == "chart.png"
    png = pngs[0].get_content()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1000, 500)

    assert [(d["channel"], d["attempt"], d["outcome"]) for d in rec.deliveries()] == [("desk-mail", 1, "delivered")]
    everything = b"".join(v for _t, _k, v in rec.records).decode() + caplog.text
    assert "Loaded E-Mail URL" in caplog.text  # apprise logged the URL, with the secrets redacted
    assert PASSWORD not in everything
    assert "alerts-bot" not in everything


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_email_without_history_goes_without_a_chart(tmp_path, crossing):
    smtp = SmtpPeer()
    port = await smtp.start()
    url = f"mailto://alerts-bot:{PASSWORD}@127.0.0.1:{port}?from=ratiowatch@example.com&to=trader@example.com"
    cfg = config_with(tmp_path, {"desk-mail": url}, ["desk-mail"])
    svc = NotificationService(cfg, Recorder(), history_for=lambda ev: None, store_path=tmp_path / "n.sqlite",
                              retry=FAST)
    async with svc:
        await svc.handle(crossing)
        assert await svc.drain(60)
    await smtp.stop()
    assert len(smtp.messages) == 1
    assert [p.get_content_type() for p in smtp.messages[0].walk() if p.get_content_maintype() == "image"] == []


# ------------------------------------------------------------------ HTTP: json, form, ntfy, Mattermost, console

async def test_json_form_ntfy_and_mattermost_payloads(tmp_path, crossing):
    peer = HttpPeer()
    port = await peer.start()
    channels = {"svc-json": f"json://127.0.0.1:{port}/json", "svc-form": f"form://127.0.0.1:{port}/form",
                "phone": f"ntfy://127.0.0.1:{port}/trader-alerts", "chat": f"mmost://127.0.0.1:{port}/{TOKEN}"}
    cfg = config_with(tmp_path, channels, ["console", *channels])
    rec, out = Recorder(), io.StringIO()
    svc = NotificationService(cfg, rec, store_path=tmp_path / "n.sqlite", retry=FAST, out=out)
    async with svc:
        await svc.handle(crossing)
        assert await svc.drain(60)
    await peer.stop()

    value = f"{crossing['value'] * 100:+.2f}%"
    # json:// -> the events themselves, for services
    (raw,) = peer.at("/json")
    outer = json.loads(raw)
    doc = json.loads(outer["message"])
    assert outer["title"] == "Small caps outperform large caps"
    assert doc["status"] == "firing" and doc["scenario"] == "small-caps-outperform"
    assert {k: v for k, v in doc["events"][0].items() if k != "status"} == crossing
    # form:// -> the same, form-encoded
    (raw,) = peer.at("/form")
    form = parse_qs(raw.decode())
    assert json.loads(form["message"][0])["events"][0]["event_id"] == crossing["event_id"]
    # ntfy:// -> a push: title and one line
    (raw,) = peer.at("/")
    push = json.loads(raw)
    assert push["topic"] == "trader-alerts" and push["title"] == "Small caps outperform large caps"
    assert "\n" not in push["message"] and push["message"].startswith(f"IWM/SPY 3-month change {value}: crossed above")
    # mmost:// -> Slack's payload format with the mrkdwn text exactly as rendered
    (raw,) = peer.at(f"/hooks/{TOKEN}")
    sc = cfg.scenario("small-caps-outperform")
    assert json.loads(raw)["text"] == render_slack([Notice(crossing, FIRING, sc)], TZ)
    # console -> readable text on stdout
    printed = out.getvalue()
    assert printed.startswith("ALERT: Small caps outperform large caps\n") and value in printed

    outcomes = sorted((d["channel"], d["attempt"], d["outcome"]) for d in rec.deliveries())
    assert outcomes == sorted((c, 1, "delivered") for c in ["console", *channels])
    assert TOKEN not in b"".join(v for _t, _k, v in rec.records).decode()


async def test_slack_webhook_payload_is_escaped_once(tmp_path, crossing, monkeypatch):
    """slack:// goes to hooks.slack.com, which this machine cannot reach: apprise's HTTP call is
    replaced by a recorder (the only fake here) to check what apprise would post."""
    from apprise.plugins.slack import NotifySlack

    posted = []

    def fake_send(self, url, payload, *args, **kwargs):
        posted.append((url, payload))
        return {"ok": True}

    monkeypatch.setattr(NotifySlack, "_send", fake_send)
    cfg = config_with(tmp_path, {"desk": "slack://T0SECRET1/B0SECRET2/slackSECRETtoken3"}, ["desk"])
    rec = Recorder()
    async with NotificationService(cfg, rec, store_path=tmp_path / "n.sqlite", retry=FAST) as svc:
        await svc.handle(crossing)
        assert await svc.drain(60)
    (url, payload), = posted
    assert url == "https://hooks.slack.com/services/T0SECRET1/B0SECRET2/slackSECRETtoken3"
    text = payload["attachments"][0]["text"]
    want = render_slack([Notice(crossing, FIRING, cfg.scenario("small-caps-outperform"))], TZ)
    assert payload["mrkdwn"] is True and text.replace("\n&gt; ", "\n> ") == want
    assert "S&amp;P 500" in text and "&amp;amp;" not in text
    assert [d["outcome"] for d in rec.deliveries()] == ["delivered"]
