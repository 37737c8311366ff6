"""The chaos verdict on events read more than once, on hand-built observations: a produce batch the
embedded broker appended a second time (its copy right after it, same values and record times) is
a broker retry copy, counted and shown apart, and the run passes; any other repeat is a duplicate
and fails it."""

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
