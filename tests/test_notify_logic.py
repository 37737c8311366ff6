"""Pure stages of the notification fan-out, the SQLite delivery record, redaction and
``ratiowatch config show``: no network."""

from __future__ import annotations

import argparse
import io
import contextlib
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from ratiowatch.commands import config as config_cmd
from ratiowatch.config import parse_config
from ratiowatch.errors import ConfigError
from ratiowatch.notifiers import NotificationService
from ratiowatch.notifiers.dedup import DeliveryLog, split_delivered
from ratiowatch.notifiers.deliver import classify, medium_for
from ratiowatch.notifiers.exceptions import InvalidEvent, PermanentError, RetryableError
from ratiowatch.notifiers.gate import Gate, RateLimiter, quiet_until
from ratiowatch.notifiers.group import Batch, Grouper
from ratiowatch.notifiers.records import delivery_record, dlq_record, parse_dlq_record
from ratiowatch.notifiers.redact import SECRET, Redactor, redact_url
from ratiowatch.notifiers.retry import RetryPolicy, backoff_s, retry
from ratiowatch.notifiers.route import FIRING, RESOLVED, Notice, route

NY = ZoneInfo("America/New_York")


def make_config(channels=None, **scenario):
    sc = {"id": "s1", "title": "Small caps lead", "trigger": {"series": "IWM/SPY", "lookback": 63, "above": 0.1,
                                                             "rearm": 0.08},
          "notify": ["console"]}
    sc.update(scenario)
    return parse_config({"channels": channels or {}, "scenarios": [sc]}, "test.yaml")


def event(kind="fired", rule="trigger", scenario="s1", eid="a" * 32, ts_ms=1_700_000_000_000):
    return {"schema_version": 1, "event_id": eid, "scenario": scenario, "title": "Small caps lead", "rule": rule,
            "kind": kind, "series": "IWM/SPY", "direction": "up" if kind == "fired" else "down",
            "at": "2023-11-14T22:13:20Z", "ts_ms": ts_ms, "value": 0.105, "threshold": 0.1, "lookback": 63,
            "series_value": 0.5, "description": "IWM/SPY 63-session change >= +10.00%",
            "windows": {"21": 0.01, "63": 0.105}, "confirmations": []}


# ------------------------------------------------------------------ route

def test_route_fired_trigger_is_an_alert_to_the_scenarios_channels():
    cfg = make_config({"desk": "json://127.0.0.1:9/x"}, notify=["console", "desk"])
    r = route(event(), cfg)
    assert r.notice.status == FIRING and r.channels == ("console", "desk") and r.notice.scenario.id == "s1"


def test_route_rearm_notifies_only_with_notify_resolved():
    assert route(event("rearmed"), make_config()) is None
    r = route(event("rearmed"), make_config(notify_resolved=True))
    assert r.notice.status == RESOLVED


def test_route_ignores_confirmations_and_unknown_scenarios():
    assert route(event(rule="Breadth improving"), make_config()) is None
    assert route(event(scenario="gone"), make_config()) is None


@pytest.mark.parametrize("broken, field", [({"event_id": None}, "event_id"), ({"kind": "maybe"}, "kind"),
                                           ({"value": "1.0"}, "value"), ({"ts_ms": True}, "ts_ms")])
def test_route_rejects_malformed_events_naming_the_field(broken, field):
    e = event()
    e.update(broken)
    with pytest.raises(InvalidEvent, match=field):
        route(e, make_config())
    e = event()
    del e["series"]
    with pytest.raises(InvalidEvent, match="series"):
        route(e, make_config())


# ------------------------------------------------------------------ group

def notice(eid: str, scenario="s1") -> Notice:
    return Notice(event(eid=eid, scenario=scenario), FIRING, None)


def test_group_window_zero_sends_each_at_once():
    g = Grouper(lambda n: 0.0)
    for eid in ("a", "b", "a"):
        assert g.add(notice(eid), 100.0)
    assert [b.event_ids for b in g.due(100.0)] == [["a"], ["b"], ["a"]]  # the store drops the second "a"
    assert g.next_due() is None and len(g) == 0


