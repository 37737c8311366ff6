"""The chaos verdict on events read more than once and notifications answered 200 more than once, on
hand-built observations. A produce batch the embedded broker appended a second time (its copy
right after it, same values and record times) is a broker retry copy, and a notification sent
again after a SIGKILL just after its 200 (before the dedup record) a kill-window repeat: each is
counted and shown apart, and the run passes. Any other repeat is a duplicate and fails it."""

from __future__ import annotations

import orjson
import pytest

from ratiowatch.agents.events import event_id
from ratiowatch.chaos.observed import FaultRecord, Observed
from ratiowatch.chaos.repeats import is_batch_copy
from ratiowatch.chaos.report import format_report
from ratiowatch.chaos.verify import failures, passed, verify

T0 = 1_767_000_000_000  # a record timestamp (ms), as the producer stamps it
RUN = {"dates": 1, "first_date": "a", "last_date": "b", "seed": 1, "seconds": 1, "worker_starts": 1}


def _event(n: int) -> dict:
    return {"event_id": event_id("s", "trigger", "fired", n), "scenario": "s", "rule": "trigger", "kind": "fired",
            "ts_ms": n, "at": "2026-01-02T21:00:00Z", "value": float(n)}


EVENTS = [_event(n) for n in range(1, 7)]


def _observed(records: list[tuple[int, int, int, dict]]) -> Observed:
    """The six expected events, read from ``events`` as (partition, offset, record ts, event), in
    that order, one every 0.1 s from 20 s on; a broker outage from 18 to 19.9 s."""
    obs = Observed(expected_events=EVENTS, notify={}, valid_ticks=[], date_acks=[], valid_records=set(),
                   route_garbage=[], late=[], feed_garbage=[])
    for i, (p, o, ts, ev) in enumerate(records):
        obs.events.append((20.0 + i / 10, orjson.dumps(ev)))
        obs.event_places.append((p, o, ts))
    obs.faults = [FaultRecord("broker_down", 18.0, 19.9)]
    return obs


def _once() -> list[tuple[int, int, int, dict]]:
    """Events 0-2 in one batch on partition 0 (offsets 10-12), 3-5 on partition 1 (offsets 0-2)."""
    return ([(0, 10 + i, T0 + i, EVENTS[i]) for i in range(3)]
            + [(1, i, T0 + 100 + i, EVENTS[3 + i]) for i in range(3)])


def test_each_event_once_passes_with_no_copies():
    r = verify(_observed(_once()))
    assert passed(r)
    assert (r["events"]["emitted"], r["events"]["duplicated"], r["events"]["broker_retry_copies"]) == (6, 0, 0)
    assert r["events"]["broker_retry_why"] is None and r["events"]["broker_retry_blocks"] == []


def test_a_batch_appended_again_right_after_itself_is_broker_retry_copies_and_passes():
    once = _once()
    copy = [(0, 13 + i, T0 + i, EVENTS[i]) for i in range(3)]  # offsets 10-12 again at 13-15
    r = verify(_observed(once[:3] + copy + once[3:]))
    e = r["events"]
    assert passed(r), e
    assert (e["emitted"], e["duplicated"], e["broker_retry_copies"], e["unexpected"]) == (6, 0, 3, 0)
    assert e["examples_duplicated"] == []
    assert e["broker_retry_blocks"] == [{"partition": 0, "offsets": [10, 12], "copy_offsets": [13, 15],
                                         "record_ts_ms": [T0, T0 + 2], "copy_read_at_s": 20.3,
                                         "faults_before": ["broker_down@18.0-19.9s"]}]
    assert "embedded broker" in e["broker_retry_why"] and "Kafka drops such a retry" in e["broker_retry_why"]
    # the evidence of where each copy is stays
    assert [(w["broker_retry_copy"], [c["offset"] for c in w["copies"]]) for w in e["duplicates_where"]] == [
        (True, [10, 13]), (True, [11, 14]), (True, [12, 15])]
    assert failures(r) == []
    text = format_report({**r, "passed": passed(r), "run": RUN})
    assert "duplicated 0" in text and "broker retry copies 3" in text
    assert "partition 0 offsets 10-12 again at 13-15" in text and "PASS" in text


