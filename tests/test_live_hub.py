"""LiveHub fan-out rules without sockets: pacing, coalescing, bounded event queues, snapshot.
Statuses and events come from the real engine run over the real history."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import orjson
import pytest

from ratiowatch.agents.engine import ShardEngine
from ratiowatch.config import load_config
from ratiowatch.streams.history import daily_ticks, load_history
from ratiowatch.streams.live import LiveHub

HISTORY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "history"


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture(scope="module")
def run():
    """The shipped scenarios over 2000..2003 of real history: per-day statuses of IWM/SPY's
    scenario, every event, and the engine to ask for more."""
    cfg = load_config()
    eng = ShardEngine(cfg.scenarios, cfg.settings)
    states: dict = {}
    statuses, events = [], []
    for d, ticks in daily_ticks(load_history(HISTORY, cfg.symbols), start=date(2000, 1, 1), end=date(2003, 12, 31)):
        evs, _ = eng.apply(states, ticks[0].ts_ms, ticks)
        events.extend(evs)
        if "small-caps-outperform" in states:
            statuses.append(eng.engines["small-caps-outperform"].status(states["small-caps-outperform"]))
    final = {sid: eng.engines[sid].status(st) for sid, st in states.items()}
    return cfg, statuses, events, final


def drain(c) -> list[dict]:
    out = []
    while (text := c.next_message()) is not None:
        out.append(orjson.loads(text))
    return out


def test_status_is_paced_per_scenario_and_the_latest_wins(run):
    cfg, statuses, _, final = run
    clock = Clock()
    hub = LiveHub(min_interval_ms=250, now=clock)
    c = hub.attach()
    s1, s2, s3 = statuses[-3:]
    hub.publish_status(s1)
    assert [m["at"] for m in drain(c)] == [s1["at"]]
    clock.t += 0.1
    hub.publish_status(s2)
    clock.t += 0.1
    hub.publish_status(s3)
    assert drain(c) == []                       # inside the interval: held back
    assert hub.stats["statuses_coalesced"] == 1  # s2 was replaced by s3 before going out
    other = final["breadth-broadening"]
    hub.publish_status(other)                   # another scenario is not held back by this one
    assert [m["scenario"] for m in drain(c)] == ["breadth-broadening"]
    hub.flush_due()
    assert drain(c) == []                       # still inside the interval
    clock.t += 0.05
    hub.flush_due()
    [m] = drain(c)
    assert (m["type"], m["scenario"], m["at"], m["sparkline"]) == ("status", s3["scenario"], s3["at"], s3["sparkline"])
    assert hub.snapshot()["small-caps-outperform"] is s3


async def test_pending_status_goes_out_by_itself():
    clock = Clock()
    hub = LiveHub(min_interval_ms=20, now=clock)
    c = hub.attach()
    hub.publish_status({"type": "status", "scenario": "x", "at": "1"})
    drain(c)
    hub.publish_status({"type": "status", "scenario": "x", "at": "2"})
    clock.t += 1  # the timer fires after the real delay and checks the (injected) clock
    async with asyncio.timeout(10):
        while not c.dirty:
            await asyncio.sleep(0.01)
    assert [m["at"] for m in drain(c)] == ["2"]
    hub.close()


def test_a_client_gets_one_slot_per_scenario_and_every_event(run):
    cfg, statuses, events, _ = run
    hub = LiveHub(min_interval_ms=0, queue_size=256, now=Clock())
    c = hub.attach()
    for s in statuses[-50:]:
        hub.publish_status(s)
    evs = [e for e in events if e["scenario"] == "small-caps-outperform"][:5]
    for e in evs:
        hub.publish_event(e)
    got = drain(c)
    # Events first, all of them, in order, each with type "event"; then the one latest status.
    assert [m["event_id"] for m in got[:-1]] == [e["event_id"] for e in evs]
    assert all(m["type"] == "event" for m in got[:-1])
    assert got[-1]["type"] == "status" and got[-1]["at"] == statuses[-1]["at"]


def test_a_full_queue_drops_the_oldest_events_and_says_how_many(run):
    _, _, events, _ = run
    hub = LiveHub(queue_size=4, now=Clock())
    slow, fast = hub.attach(), hub.attach()
    delivered = []
    for e in events[:10]:
        hub.publish_event(e)
        delivered += drain(fast)  # the fast client keeps up
    assert [m["event_id"] for m in delivered] == [e["event_id"] for e in events[:10]]
    got = drain(slow)
    assert got[0] == {"type": "dropped", "events": 6}
    assert [m["event_id"] for m in got[1:]] == [e["event_id"] for e in events[6:10]]
    assert hub.stats["events_dropped"] == 6


def test_snapshot_follows_the_configured_order(run):
    cfg, _, _, final = run
    ids = [s.id for s in cfg.scenarios]
    hub = LiveHub(scenarios=ids, now=Clock())
    for sid in reversed(list(final)):
        hub.publish_status(final[sid])
    assert list(hub.snapshot()) == [i for i in ids if i in final]
    with pytest.raises(ValueError):
        hub.publish_status({"type": "status"})
    with pytest.raises(ValueError):
        hub.publish_event({"event_id": "x"})