def test_group_window_collects_one_scenario_and_keeps_others_apart():
    g = Grouper(lambda n: 60.0)
    assert g.add(notice("a"), 0.0)
    assert g.add(notice("b"), 30.0)
    assert not g.add(notice("a"), 40.0)  # the same event again joins nothing
    g.add(notice("c", scenario="s2"), 50.0)
    assert g.due(59.9) == [] and g.next_due() == 60.0
    assert [b.event_ids for b in g.due(60.0)] == [["a", "b"]]
    g.add(notice("d"), 61.0)  # after the flush: a new group
    assert [(b.scenario_id, b.event_ids) for b in g.due(200.0)] == [("s2", ["c"]), ("s1", ["d"])]


# ------------------------------------------------------------------ quiet hours and rate limit

def at(y, m, d, hh, mm=0, tz=NY) -> float:
    return datetime(y, m, d, hh, mm, tzinfo=tz).timestamp()


def test_quiet_hours_across_midnight():
    q = ("22:00", "07:00")
    assert quiet_until(at(2024, 3, 5, 23, 30), q, "America/New_York") == at(2024, 3, 6, 7)
    assert quiet_until(at(2024, 3, 6, 3), q, "America/New_York") == at(2024, 3, 6, 7)
    assert quiet_until(at(2024, 3, 6, 7), q, "America/New_York") is None
    assert quiet_until(at(2024, 3, 6, 12), q, "America/New_York") is None
    # the night the clocks spring forward: the end is still 07:00 local, 8 real hours later
    start = at(2024, 3, 9, 23)
    end = quiet_until(start, q, "America/New_York")
    assert datetime.fromtimestamp(end, NY) == datetime(2024, 3, 10, 7, tzinfo=NY) and end - start == 7 * 3600


def test_quiet_hours_within_a_day_and_in_the_channels_zone():
    q = ("12:00", "13:30")
    tokyo = ZoneInfo("Asia/Tokyo")
    assert quiet_until(at(2024, 1, 2, 12, 15, tokyo), q, "Asia/Tokyo") == at(2024, 1, 2, 13, 30, tokyo)
    assert quiet_until(at(2024, 1, 2, 11, 59, tokyo), q, "Asia/Tokyo") is None
    assert quiet_until(at(2024, 1, 2, 12, 15, tokyo), None, "Asia/Tokyo") is None


def test_rate_limit_holds_the_excess_until_a_slot_frees():
    r = RateLimiter(2)
    for t in (0.0, 1.0):
        assert r.open_at(t) == t
        r.take(t)
    assert r.open_at(2.0) == 60.0
    assert r.open_at(60.0) == 60.0
    r.take(60.0)
    assert r.open_at(60.5) == 61.0


@settings(max_examples=200, deadline=None)
@given(per_min=st.integers(1, 5), gaps=st.lists(st.floats(0, 90, allow_nan=False), min_size=1, max_size=40))
def test_rate_limit_never_exceeds_its_rate_in_any_window(per_min, gaps):
    """Send as soon as allowed after each arrival: no 60 s window holds more than per_min sends,
    and every arrival is sent (held, never dropped)."""
    r, t, sends = RateLimiter(per_min), 0.0, []
    for g in gaps:
        t = max(t + g, sends[-1] if sends else 0.0)
        s = r.open_at(t)
        assert s >= t
        r.take(s)
        sends.append(s)
    assert len(sends) == len(gaps)
    for i, s in enumerate(sends):
        assert sum(1 for x in sends if s <= x < s + 60.0) <= per_min, (i, sends)


def test_gate_combines_quiet_hours_and_rate():
    cfg = make_config({"pager": {"url": "json://127.0.0.1:9/x", "quiet_hours": "22:00-07:00",
                                 "rate_limit_per_min": 1}})
    g = Gate(cfg.channels["pager"])
    night = at(2024, 6, 3, 23)
    assert g.open_at(night) == at(2024, 6, 4, 7)
    g.take(at(2024, 6, 4, 7))
    assert g.open_at(at(2024, 6, 4, 7, 0) + 10) == at(2024, 6, 4, 7) + 60


# ------------------------------------------------------------------ retry