def test_a_one_record_batch_retried_twice_is_two_copies():
    once = _once()
    r = verify(_observed([once[0], (0, 11, T0, EVENTS[0]), (0, 12, T0, EVENTS[0])]
                         + [(0, 13 + i, T0 + i, EVENTS[i]) for i in (1, 2)] + once[3:]))
    assert passed(r)
    assert (r["events"]["duplicated"], r["events"]["broker_retry_copies"]) == (0, 2)


def _with(*extra: tuple[int, int, int, dict]) -> list[tuple[int, int, int, dict]]:
    """Partition 0's batch of events 0-2 (offsets 10-12), then ``extra``, then partition 1's batch."""
    once = _once()
    return once[:3] + list(extra) + once[3:]


@pytest.mark.parametrize("records, why", [
    (_with((0, 13, T0 + 4_000, EVENTS[0])), "an engine re-send: a new batch, a later record time"),
    ([r for r in _with((0, 13, T0 + 50, EVENTS[3]), (0, 14, T0, EVENTS[0])) if r[:2] != (1, 0)],
     "not adjacent: event 3 lies between (on partition 0 instead of 1), not part of a repeated block"),
    (_with((1, 3, T0, EVENTS[0])), "in another partition"),
    (_with((0, 13, T0, {**EVENTS[0], "value": 99.0})), "another value under the same event_id"),
])
def test_any_other_repeat_is_a_duplicate_that_fails(records, why):
    r = verify(_observed(records))
    e = r["events"]
    assert not passed(r), why
    assert "events duplicated 1" in failures(r)
    assert (e["duplicated"], e["broker_retry_copies"]) == (1, 0), why
    assert e["examples_duplicated"] == [EVENTS[0]["event_id"]]
    assert e["duplicates_where"][0]["broker_retry_copy"] is False


def test_a_copy_whose_place_is_unknown_is_a_duplicate():
    obs = _observed(_once())
    obs.events.append(obs.events[0])  # read again, with no (partition, offset, record ts) for it
    r = verify(obs)
    assert not passed(r) and (r["events"]["duplicated"], r["events"]["broker_retry_copies"]) == (1, 0)


def test_a_broker_copy_and_an_engine_resend_of_the_same_event_are_told_apart():
    once = _once()
    records = (once[:3] + [(0, 13 + i, T0 + i, EVENTS[i]) for i in range(3)]
               + [(0, 16, T0 + 9_000, EVENTS[1])] + once[3:])
    r = verify(_observed(records))
    e = r["events"]
    assert failures(r) == ["events duplicated 1"]
    assert (e["duplicated"], e["broker_retry_copies"]) == (1, 3)
    assert format_report({**r, "passed": False, "run": RUN}).endswith("FAIL: events duplicated 1")
    assert e["examples_duplicated"] == [EVENTS[1]["event_id"]]
    assert e["duplicates_where"][0]["event_id"] == EVENTS[1]["event_id"]  # the failing one shown first


def test_is_batch_copy_wants_the_whole_block_repeated_right_after_it():
    rec = {o: (T0 + o, bytes([o])) for o in range(10, 13)}
    log = {**rec, **{o + 3: v for o, v in rec.items()}}  # 10-12 again at 13-15
    assert all(is_batch_copy(log, o, o + 3) for o in range(10, 13))
    assert not is_batch_copy(log, 10, 12) and not is_batch_copy(log, 13, 10)
    partial = {**log, 15: (T0 + 99, b"other")}  # the copy's last record differs: no block of 3
    assert not any(is_batch_copy(partial, o, o + 3) for o in range(10, 13))
    shifted = {**rec, 13: (0, b"between"), **{o + 4: v for o, v in rec.items()}}  # a record between
    assert not any(is_batch_copy(shifted, o, o + 4) for o in range(10, 13))


# ------------------------------------------------------------------ notifications answered 200 twice

NOTIFIED = EVENTS[0]["event_id"]


