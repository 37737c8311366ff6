"""Issue-level acceptance for notifications: `replay` over the real history, the shipped IWM/SPY
scenario routed to a real SMTP server and a local HTTP receiver. Exactly one email and one post
per trigger event, each with the chart, and `deliveries` accounts for every attempt."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import orjson
import pytest
import yaml

from ratiowatch.commands.replay import replay
from ratiowatch.config import default_config_path, load_config
from ratiowatch.streams.topics import DELIVERIES
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.readback import read_topic

from peers import HttpPeer, SmtpPeer  # a helper module in tests/, which pytest puts on sys.path

pytestmark = pytest.mark.broker


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_replay_delivers_one_email_and_one_post_per_trigger_event(tmp_path, history_dir, monkeypatch):
    smtp, http = SmtpPeer(), HttpPeer()
    smtp_port, http_port = await smtp.start(), await http.start()
    monkeypatch.setenv("SMTP_PASSWORD", smtp.password)
    shipped = yaml.safe_load(Path(default_config_path()).read_text())
    scenario = next(s for s in shipped["scenarios"] if s["id"] == "small-caps-outperform")
    scenario["notify"] = ["desk-email", "desk-hook"]
    cfg_file = tmp_path / "scenarios.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "settings": shipped["settings"],
        "channels": {
            "desk-email": f"mailto://alerts-bot:${{SMTP_PASSWORD}}@127.0.0.1:{smtp_port}"
                          f"?from=alerts@example.com&to=desk@example.com",
            "desk-hook": f"json://127.0.0.1:{http_port}/alerts",
        },
        "scenarios": [scenario],
    }))
    cfg = load_config(cfg_file)
    monkeypatch.chdir(tmp_path)
    try:
        with EmbeddedBroker() as broker:
            ensure_topics(broker, cfg.settings.partitions)
            events, _ = await replay(cfg, str(history_dir), broker=broker.url, notify=True)
            deliveries = [orjson.loads(v) for _, v, _, _ in read_topic(broker.bootstrap, DELIVERIES)]
    finally:
        await http.stop()
        await smtp.stop()

    fired = [e for e in events if e["rule"] == "trigger" and e["kind"] == "fired"]
    assert len(fired) == 9  # the dates are pinned in test_replay.py (small caps with `require: 4`)
    ids = {e["event_id"] for e in fired}

    assert len(smtp.messages) == len(fired)
    mailed = set()
    for msg in smtp.messages:
        body = msg.get_body(("plain",)).get_content()
        eid = next(e for e in ids if e in body)
        mailed.add(eid)
        ev = next(e for e in fired if e["event_id"] == eid)
        assert f"{ev['value'] * 100:+.2f}%" in body
        # A replayed crossing says so, with the day of the data, as received by the SMTP server.
        assert msg["Subject"].startswith(f"[REPLAY of {ev['at'][:10]}] Small caps outperform large caps: "
                                         "IWM/SPY 3-month change +")
        pngs = [p for p in msg.iter_attachments() if p.get_content_type() == "image/png"]
        assert len(pngs) == 1 and _png_size(pngs[0].get_content()) == (1000, 500)
    assert mailed == ids

    posts = [json.loads(b) for b in http.at("/alerts")]
    assert len(posts) == len(fired)
    posted = {next(e for e in ids if e in p["message"]) for p in posts}
    assert posted == ids
    for p in posts:
        assert len(p["attachments"]) == 1
        assert _png_size(base64.b64decode(p["attachments"][0]["base64"])) == (1000, 500)

    # The audit topic: one "delivered" record per (event, channel), attempt 1, nothing else.
    assert sorted((d["event_id"], d["channel"], d["attempt"], d["outcome"]) for d in deliveries) == sorted(
        (e, c, 1, "delivered") for e in ids for c in ("desk-email", "desk-hook"))
    assert all("alerts-bot" not in json.dumps(d) and smtp.password not in json.dumps(d) for d in deliveries)
