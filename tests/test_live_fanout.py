"""The pure part of the live hub (streams/live_fanout.py, streams/live_client.py), called directly
with time as a number: pacing, coalescing, the recent-events ring, the client queues, what a
client gets when it connects, subscriptions and the rate limit. There are no sockets, loop or clock."""

from __future__ import annotations

import ast
from pathlib import Path

import orjson
import pytest

from ratiowatch.streams.live_client import BadMessage, ClientQueue, RateLimit, parse_subscribe
from ratiowatch.streams.live_fanout import LiveFanout, RecentEvents


def drain(c: ClientQueue) -> list[dict]:
    return [orjson.loads(t) for t in iter(c.next_message, None)]


def status(sid: str, at: str) -> dict:
    return {"scenario": sid, "at": at}


def event(sid: str, ts: int, eid: str) -> dict:
    return {"scenario": sid, "ts_ms": ts, "event_id": eid}


def test_a_status_inside_its_interval_is_held_and_reported_due_and_the_latest_wins():
    f = LiveFanout(min_interval_s=0.25)
    c = f.attach()
    assert f.publish_status(status("a", "1"), now=10.0) is None  # the first goes out at once
    assert [m["at"] for m in drain(c)] == ["1"]
    assert f.publish_status(status("a", "2"), now=10.1) == pytest.approx(0.15)
    assert f.publish_status(status("a", "3"), now=10.2) == pytest.approx(0.05)
    assert drain(c) == []
    assert f.stats["statuses_coalesced"] == 1    # "2" never went out
    assert f.snapshot()["a"]["at"] == "3"         # the snapshot has the newest, held or not
    assert f.flush_due(now=10.24) == pytest.approx(0.01)
    assert drain(c) == []
    assert f.flush_due(now=10.25) is None
    assert [(m["type"], m["at"]) for m in drain(c)] == [("status", "3")]


def test_pacing_is_per_scenario_and_flush_reports_the_soonest_still_held():
    f = LiveFanout(min_interval_s=1.0)
    c = f.attach()
    f.publish_status(status("a", "a1"), now=0.0)
    f.publish_status(status("b", "b1"), now=0.5)
    assert f.publish_status(status("a", "a2"), now=0.6) == pytest.approx(0.4)
    assert f.publish_status(status("b", "b2"), now=0.7) == pytest.approx(0.8)
    drain(c)
    assert f.flush_due(now=1.0) == pytest.approx(0.5)  # a went out; b is due at 1.5
    assert [m["at"] for m in drain(c)] == ["a2"]
    assert f.flush_due(now=1.5) is None
    assert [m["at"] for m in drain(c)] == ["b2"]


def test_flush_reports_the_soonest_of_many_held_statuses():
    f = LiveFanout(min_interval_s=10.0)
    ids = [f"s{i}" for i in range(10)]
    for i, sid in enumerate(ids):
        f.publish_status(status(sid, "1"), now=float(i))   # sid i is due again at 10 + i
        f.publish_status(status(sid, "2"), now=float(i) + 0.5)
    assert f.flush_due(now=12.0) == pytest.approx(1.0)       # s0..s2 went out, s3 is next
    assert f.flush_due(now=19.0) is None


def test_a_client_that_has_not_drained_keeps_one_slot_per_scenario():
    f = LiveFanout(min_interval_s=0)
    c = f.attach()
    for i in range(5):
        f.publish_status(status("a", str(i)), now=float(i))
    f.publish_status(status("b", "x"), now=5.0)
    assert [(m["scenario"], m["at"]) for m in drain(c)] == [("a", "4"), ("b", "x")]
    assert f.stats["statuses_coalesced"] == 4
    assert f.stats["statuses"] == 6


def test_recent_events_are_the_latest_by_event_time_not_by_arrival():
    ring = RecentEvents(3)
    for ts, eid in [(50, "e50"), (10, "e10"), (40, "e40"), (30, "e30"), (20, "e20")]:
        ring.add(ts, "a", eid)
    assert list(ring) == [("a", "e30"), ("a", "e40"), ("a", "e50")]
    assert len(ring) == 3


def test_first_paint_is_the_sent_statuses_in_configured_order_then_recent_events_oldest_first():
    f = LiveFanout(min_interval_s=1.0, scenarios=["c", "b", "a"], recent=2)
    f.publish_status(status("a", "a1"), now=0.0)
    f.publish_status(status("b", "b1"), now=0.0)
    f.publish_status(status("a", "a2"), now=0.5)  # held back: a new page gets a1, as the others did
    for e in [event("a", 300, "late"), event("b", 100, "early"), event("a", 200, "mid")]:
        f.publish_event(e)
    got = drain(f.attach())
    # the queue sends events before statuses; the statuses keep the configured order, c has none
    assert [m["event_id"] for m in got[:2]] == ["mid", "late"]
    assert [(m["scenario"], m["at"]) for m in got[2:]] == [("b", "b1"), ("a", "a1")]
    assert list(f.snapshot()) == ["b", "a"]


def test_a_full_event_queue_drops_the_oldest_and_says_so_first():
    f = LiveFanout(queue_size=3)
    slow = f.attach()
    for i in range(5):
        f.publish_event(event("a", i, f"e{i}"))
    got = drain(slow)
    assert got[0] == {"type": "dropped", "events": 2}
    assert [m["event_id"] for m in got[1:]] == ["e2", "e3", "e4"]
    assert all(m["type"] == "event" for m in got[1:])
    assert f.stats["events_dropped"] == 2 and f.stats["events"] == 5


