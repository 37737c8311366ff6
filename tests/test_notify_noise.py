"""Noise control end to end, against an HTTP peer on 127.0.0.1, with a clock the test moves:
grouping windows, quiet hours and rate limits hold messages (never drop them), and a slow
channel does not hold up the others or the caller."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from ratiowatch.config import parse_config
from ratiowatch.notifiers import NotificationService, RetryPolicy

import peers  # a helper module in tests/, which pytest puts on sys.path

NY = ZoneInfo("America/New_York")
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, deadline_s=30, attempt_timeout_s=20)


class HttpPeer(peers.HttpPeer):
    """Records bodies; holds each answer while ``hold`` is set (a stalled channel)."""

    def __init__(self):
        super().__init__()
        self.bodies: list[bytes] = []
        self.got = asyncio.Event()
        self.hold: asyncio.Event | None = None

    async def _handle(self, request):
        body = await request.read()
        if self.hold is not None:
            await self.hold.wait()
        self.bodies.append(body)
        self.got.set()
        return web.json_response({})

    def event_ids(self) -> list[list[str]]:
        return [[e["event_id"] for e in json.loads(json.loads(b)["message"])["events"]] for b in self.bodies]


class ManualClock:
    """now() and sleep() for the service; time moves only when the test calls advance_to()."""

    def __init__(self, t: float):
        self.t = t
        self.sleepers: list[tuple[float, asyncio.Future]] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, d: float) -> None:
        item = (self.t + d, asyncio.get_running_loop().create_future())
        self.sleepers.append(item)
        try:
            await item[1]
        finally:
            if item in self.sleepers:
                self.sleepers.remove(item)

    def advance_to(self, t: float) -> None:
        self.t = t
        for item in list(self.sleepers):
            if item[0] <= t:
                self.sleepers.remove(item)  # at once, so next_wakeup() never sees a stale sleeper
                item[1].set_result(None)

    async def next_wakeup(self) -> float:
        """Wait (real time, bounded) until a worker sleeps on this clock; its wake-up time."""
        for _ in range(1000):
            if self.sleepers:
                return min(t for t, _ in self.sleepers)
            await asyncio.sleep(0.01)
        raise AssertionError("no worker went to sleep on the clock")


def config(port: int, window: float = 0.0, **channel):
    return parse_config({
        "channels": {"desk": {"url": f"json://127.0.0.1:{port}/desk", **channel}},
        "scenarios": [{"id": "s1", "title": "Small caps lead", "group_window_s": window, "notify": ["desk"],
                       "trigger": {"series": "IWM/SPY", "lookback": 63, "above": 0.1, "rearm": 0.08}}],
    }, "noise.yaml")


def event(i: int, ts_ms: int = 1_700_000_000_000) -> dict:
    return {"schema_version": 1, "event_id": f"{i:032x}", "scenario": "s1", "title": "Small caps lead",
            "rule": "trigger", "kind": "fired", "series": "IWM/SPY", "direction": "up", "at": "x",
            "ts_ms": ts_ms + i, "value": 0.1 + i / 1000, "threshold": 0.1, "lookback": 63, "series_value": 0.4,
            "description": "IWM/SPY 63-session change >= +10.00%", "windows": {}, "confirmations": []}


@pytest.fixture
async def peer():
    p = HttpPeer()
    p.port = await p.start()
    yield p
    if p.hold is not None:
        p.hold.set()
    await p.runner.cleanup()


class Recorder:
    def __init__(self):
        self.records = []

    async def __call__(self, topic, key, value):
        self.records.append((topic, json.loads(value)))


async def test_events_inside_the_window_go_out_as_one_message(peer, tmp_path):
    clock = ManualClock(1_000_000.0)
    rec = Recorder()
    svc = NotificationService(config(peer.port, window=30), rec, store_path=tmp_path / "n.sqlite",
                              now=clock.now, sleep=clock.sleep, retry=FAST)
    async with svc:
        for i in (1, 2, 3):
            await svc.handle(event(i))
        await svc.handle(event(2))  # the same event again, inside the window
        assert await clock.next_wakeup() == 1_000_030.0
        assert peer.bodies == [] and svc.pending == 3
        clock.advance_to(1_000_030.0)
        assert await svc.drain(30)
        assert peer.event_ids() == [[f"{i:032x}" for i in (1, 2, 3)]]
        await svc.handle(event(4))  # after the window closed: a group of its own
        await clock.next_wakeup()
        clock.advance_to(1_000_060.0)
        assert await svc.drain(30)
    assert peer.event_ids()[1:] == [[f"{4:032x}"]]
    outcomes = [(r["event_id"][-1], r["outcome"]) for _t, r in rec.records]
    assert outcomes.count(("2", "skipped_duplicate")) == 1 and outcomes.count(("2", "delivered")) == 1


async def test_quiet_hours_hold_until_they_end(peer, tmp_path):
    night = datetime(2024, 3, 5, 23, 30, tzinfo=NY).timestamp()
    morning = datetime(2024, 3, 6, 7, 0, tzinfo=NY).timestamp()
    clock = ManualClock(night)
    rec = Recorder()
    svc = NotificationService(config(peer.port, quiet_hours="22:00-07:00", timezone="America/New_York"), rec,
                              store_path=tmp_path / "n.sqlite", now=clock.now, sleep=clock.sleep, retry=FAST)
    async with svc:
        await svc.handle(event(1))
        assert await clock.next_wakeup() == morning
        assert peer.bodies == [] and svc.pending == 1
        clock.advance_to(morning)
        assert await svc.drain(30)
    assert peer.event_ids() == [[f"{1:032x}"]]
    assert [(r["outcome"], r["at_ms"]) for _t, r in rec.records] == [("delivered", int(morning * 1000))]


async def test_rate_limit_holds_the_excess_and_sends_it_later(peer, tmp_path):
    clock = ManualClock(5_000.0)
    svc = NotificationService(config(peer.port, rate_limit_per_min=2), Recorder(), store_path=tmp_path / "n.sqlite",
                              now=clock.now, sleep=clock.sleep, retry=FAST)
    async with svc:
        for i in (1, 2, 3, 4, 5):
            await svc.handle(event(i))
        assert await clock.next_wakeup() == 5_060.0
        assert len(peer.bodies) == 2 and svc.pending == 3
        clock.advance_to(5_060.0)
        assert await clock.next_wakeup() == 5_120.0
        assert len(peer.bodies) == 4
        clock.advance_to(5_120.0)
        assert await svc.drain(30)
    assert [ids[0][-1] for ids in peer.event_ids()] == ["1", "2", "3", "4", "5"]  # all of them, in order


async def test_a_slow_channel_blocks_neither_the_caller_nor_other_channels(tmp_path):
    slow, fast = HttpPeer(), HttpPeer()
    slow.hold = asyncio.Event()
    ps, pf = await slow.start(), await fast.start()
    cfg = parse_config({
        "channels": {"slow": f"json://127.0.0.1:{ps}/s", "fast": f"json://127.0.0.1:{pf}/f"},
        "scenarios": [{"id": "s1", "title": "t", "notify": ["slow", "fast", "console"],
                       "trigger": {"series": "IWM/SPY", "lookback": 63, "above": 0.1}}]}, "slow.yaml")
    out = io.StringIO()
    svc = NotificationService(cfg, Recorder(), store_path=tmp_path / "n.sqlite", retry=FAST, out=out)
    try:
        async with svc:
            await svc.handle(event(1))
            assert svc.pending == 3  # handle() queued and returned; nothing was sent in it
            await asyncio.wait_for(fast.got.wait(), 30)
            assert fast.event_ids() == [[f"{1:032x}"]] and slow.bodies == []
            for _ in range(1000):  # the console finishes too, while the slow channel still hangs
                if svc.pending == 1:
                    break
                await asyncio.sleep(0.01)
            assert svc.pending == 1 and slow.bodies == []
            assert out.getvalue().startswith("ALERT: Small caps lead\n")
            slow.hold.set()
            assert await svc.drain(30)
            assert slow.event_ids() == [[f"{1:032x}"]]
    finally:
        slow.hold.set()
        await slow.runner.cleanup()
        await fast.runner.cleanup()