def _notified(*receipts: float, kills: tuple[tuple[float, float], ...] = ()) -> Observed:
    """Every event once, each notified: the endpoint answered 200 for events 1-5 once, at 50 s,
    and for event 0 at each of ``receipts``; a worker_kill fault at each (SIGKILL, restart) of
    ``kills``."""
    obs = _observed(_once())
    obs.notify = {"s": (("hook",), False)}
    obs.receipts = [(50.0, [e["event_id"] for e in EVENTS[1:]])] + [(t, [NOTIFIED]) for t in receipts]
    obs.faults += [FaultRecord("worker_kill", k, r) for k, r in kills]
    return obs


def test_a_repeat_after_a_kill_2_ms_after_the_200_is_a_kill_window_repeat_and_passes():
    r = verify(_notified(100.0, 131.9, kills=((100.002, 101.0),)))
    n = r["notifications"]
    assert passed(r), failures(r)
    assert (n["expected"], n["delivered"], n["duplicated"], n["kill_window_repeats"], n["lost"]) == (6, 6, 0, 1, 0)
    assert n["kill_window_evidence"] == [{"event_id": NOTIFIED, "channel": "hook", "first_delivery_s": 100.0,
                                          "kill_s": 100.002, "gap_ms": 2.0, "restart_s": 101.0,
                                          "second_delivery_s": 131.9}]
    assert "dedup record" in n["kill_window_why"] and "drops the repeat by event_id" in n["kill_window_why"]
    assert n["examples_duplicated"] == []
    text = format_report({**r, "passed": True, "run": RUN})
    assert "duplicated 0" in text and "(kill-window repeats 1)" in text
    assert (f"event {NOTIFIED} (hook): 200 at 100.0s, worker SIGKILLed at 100.002s (2 ms later, before the "
            f"dedup record), restarted at 101.0s, sent again: 200 at 131.9s") in text
    assert text.endswith("PASS: nothing lost, missing or duplicated (1 kill-window repeats aside, above)")


@pytest.mark.parametrize("receipts, kills, why", [
    ((100.0, 131.9), (), "no kill at all"),
    ((100.0, 131.9), ((20.0, 21.0), (140.0, 141.0)), "kills, but none near the 200"),
    ((100.0, 131.9), ((105.0, 106.0),), "a kill 5 s after the 200: the dedup record was written by then"),
    ((100.0, 131.9), ((99.9, 100.5),), "the kill came before the 200: it did not interrupt that delivery"),
    ((100.0, 100.8), ((100.002, 101.0),), "sent again before the worker was started again: not its restart"),
])
def test_any_other_repeat_of_a_notification_is_duplicated_and_fails(receipts, kills, why):
    r = verify(_notified(*receipts, kills=kills))
    n = r["notifications"]
    assert failures(r) == ["notifications duplicated 1"], why
    assert (n["duplicated"], n["kill_window_repeats"], n["kill_window_why"]) == (1, 0, None), why
    assert n["examples_duplicated"][0]["deliveries_s"] == list(receipts)
    assert format_report({**r, "passed": False, "run": RUN}).endswith("FAIL: notifications duplicated 1")


def test_a_kill_5_s_after_the_200_is_shown_beside_the_failing_repeat():
    r = verify(_notified(100.0, 131.9, kills=((105.0, 106.0),)))
    assert r["notifications"]["examples_duplicated"] == [
        {"event_id": NOTIFIED, "channel": "hook", "deliveries_s": [100.0, 131.9], "next_kill_after_first_s": 5.0}]
    assert (f"notification repeated: event {NOTIFIED} (hook), 200 at 100.0s, 131.9s; next kill 5s after the first"
            in format_report({**r, "passed": False, "run": RUN}))


def test_a_third_delivery_is_not_explained_by_one_kill_in_the_window():
    r = verify(_notified(100.0, 131.9, 140.0, kills=((100.002, 101.0),)))
    n = r["notifications"]
    assert failures(r) == ["notifications duplicated 2"]
    assert (n["duplicated"], n["kill_window_repeats"]) == (2, 0)


def test_the_window_is_half_a_second_after_the_200():
    at_edge = verify(_notified(100.0, 131.9, kills=((100.5, 101.0),)))
    past = verify(_notified(100.0, 131.9, kills=((100.51, 101.0),)))
    assert (at_edge["notifications"]["kill_window_repeats"], passed(at_edge)) == (1, True)
    assert (past["notifications"]["kill_window_repeats"], passed(past)) == (0, False)