def test_subscribing_filters_what_is_queued_and_sends_the_current_state_of_what_it_follows():
    f = LiveFanout(min_interval_s=0, scenarios=["a", "b", "c"])
    f.publish_status(status("a", "a1"), now=0.0)
    f.publish_status(status("b", "b1"), now=0.0)
    c = f.attach()
    assert [m["scenario"] for m in drain(c)] == ["a", "b"]
    f.publish_event(event("a", 1, "ea"))
    f.publish_event(event("b", 2, "eb"))
    assert f.on_message(c, '{"subscribe": ["b", "c"]}', now=0.0) is True  # c: known, no status yet
    got = drain(c)
    assert got[0] == {"type": "subscribed", "scenarios": ["b", "c"]}
    assert [(m["type"], m["scenario"]) for m in got[1:]] == [("event", "b"), ("status", "b")]
    f.publish_event(event("a", 3, "ea2"))
    f.publish_status(status("a", "a2"), now=1.0)
    assert drain(c) == []


def test_a_bad_message_gets_an_error_reply_and_changes_nothing():
    f = LiveFanout(scenarios=["a"])
    c = f.attach()
    assert f.on_message(c, '{"subscribe": ["nope"]}', now=0.0) is True
    [reply] = drain(c)
    assert reply["type"] == "error" and "unknown scenario 'nope'" in reply["error"]
    assert c.subs is None and f.stats["bad_messages"] == 1


@pytest.mark.parametrize("raw, error", [
    (b'{"subscribe": "*"}', "send JSON text"),
    ("{", "not JSON"),
    ('{"subscribe": "*", "x": 1}', "the only message"),
    ('{"subscribe": []}', "non-empty list"),
    ('{"subscribe": ["a", 1]}', "non-empty list"),
])
def test_parse_subscribe_refuses_what_is_not_a_subscription(raw, error):
    with pytest.raises(BadMessage, match=error):
        parse_subscribe(raw, {"a"})


def test_parse_subscribe_reads_a_list_or_everything():
    assert parse_subscribe('{"subscribe": ["a", "b", "a"]}', {"a", "b"}) == frozenset({"a", "b"})
    assert parse_subscribe('{"subscribe": "*"}', set()) is None


def test_the_rate_limit_refills_with_the_time_passed_in():
    r = RateLimit(rate=2.0, burst=3)
    assert [r.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert r.allow(0.25) is False   # half a token
    assert r.allow(0.5) is True      # one token after half a second at 2 per second
    assert r.allow(100.0) and r.tokens == pytest.approx(2.0)  # refilled up to the burst, not past it
    assert r.strikes == 2


def test_an_over_limit_client_is_told_once_per_run_and_cut_off_at_its_100th_strike():
    f = LiveFanout(client_rate=(1.0, 2), scenarios=["a"])
    c = f.attach()
    ok = '{"subscribe": "*"}'
    results = [f.on_message(c, ok, now=0.0) for _ in range(101)]
    assert results[:101] == [True] * 101
    assert f.on_message(c, ok, now=0.0) is False  # strike 100
    assert f.stats["rate_limited"] == 100
    notices = [m for m in drain(c) if m["type"] == "error"]
    assert len(notices) == 1 and "at most 1 messages per second" in notices[0]["error"]
    assert f.on_message(c, ok, now=1.0) is True   # a token again: the run of refusals ends
    f.on_message(c, ok, now=1.0)
    assert [m["type"] for m in drain(c)] == ["subscribed", "error"]  # a new run, a new notice


def test_wake_is_called_when_a_queue_gets_something_and_a_detached_client_gets_nothing():
    woken = []
    f = LiveFanout(min_interval_s=0)
    c = f.attach(lambda: woken.append(1))
    assert woken == [] and f.stats["clients"] == 1
    f.publish_status(status("a", "1"), now=0.0)
    f.publish_event(event("a", 1, "e"))
    f.on_message(c, "{", now=0.0)
    assert len(woken) == 3
    f.detach(c)
    f.publish_event(event("a", 2, "e2"))
    assert len(woken) == 3 and f.stats["clients"] == 0
    assert [m["type"] for m in drain(c)] == ["error", "event", "status"]


def test_bad_arguments_and_records_without_a_scenario_are_refused():
    with pytest.raises(ValueError):
        LiveFanout(min_interval_s=-1)
    with pytest.raises(ValueError):
        LiveFanout(queue_size=0)
    f = LiveFanout()
    with pytest.raises(ValueError):
        f.publish_status({"at": "1"}, now=0.0)
    with pytest.raises(ValueError):
        f.publish_event({"event_id": "x"})
    assert f.snapshot() == {} and f.stats["statuses"] == 0


def test_the_pure_part_imports_no_socket_loop_clock_or_kafka():
    streams = Path(__file__).resolve().parents[1] / "streams"
    allowed = {"__future__", "bisect", "collections", "typing", "orjson", "live_client"}
    for name in ("live_fanout.py", "live_client.py"):
        tree = ast.parse((streams / name).read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert imported <= allowed, (name, imported - allowed)
