"""Silences end to end: the ``silence`` command writes to the embedded broker, the notify role
follows the ``silences`` topic, and a real SMTP server (aiosmtpd on 127.0.0.1) shows what was
sent. A silence on spy-level suppresses its email (``deliveries`` says ``silenced``, naming the
silence) while another scenario's email goes; after ``silence expire`` the next crossing is
emailed and the suppressed one never is. A malformed record on ``silences`` is counted and
skipped, and bad input to the command writes nothing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import orjson
import pytest
import yaml
from kafka import KafkaProducer

from peers import SmtpPeer
from ratiowatch.agents.engine import ShardEngine
from ratiowatch.cli import main
from ratiowatch.config import load_config
from ratiowatch.notifiers import RetryPolicy
from ratiowatch.ops.metrics import Metrics
from ratiowatch.roles.notify import NotifyRole
from ratiowatch.streams.topics import DELIVERIES, EVENTS, SILENCES
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.clients import kafka_python_kwargs_for
from ratiowatch.streams.readback import read_topic

pytestmark = [pytest.mark.broker, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
FIXTURES = Path(__file__).parent / "fixtures"
PASSWORD = "pa55-Word-Never-Shown"
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, deadline_s=30, attempt_timeout_s=20)


def _config(tmp_path: Path, smtp_port: int) -> Path:
    raw = yaml.safe_load((FIXTURES / "levels.yaml").read_text())
    raw["channels"] = {"desk-mail": f"mailto://alerts-bot:{PASSWORD}@127.0.0.1:{smtp_port}"
                                    "?from=ratiowatch@example.com&to=trader@example.com"}
    for s in raw["scenarios"]:
        s["notify"] = ["desk-mail"]
    p = tmp_path / "scenarios.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _crossings(cfg) -> list[list[dict]]:
    """Trigger events made by the engine, in three steps: both scenarios fire; spy-level re-arms;
    spy-level fires again."""
    eng, states, t0 = ShardEngine(cfg.scenarios, cfg.settings), {}, 1_767_000_000_000
    steps = [[("SPY", 99.0), ("IWM", 40.0)], [("SPY", 101.0), ("IWM", 60.0)], [("SPY", 99.0)], [("SPY", 101.0)]]
    out = []
    for i, ticks in enumerate(steps):
        ts = t0 + i * 86_400_000
        events, _ = eng.apply(states, ts, [(sym, px, ts) for sym, px in ticks])
        out.append([e for e in events if e["rule"] == "trigger"])
    return out[1:]


async def _until(cond, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["silence", *argv])  # blocking Kafka clients: off the loop
    out, err = capsys.readouterr()
    return code, out, err


def _deliveries(bootstrap: str) -> list[dict]:
    return [json.loads(v) for _k, v, _p, _o in read_topic(bootstrap, DELIVERIES)]


async def test_a_silence_mutes_email_until_it_is_expired(tmp_path, capsys, caplog):
    smtp = SmtpPeer()
    port = await smtp.start()
    cfg_path = _config(tmp_path, port)
    cfg = load_config(cfg_path)
    fire_both, rearm, fire_again = _crossings(cfg)
    assert sorted(e["scenario"] for e in fire_both) == ["iwm-spy-ratio", "spy-level"]
    assert [(e["scenario"], e["kind"]) for e in fire_again] == [("spy-level", "fired")]
    with EmbeddedBroker() as broker:
        ensure_topics(broker, cfg.settings.partitions)
        url = f"kafka://{broker.bootstrap}"
        common = ["--broker", url]

        # bad input: exit 2, a reason, nothing on the topic
        for argv, why in [(["add", "no-such", "--for", "1h"], "unknown scenario 'no-such'"),
                          (["add", "spy-level", "--for=-2h"], "longer than zero"),
                          (["add", "spy-level", "--until", "2021-01-01T00:00:00Z"], "not in the future")]:
            code, _out, err = await _cli(capsys, *argv, "--comment", "x", "--config", str(cfg_path), *common)
            assert (code, why in err) == (2, True), err
        code, _out, err = await _cli(capsys, "expire", "no-such-id", *common)
        assert code == 2 and "no silence 'no-such-id'" in err
        assert list(read_topic(broker.bootstrap, SILENCES)) == []

        code, out, err = await _cli(capsys, "add", "spy-level", "--for", "1h", "--comment", "known rally",
                                    "--author", "ana", "--config", str(cfg_path), *common)
        assert code == 0, err
        silence_id = out.strip()

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, **kafka_python_kwargs_for())
        producer.send(SILENCES, key=b"junk", value=b"{not a silence")  # written there by hand
        producer.flush()

        metrics = Metrics()
        notify = NotifyRole(cfg, bootstrap=broker.bootstrap, ephemeral=True, metrics=metrics, retry=FAST)
        await notify.start()
        try:
            # start() returned with the topic read: the silence is in force, the junk counted
            assert notify.silences.silences.get(silence_id) is not None
            assert notify.bad_silences == 1
            assert metrics.value("ratiowatch_bad_records_total", {"role": "notify", "topic": SILENCES}) == 1

            def send(events):
                for e in events:
                    producer.send(EVENTS, key=e["scenario"].encode(), value=orjson.dumps(e))
                producer.flush()

            send(fire_both)
            await _until(lambda: len(smtp.messages) == 1 and notify.service.pending == 0, "iwm-spy-ratio emailed")
            await _until(lambda: any(d["outcome"] == "silenced" for d in _deliveries(broker.bootstrap)),
                         "silenced record on deliveries")
            assert smtp.messages[0]["Subject"].startswith("IWM/SPY above 0.5")
            muted = next(e for e in fire_both if e["scenario"] == "spy-level")
            recs = _deliveries(broker.bootstrap)
            assert [(d["scenario"], d["channel"], d["outcome"], d.get("silence")) for d in recs
                    if d["event_id"] == muted["event_id"]] == [("spy-level", "desk-mail", "silenced", silence_id)]
            assert metrics.value("ratiowatch_notifications_total", {"channel": "desk-mail", "outcome": "silenced"}) == 1

            # a malformed record while running: counted, and the silence stays in force
            producer.send(SILENCES, key=silence_id.encode(), value=b'{"id": "other"}')
            producer.flush()
            await _until(lambda: notify.bad_silences == 2, "second bad record counted")
            assert notify.silences.muted("spy-level", time.time()) == silence_id

            code, out, err = await _cli(capsys, "expire", silence_id, *common)
            assert code == 0 and silence_id in out, err
            await _until(lambda: notify.silences.muted("spy-level", time.time()) is None, "expiry reached notify")
            code, _out, err = await _cli(capsys, "expire", silence_id, *common)
            assert code == 2 and "already expired" in err

            send(rearm + fire_again)
            await _until(lambda: len(smtp.messages) == 2 and notify.service.pending == 0, "spy-level emailed")
            assert smtp.messages[1]["Subject"].startswith("SPY above 100")
            recs = _deliveries(broker.bootstrap)
            # the crossing muted earlier was never sent, before or after the expiry
            assert {d["outcome"] for d in recs if d["event_id"] == muted["event_id"]} == {"silenced"}
            assert [d["outcome"] for d in recs if d["event_id"] == fire_again[0]["event_id"]] == ["delivered"]
        finally:
            await notify.stop()
            producer.close()
            await smtp.stop()

        code, out, err = await _cli(capsys, "list", "--json", *common)
        assert code == 0
        (listed,) = json.loads(out)  # the expired silence is still listed; the junk is reported
        assert (listed["id"], listed["state"], listed["matchers"], listed["author"], listed["comment"]) == \
            (silence_id, "expired", ["spy-level"], "ana", "known rally")
        assert "skipped" in err
        code, out, _err = await _cli(capsys, "list", *common)
        assert code == 0 and silence_id in out and "expired" in out and "known rally" in out
