"""Silences without a broker: the model, validation, the topic's records, muting at a time, and
the notification worker's mute check (a message held while a silence begins is not sent)."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from ratiowatch.cli import main
from ratiowatch.config import default_config_path, load_config
from ratiowatch.notifiers import NotificationService
from ratiowatch.notifiers.records import delivery_record
from ratiowatch.notifiers.silences import (ALL, SilenceError, SilenceSet, decode, encode, expire, new_silence,
                                           parse_duration, parse_until, state)

NOW = datetime(2026, 12, 2, 14, 0, tzinfo=timezone.utc)
KNOWN = ["small-caps-outperform", "dollar-below-100"]


def _add(*scenarios, **kw):
    kw.setdefault("comment", "on it")
    kw.setdefault("author", "ana")
    kw.setdefault("now", NOW)
    kw.setdefault("known", KNOWN)
    if "until" not in kw:
        kw.setdefault("duration", "4h")
    return new_silence(scenarios, **kw)


# ------------------------------------------------------------------ durations and times

@pytest.mark.parametrize("text, seconds", [("4h", 4 * 3600), ("30m", 1800), ("1d12h", 36 * 3600), ("2w", 14 * 86400),
                                           ("90s", 90), ("1.5h", 5400), (" 10M ", 600)])
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text, why", [("0h", "longer than zero"), ("-1h", "longer than zero"),
                                       ("0s0m", "longer than zero"), ("4", "expected a duration"),
                                       ("h", "expected a duration"), ("4 hours", "expected a duration"),
                                       ("", "expected a duration")])
def test_bad_durations(text, why):
    with pytest.raises(SilenceError, match=why):
        parse_duration(text)


def test_until_needs_an_offset_and_is_kept_in_utc():
    assert parse_until("2026-12-03T09:30:00-05:00") == datetime(2026, 12, 3, 14, 30, tzinfo=timezone.utc)
    assert parse_until("2026-12-03T09:30Z") == datetime(2026, 12, 3, 9, 30, tzinfo=timezone.utc)
    with pytest.raises(SilenceError, match="give a UTC offset"):
        parse_until("2026-12-03T09:30")
    with pytest.raises(SilenceError, match="not an ISO-8601 time"):
        parse_until("tomorrow")


# ------------------------------------------------------------------ validation

def test_a_valid_silence():
    s = _add("small-caps-outperform", duration="4h", comment="  FOMC  ")
    assert s.matchers == ("small-caps-outperform",)
    assert (s.starts_at, s.ends_at, s.created_at) == (NOW, NOW + timedelta(hours=4), NOW)
    assert s.comment == "FOMC" and s.author == "ana" and len(s.id) == 36
    u = _add(all_scenarios=True, until="2026-12-03T09:30:00-05:00")
    assert u.matchers == (ALL,) and u.ends_at == datetime(2026, 12, 3, 14, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("args, kw, why", [
    (("no-such",), {}, "unknown scenario 'no-such'"),
    ((), {}, "at least one scenario, or --all"),
    (("small-caps-outperform",), {"all_scenarios": True}, "not both"),
    (("small-caps-outperform",), {"duration": "0m"}, "longer than zero"),
    (("small-caps-outperform",), {"until": "2026-12-02T13:59:59Z"}, "not in the future"),
    (("small-caps-outperform",), {"until": "2026-12-02T14:00:00Z"}, "not in the future"),
    (("small-caps-outperform",), {"until": "2026-12-03T00:00Z", "duration": "1h"}, "exactly one of"),
    (("small-caps-outperform",), {"comment": "   "}, "--comment is required"),
    (("small-caps-outperform",), {"author": ""}, "--author must not be empty"),
])
def test_bad_input_says_why(args, kw, why):
    with pytest.raises(SilenceError, match=why):
        _add(*args, **kw)


def test_neither_for_nor_until():
    with pytest.raises(SilenceError, match="exactly one of"):
        new_silence(["small-caps-outperform"], comment="x", author="a", now=NOW, known=KNOWN)


# ------------------------------------------------------------------ muting, expiry, the set

def test_muted_only_inside_the_window_and_only_its_scenarios():
    s = _add("small-caps-outperform", duration="1h")
    assert s.active(NOW) and s.active(NOW + timedelta(minutes=59, seconds=59))
    assert not s.active(NOW + timedelta(hours=1))  # the end is exclusive, as Alertmanager's
    assert not s.active(NOW - timedelta(seconds=1))
    assert s.matches("small-caps-outperform") and not s.matches("dollar-below-100")
    assert _add(all_scenarios=True).matches("added-after-the-silence")


def test_expire_ends_it_now_and_keeps_it():
    s = _add("small-caps-outperform", duration="4h")
    later = NOW + timedelta(minutes=10)
    e = expire(s, later)
    assert (e.id, e.starts_at, e.ends_at, e.updated_at, e.created_at) == (s.id, NOW, later, later, NOW)
    assert state(s, later) == "active" and state(e, later) == "expired"
    with pytest.raises(SilenceError, match="already expired"):
        expire(e, later + timedelta(seconds=1))


def test_the_set_takes_the_latest_record_per_id_and_keeps_expired_ones():
    ss = SilenceSet()
    a = _add("small-caps-outperform", duration="4h")
    b = _add(all_scenarios=True, duration="1h", now=NOW + timedelta(minutes=1))
    for s in (a, b):
        ss.apply(*encode(s))
    t = NOW + timedelta(minutes=30)
    assert ss.muting("small-caps-outperform", t).id == a.id  # both match; a ends last
    assert ss.muting("dollar-below-100", t).id == b.id
    ss.apply(*encode(expire(a, t)))
    assert ss.muting("small-caps-outperform", t).id == b.id
    assert ss.muting("small-caps-outperform", NOW + timedelta(hours=2)) is None
    assert [s.id for s in ss.all()] == [b.id, a.id]  # newest first, the expired one still listed
    ss.apply(a.id.encode(), None)  # a tombstone written by hand removes it
    assert [s.id for s in ss.all()] == [b.id]


def test_records_round_trip_and_bad_ones_change_nothing():
    s = _add("small-caps-outperform", "dollar-below-100", duration="2h")
    key, value = encode(s)
    assert key == s.id.encode()
    assert json.loads(value)["ends_at"] == "2026-12-02T16:00:00.000Z"
    assert decode(key, value) == s
    ss = SilenceSet()
    ss.apply(key, value)
    good = json.loads(value)
    bad = [
        (key, b"not json", "not JSON"),
        (key, b"[1]", "JSON object"),
        (b"other", value, "is not the silence id"),
        (key, orjson.dumps({**good, "matchers": []}), "non-empty list"),
        (key, orjson.dumps({**good, "ends_at": "soon"}), "not ISO-8601"),
        (key, orjson.dumps({**good, "starts_at": "2026-12-02T14:00:00"}), "no UTC offset"),
        (key, orjson.dumps({**good, "ends_at": "2026-12-01T00:00:00Z"}), "before 'starts_at'"),
        (key, orjson.dumps({k: v for k, v in good.items() if k != "comment"}), "'comment' must be a string"),
    ]
    for k, v, why in bad:
        with pytest.raises(SilenceError, match=why):
            ss.apply(k, v)
    assert ss.all() == [s]  # the last good version stays in force


def test_a_silenced_delivery_record_names_its_silence():
    r = json.loads(delivery_record("e1", "s1", "desk", 0, "silenced", None, 5, "sil-1"))
    assert (r["outcome"], r["silence"], r["attempt"]) == ("silenced", "sil-1", 0)
    with pytest.raises(ValueError):
        delivery_record("e1", "s1", "desk", 0, "silenced", None, 5)
    with pytest.raises(ValueError):
        delivery_record("e1", "s1", "desk", 1, "delivered", None, 5, "sil-1")
    assert "silence" not in json.loads(delivery_record("e1", "s1", "desk", 1, "delivered", None, 5))


# ------------------------------------------------------------------ the worker's mute check

def _event(scenario: str, ts_ms: int) -> dict:
    return {"schema_version": 1, "event_id": f"{scenario}-{ts_ms}", "scenario": scenario, "title": "t",
            "rule": "trigger", "kind": "fired", "series": "SPY", "direction": "up", "at": "x", "ts_ms": ts_ms,
            "value": 101.0, "threshold": 100.0, "lookback": None, "series_value": 101.0, "description": "d",
            "windows": {}, "confirmations": []}


async def test_a_message_held_by_its_group_window_is_not_sent_once_a_silence_began(tmp_path):
    """The check is made when a message would go: an event queued before the silence, still in its
    group window when the silence is added, is recorded `silenced` and never sent, also after the
    silence has ended."""
    cfg_file = tmp_path / "s.yaml"
    cfg_file.write_text("channels: {out: console}\nscenarios:\n"
                        "  - {id: spy-level, trigger: {series: SPY, above: 100}, notify: [out], group_window_s: 60}\n"
                        "  - {id: other, trigger: {series: QQQ, above: 1}, notify: [out]}\n")
    cfg = load_config(cfg_file)
    clock = [NOW.timestamp()]
    silences = SilenceSet()
    records: list[dict] = []

    async def sleep(s: float) -> None:
        # The worker re-checks the (test-driven) clock every few ms instead of sleeping for real.
        await asyncio.sleep(0.005)

    async def publish(topic, key, value):
        if topic == "deliveries":
            records.append(json.loads(value))

    def muted(scenario, t):
        s = silences.muting(scenario, datetime.fromtimestamp(t, timezone.utc))
        return s.id if s else None

    async def until(cond, what, step_s=0.0):
        for _ in range(2000):
            if cond():
                return
            clock[0] += step_s
            await asyncio.sleep(0.005)
        raise AssertionError(what)

    out = io.StringIO()
    svc = NotificationService(cfg, publish, store_path=tmp_path / "n.sqlite", now=lambda: clock[0], sleep=sleep,
                              out=out, muted=muted)
    async with svc:
        await svc.handle(_event("spy-level", 1))
        await svc.handle(_event("other", 2))
        await until(lambda: [r["event_id"] for r in records] == ["other-2"], "other-2 sent at once")
        assert svc.pending == 1  # spy-level-1 waits in its 60 s group window
        silence = new_silence(["spy-level"], duration="1h", comment="x", author="a",
                              now=datetime.fromtimestamp(clock[0], timezone.utc), known=["spy-level", "other"])
        silences.put(silence)
        clock[0] += 61  # the window closes inside the silence
        assert await svc.drain(10)
        clock[0] += 7200  # the silence is over: a new crossing is sent, the muted one never
        await svc.handle(_event("spy-level", 3))
        # the worker starts its window when it takes the event: move the clock until it is sent
        await until(lambda: svc.pending == 0, "spy-level-3 sent", step_s=30)
    got = sorted((r["event_id"], r["outcome"], r.get("silence")) for r in records)
    assert got == [("other-2", "delivered", None), ("spy-level-1", "silenced", silence.id),
                   ("spy-level-3", "delivered", None)]
    assert out.getvalue().count("ALERT:") == 2


# ------------------------------------------------------------------ the command's bad input

@pytest.mark.parametrize("argv, why", [
    # Named against a file: without --config the ids in force are read from the cluster.
    (["add", "no-such", "--for", "4h", "--comment", "x", "--config", default_config_path()], "unknown scenario 'no-such'"),
    (["add", "small-caps-outperform", "--for", "0h", "--comment", "x"], "longer than zero"),
    (["add", "small-caps-outperform", "--until", "2020-01-01T00:00Z", "--comment", "x"], "not in the future"),
    (["add", "small-caps-outperform", "--for", "1h", "--comment", ""], "--comment is required"),
    (["add", "--all", "--comment", "x"], "exactly one of"),
])
def test_the_command_refuses_bad_input_before_touching_the_cluster(capsys, argv, why):
    # Port 9 (discard) on loopback: nothing listens, so a write attempt would fail differently.
    assert main(["silence", *argv, "--broker", "kafka://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert why in err and err.startswith("ratiowatch silence: ")


def test_the_command_needs_a_broker(capsys, monkeypatch):
    monkeypatch.delenv("RATIOWATCH_BROKER", raising=False)
    assert main(["silence", "list"]) == 2
    assert "--broker kafka://HOST:PORT is required" in capsys.readouterr().err
