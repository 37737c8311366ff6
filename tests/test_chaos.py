"""The chaos run in its CI size: one minute of the real pipeline (a worker process on the embedded
broker) under every fault kind, with bad input mixed in, checked against the batch computation.
And the verdict itself, on made-up observations, so that it is known to fail when it should."""

from __future__ import annotations

import random

import orjson
import pytest

from ratiowatch.chaos.observed import FaultRecord, Observed
from ratiowatch.chaos.options import ChaosOptions
from ratiowatch.chaos.plan import FAULT_KINDS, HOOK, Garbage, fault_schedule
from ratiowatch.chaos.report import format_report
from ratiowatch.chaos.run import run_chaos
from ratiowatch.chaos.verify import passed, verify
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
                                          drain_timeout_s=120, workdir=str(tmp_path / "chaos")))
    print(format_report(report))
    t, e, n = report["ticks"], report["events"], report["notifications"]
    assert report["passed"], format_report(report)
    assert set(report["faults"]) == set(FAULT_KINDS)
    assert t["valid"] > 5_000 and t["invalid"] > 50 and t["applied"] == t["valid"] and t["lost"] == 0
    assert t["dead_lettered"] == t["invalid"]  # every bad input is on ticks.dlq with its reason
    assert e["expected"] > 5_000 and e["emitted"] == e["expected"] and e["duplicated"] == 0
    assert n["expected"] > 10 and n["delivered"] + n["dead_lettered"] == n["expected"] and n["duplicated"] == 0
    assert n["delivered"] > 0
    assert report["run"]["worker_starts"] >= 2  # it was killed and came back
    assert sum(e["during_endpoint_faults"]) > 0  # crossings kept coming while the channel was down


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
    assert r["events"]["during_endpoint_faults"] == [3]


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


# ------------------------------------------------------------------ what the chaos run found, pinned

@pytest.mark.broker
async def test_a_late_tick_is_late_however_the_records_are_batched(tmp_path):
    """Lateness used to be judged against the last flush, so a tick 25 days old, late when the days
    come one by one, was applied when they came in one record (and changed the events). It is now
    judged in its partition's order, by the route stage; ``idle()`` covers the ticks the event-time
    gate still holds, so no wait stands in for the last day."""
    import asyncio
    import time

    from aiokafka import AIOKafkaProducer

    from ratiowatch.agents.engine import ShardEngine
    from ratiowatch.config import load_config
    from ratiowatch.roles.engine import EngineRole
    from ratiowatch.streams import topics
    from ratiowatch.streams.broker import EmbeddedBroker
    from ratiowatch.streams.readback import read_topic
    from ratiowatch.streams.app import ensure_topics

    cfg_path = tmp_path / "s.yaml"
    cfg_path.write_text("settings: {grace_ms: 50, allowed_lateness_s: 300, partitions: 2}\n"
                        "scenarios:\n  - id: lvl\n    trigger: {series: AAA, above: 100, rearm: 100}\n    windows: [1]\n")
    cfg = load_config(cfg_path)
    day, t0 = 86_400_000, 1_700_000_000_000
    prices = [99.0 if i % 2 else 101.0 for i in range(40)]  # crosses 100 every day
    late = {"symbol": "AAA", "price": 99.5, "ts_ms": t0 + 14 * day}  # 25 days behind, on a day that was 101
    with EmbeddedBroker() as broker:
        ensure_topics(broker, 2)
        # Forty days and then the late tick in one ticks record, as a feed catching up writes it:
        # the route stage gets them in one fetch and sends them on in one shard record.
        rows = [{"symbol": "AAA", "price": p, "ts_ms": t0 + i * day} for i, p in enumerate(prices)] + [late]
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        await producer.send_and_wait(topics.TICKS, orjson.dumps(rows), key=b"feed", partition=0)
        await producer.stop()
        rt = EngineRole(cfg, broker_url=broker.url, datadir=str(tmp_path / "d"))
        await rt.start()
        try:
            deadline = time.monotonic() + 60
            while rt.pipeline.counters["ticks_in"] < 41 or not rt.pipeline.idle():
                assert time.monotonic() < deadline, "the worker did not take the ticks in"
                await asyncio.sleep(0.05)
            await rt.app.producer.flush()
        finally:
            await rt.stop()
        dlq = [orjson.loads(v) for _, v, _, _ in read_topic(broker.bootstrap, topics.TICKS_DLQ)]
        events = [orjson.loads(v) for _, v, _, _ in read_topic(broker.bootstrap, topics.EVENTS)]
    assert [(d["reason"], d["input"]) for d in dlq] == [("late", late)]
    # what the same days give one by one, without the late tick
    eng, states, expected = ShardEngine(cfg.scenarios, cfg.settings), {}, []
    for i, p in enumerate(prices):
        expected += eng.apply(states, t0 + i * day, [("AAA", p, t0 + i * day)])[0]
    assert sorted(e["event_id"] for e in events) == sorted(e["event_id"] for e in expected)
    assert len(events) == 39
