"""The chaos run in its CI size: one minute of the real pipeline (a worker process on the embedded
broker) under every fault kind, with bad input mixed in, checked against the batch computation.
And the verdict itself, on made-up observations, so that it is known to fail when it should."""

from __future__ import annotations

import random

import orjson
import pytest

from ratiowatch.chaos import ChaosOptions, format_report, run_chaos
from ratiowatch.chaos_plan import FAULT_KINDS, HOOK, Garbage, fault_schedule
from ratiowatch.chaos_verify import FaultRecord, Observed, passed, verify
from ratiowatch.cli import main

CI_SECONDS = 60.0
CI_SEED = 3


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.timeout(360)
async def test_ci_sized_chaos_run_loses_and_repeats_nothing(history_dir, tmp_path):
    # The schedule is a pure function of the seed: this one tries every kind of fault.
    assert {f.kind for f in fault_schedule(random.Random(CI_SEED), CI_SECONDS)} == set(FAULT_KINDS)
    report = await run_chaos(ChaosOptions(duration_s=CI_SECONDS, seed=CI_SEED, data=str(history_dir),
                                          drain_timeout_s=90, workdir=str(tmp_path / "chaos")))
    print(format_report(report))
    t, e, n = report["ticks"], report["events"], report["notifications"]
    assert report["passed"], format_report(report)
    assert set(report["faults"]) == set(FAULT_KINDS)
    assert t["valid"] > 10_000 and t["invalid"] > 50 and t["applied"] == t["valid"] and t["lost"] == 0
    assert t["dead_lettered"] == t["invalid"]  # every bad input is on ticks.dlq with its reason
    assert e["expected"] > 10_000 and e["emitted"] == e["expected"] and e["duplicated"] == 0
    assert n["expected"] > 20 and n["delivered"] + n["dead_lettered"] == n["expected"] and n["duplicated"] == 0
    assert n["delivered"] > 0
    assert report["run"]["worker_starts"] >= 2  # it was killed and came back


def test_chaos_command_rejects_bad_arguments(capsys):
    assert main(["chaos", "--faults", "worker_kill,meteor"]) == 2
    assert "unknown fault kind 'meteor'" in capsys.readouterr().err
    for argv in (["chaos", "--duration", "0"], ["chaos", "--pace", "-1"], ["chaos", "--seed", "x"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2


# ------------------------------------------------------------------ the verdict on made-up observations

def _event(scenario: str, ts: int, kind: str = "fired", rule: str = "trigger") -> dict:
    from ratiowatch.agents.events import event_id

    return {"event_id": event_id(scenario, rule, kind, ts), "scenario": scenario, "rule": rule, "kind": kind,
            "ts_ms": ts, "at": "2026-01-02T21:00:00Z", "value": 1.0}


def _observed() -> Observed:
    """Two dates of one symbol S and the clock, all applied; one notifying scenario; one bad record."""
    evs = [_event("chaos-witness-s", 2), _event("chaos-clock", 2), _event("pulse", 2)]
    obs = Observed(
        expected_events=evs, notify={"pulse": ((HOOK,), True)},
        valid_ticks=[("S", 1.0, 1), ("CHAOS.CLOCK", 2.0, 1), ("S", 1.5, 2), ("CHAOS.CLOCK", 3.0, 2)],
        date_acks=[(0.0, 1), (1.0, 2)], valid_records={(0, 0), (0, 1)},
        route_garbage=[(0, 2, Garbage("x", b"[]", ("empty_batch",)))], late=[], feed_garbage=[])
    obs.events = [(1.5, orjson.dumps(e)) for e in evs]
    obs.ticks_dlq = [(1.2, orjson.dumps({"reason": "empty_batch", "detail": "d", "partition": 0, "offset": 2,
                                         "source": "ticks", "input": []}))]
    obs.receipts = [(2.0, [evs[2]["event_id"]])]
    obs.faults = [FaultRecord("broker_down", 0.5, 1.0), FaultRecord("endpoint_500", 1.0, 1.8)]
    return obs


def test_verdict_passes_complete_observations():
    r = verify(_observed())
    assert passed(r)
    assert (r["ticks"]["applied"], r["ticks"]["dead_lettered"], r["ticks"]["lost"]) == (4, 1, 0)
    assert (r["events"]["emitted"], r["notifications"]["delivered"]) == (3, 1)
    assert r["recovery_s"]["max_by_kind"] == {"broker_down": 0.5, "endpoint_500": 0.2}


@pytest.mark.parametrize("damage, what", [
    (lambda o: o.events.pop(0), ("events", "missing")),
    (lambda o: o.events.append(o.events[1]), ("events", "duplicated")),
    (lambda o: o.events.append((3.0, orjson.dumps({**orjson.loads(o.events[0][1]), "value": 2.0}))),
     ("events", "unexpected")),
    (lambda o: o.ticks_dlq.clear(), ("ticks", "lost")),
    (lambda o: o.receipts.clear(), ("notifications", "lost")),
    (lambda o: o.receipts.append(o.receipts[0]), ("notifications", "duplicated")),
])
def test_verdict_fails_on_a_loss_or_a_repeat(damage, what):
    obs = _observed()
    damage(obs)
    r = verify(obs)
    assert not passed(r)
    assert r[what[0]][what[1]] >= 1


def test_a_missing_witness_event_counts_its_ticks_as_lost():
    obs = _observed()
    obs.events = [x for x in obs.events if orjson.loads(x[1])["scenario"] != "chaos-witness-s"]
    r = verify(obs)
    # S's two ticks are witnessed by that one event (the first evaluation only arms the rule)
    assert (r["ticks"]["applied"], r["ticks"]["lost"]) == (2, 2)