def test_backoff_doubles_with_jitter_and_is_capped():
    p = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0)
    assert [backoff_s(n, p, lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 2.5, 2.5]
    assert [backoff_s(n, p, lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


class FakeTime:
    def __init__(self):
        self.t, self.slept = 0.0, []

    def now(self):
        return self.t

    async def sleep(self, d):
        self.slept.append(d)
        self.t += d


async def test_retry_stops_at_success_attempts_permanent_or_deadline():
    ft = FakeTime()
    failures = []

    async def on_failure(n, e, final):
        failures.append((n, final))

    calls = []

    async def flaky(n):
        calls.append(n)
        if n < 3:
            raise RetryableError("boom")

    res = await retry(flaky, RetryPolicy(attempts=5, base_delay_s=1), now=ft.now, sleep=ft.sleep,
                      on_failure=on_failure)
    assert res.ok and res.attempts == 3 and failures == [(1, False), (2, False)] and len(ft.slept) == 2

    async def down(n):
        raise RetryableError("down")

    res = await retry(down, RetryPolicy(attempts=4, base_delay_s=1), now=ft.now, sleep=ft.sleep)
    assert not res.ok and res.attempts == 4 and str(res.error) == "down"

    async def refused(n):
        raise PermanentError("404")

    res = await retry(refused, RetryPolicy(attempts=4), now=ft.now, sleep=ft.sleep)
    assert not res.ok and res.attempts == 1

    # deadline: waits of 8, 16, 32... with a 20 s deadline allow the 1st and 2nd attempt only
    res = await retry(down, RetryPolicy(attempts=10, base_delay_s=8, max_delay_s=100, deadline_s=20),
                      now=ft.now, sleep=ft.sleep, rand=lambda: 1.0)
    assert res.attempts == 2


def test_classify_reads_apprise_failures():
    assert classify(["Failed to send JSON POST notification: Internal server error., error=500."])
    assert classify(["Failed to send: Too Many Requests, error=429."])
    assert not classify(["Failed to send JSON POST notification: Page not found., error=404."])
    assert classify(["A Connection error occurred sending JSON notification to 127.0.0.1."])
    assert classify(["Service 'E-Mail' did not finish within 10.1s."])
    assert not classify(["There are no service(s) to notify"])


# ------------------------------------------------------------------ dedup record

def test_delivery_log_survives_reopening_and_splits_batches(tmp_path):
    path = tmp_path / "sub" / "n.sqlite"
    log = DeliveryLog(path)
    log.record(["e1", "e2"], "desk", "s1", 1000)
    log.close()
    log = DeliveryLog(path)
    assert log.delivered(["e1", "e3"], "desk") == {"e1"}
    assert log.delivered(["e1"], "other") == set()
    b = Batch("s1", [notice("e1"), notice("e3")])
    rest, skipped = split_delivered(b, log.delivered(b.event_ids, "desk"))
    assert rest.event_ids == ["e3"] and skipped == ["e1"]
    log.close()


# ------------------------------------------------------------------ records

def test_records_round_trip_and_validation():
    import json
    r = json.loads(delivery_record("e1", "s1", "desk", 2, "failed", "boom", 5))
    assert r == {"event_id": "e1", "scenario": "s1", "channel": "desk", "attempt": 2, "outcome": "failed",
                 "error": "boom", "at_ms": 5}
    with pytest.raises(ValueError):
        delivery_record("e1", "s1", "desk", 2, "lost", None, 5)
    d = parse_dlq_record(dlq_record("desk", [notice("e1")], "err", 5, 7))
    assert d["event_ids"] == ["e1"] and d["notices"][0]["event"]["event_id"] == "e1"
    for bad in (b"nope", b"{}", b'{"v":1,"channel":"x","notices":[]}'):
        with pytest.raises(ValueError):
            parse_dlq_record(bad)


# ------------------------------------------------------------------ secrets

SECRETS = {"user": "alerts-bot", "pw": "Hunter2Secret", "tok": "T0KEN5ECRETabc", "slk": "XOXBsecretTOKEN"}
URLS = {
    "mail": f"mailto://{SECRETS['user']}:{SECRETS['pw']}@smtp.example.com:587?to=desk@example.com",
    "hook": f"json://hooks.example.com/api/{SECRETS['tok']}",
    "slack": f"slack://TA1B2C3D4/B0123456/{SECRETS['slk']}",
}


def test_redact_url_shows_scheme_and_host_only():
    assert redact_url(URLS["mail"]) == f"mailto://{SECRET}@smtp.example.com:587?to={SECRET}"
    assert redact_url(URLS["hook"]) == f"json://hooks.example.com/{SECRET}/{SECRET}"
    assert redact_url(URLS["slack"]) == f"slack://{SECRET}/{SECRET}/{SECRET}"  # host is a token there
    assert redact_url("console") == "console"


def test_redactor_scrubs_every_fragment_from_free_text():
    r = Redactor(URLS.values())
    text = (f"POST {URLS['hook']} failed; login {SECRETS['user']}:{SECRETS['pw']} refused; "
            f"token {SECRETS['slk']} bad; %2F{SECRETS['tok']}")
    clean = r.text(text)
    assert all(s not in clean for s in SECRETS.values()), clean
    assert clean == f"POST {SECRET} failed; login {SECRET} refused; token {SECRET} bad; %2F{SECRET}"


def test_config_show_never_prints_a_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("RW_MAIL_PW", SECRETS["pw"])
    monkeypatch.setenv("RW_SLACK", SECRETS["slk"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
channels:
  mail: "mailto://{SECRETS['user']}:${{RW_MAIL_PW}}@smtp.example.com:587?to=desk@example.com"
  hook: {{url: "{URLS['hook']}", rate_limit_per_min: 10, quiet_hours: "22:00-07:00"}}
  slack: "slack://TA1B2C3D4/B0123456/${{RW_SLACK}}"
scenarios:
  - id: s1
    trigger: {{series: IWM/SPY, lookback: 63, above: 0.1}}
    notify: [mail, hook, slack]
""")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert config_cmd.run(argparse.Namespace(config=str(cfg), action="show")) == 0
    text = out.getvalue()
    assert all(s not in text for s in SECRETS.values()), text
    assert "mailto://<secret>@smtp.example.com:587" in text and "json://hooks.example.com/" in text
    assert "rate_limit_per_min: 10" in text and "quiet_hours: 22:00-07:00" in text


# ------------------------------------------------------------------ config checks at start

def test_channel_options_are_strict():
    with pytest.raises(ConfigError, match="format"):
        make_config({"x": {"url": "json://127.0.0.1:9/x", "format": "fax"}})
    with pytest.raises(ConfigError, match="quiet_hours"):
        make_config({"x": {"url": "json://127.0.0.1:9/x", "quiet_hours": "07:00-07:00"}})
    with pytest.raises(ConfigError, match="unknown key 'retries'"):
        make_config({"x": {"url": "json://127.0.0.1:9/x", "retries": 3}})


def test_media_by_scheme_and_override():
    cfg = make_config({"m": "mailto://u:p@127.0.0.1:25?to=a@b.example", "mm": "mmost://127.0.0.1:8065/tok",
                       "n": "ntfy://127.0.0.1:80/topic", "j": "json://127.0.0.1/x", "d": "discord://1234/abcd",
                       "forced": {"url": "json://127.0.0.1/x", "format": "slack"}})
    got = {k: medium_for(c) for k, c in cfg.channels.items()}
    assert got == {"console": "text", "m": "email", "mm": "slack", "n": "push", "j": "json", "d": "text",
                   "forced": "slack"}


async def test_unknown_apprise_scheme_fails_at_start_naming_the_channel():
    cfg = make_config({"desk": f"nosuchthing://{SECRETS['tok']}@example.com/x"}, notify=["desk"])

    async def publish(t, k, v):
        pass

    with pytest.raises(ConfigError) as ei:
        NotificationService(cfg, publish)
    assert "channels.desk.url" in str(ei.value) and SECRETS["tok"] not in str(ei.value)


async def test_handle_before_start_and_bad_events_fail_clearly(tmp_path):
    published = []

    async def publish(t, k, v):
        published.append((t, v))

    svc = NotificationService(make_config(), publish, store_path=tmp_path / "n.sqlite", out=io.StringIO())
    with pytest.raises(RuntimeError, match="start"):
        await svc.handle(event())
    await svc.start()
    try:
        with pytest.raises(InvalidEvent):
            await svc.handle({"event_id": "x"})
        assert svc.pending == 0
    finally:
        await svc.stop()
    assert published == []
