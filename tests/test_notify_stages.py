"""The notifiers' pipeline without a network: the pure decisions and their reasons, the stage
runner, each channel's list of stages, the order of the delivered record, the safety net for a
stage that raises, and scenarios swapped at run time."""

from __future__ import annotations

import io
import json

import pytest

from ratiowatch.config import parse_config
from ratiowatch.errors import ConfigError
from ratiowatch.notifiers import NotificationService
from ratiowatch.notifiers.decide import (DEAD_LETTER, GIVE_UP, MUTE, REPORT, RETRY, SEND, SKIP, after_failure,
                                         after_give_up, dedup, mute)
from ratiowatch.notifiers.group import Batch
from ratiowatch.notifiers.route import UNKNOWN_SCENARIO, decide_route
from ratiowatch.notifiers.stage import StageFailed, run_stages
from ratiowatch.notifiers.stages import (ChartStage, DeadLetterStage, DedupStage, MuteStage, RateStage, RenderStage,
                                         RetryStage, SetDeliveredStage)

from test_notify_logic import event, make_config, notice


# ------------------------------------------------------------------ decisions

def test_dedup_skips_only_what_this_channel_already_got():
    assert dedup("a", {"a", "b"}) == (d := dedup("a", ["a"])) and d.action == SKIP
    assert d.reason == "already delivered to this channel"
    assert dedup("c", {"a", "b"}).action == SEND
    assert dedup("a", set()).action == SEND


def test_mute_holds_back_what_a_silence_matches_except_a_redelivery():
    d = mute("sil-1", redelivery=False)
    assert d.action == MUTE and d.reason == "silenced by sil-1"
    assert mute(None, redelivery=False).action == SEND
    assert mute("sil-1", redelivery=True).action == SEND


@pytest.mark.parametrize("retryable, attempt, next_start, action, why", [
    (False, 1, 0.0, GIVE_UP, "refused"),
    (True, 5, 0.0, GIVE_UP, "5 attempts made"),
    (True, 2, 600.5, GIVE_UP, "deadline"),
    (True, 2, 600.0, RETRY, "attempt 2 of 5"),  # starting exactly at the deadline is still allowed
    (True, 4, 10.0, RETRY, "may pass"),
])
def test_after_failure_retries_until_permanent_exhausted_or_past_the_deadline(retryable, attempt, next_start,
                                                                              action, why):
    d = after_failure(retryable, attempt, 5, next_start, 600.0)
    assert d.action == action and why in d.reason, d


def test_after_give_up_dead_letters_once():
    assert after_give_up(redelivery=False).action == DEAD_LETTER
    assert after_give_up(redelivery=True).action == REPORT


def test_route_decisions_say_why_an_event_goes_nowhere():
    cfg = make_config(notify_resolved=False)
    assert decide_route(event(rule="Breadth improving"), cfg).reason.startswith("a confirmation")
    assert decide_route(event(scenario="gone"), cfg).reason == UNKNOWN_SCENARIO
    assert decide_route(event("rearmed"), cfg).reason == "a re-arm of a scenario without notify_resolved"
    d = decide_route(event(), cfg)
    assert d.reason == "a firing" and d.route.channels == ("console",)


# ------------------------------------------------------------------ the runner

class Step:
    def __init__(self, name, seen, outcome=None, fail=False):
        self.name, self.seen, self.outcome, self.fail = name, seen, outcome, fail

    async def run(self, batch, now):
        self.seen.append((self.name, now))
        if self.fail:
            raise OSError("disk full")
        batch.notices = batch.notices[1:] if self.name == "drop-first" else batch.notices
        return Batch(batch.scenario_id, batch.notices, outcome=self.outcome)


async def test_stages_run_in_order_with_the_time_each_starts_and_stop_at_an_outcome():
    seen, clock = [], iter([10.0, 11.0, 12.0, 13.0])
    stages = [Step("a", seen), Step("b", seen, outcome="silenced"), Step("c", seen)]
    out = await run_stages(stages, Batch("s1", [notice("x")]), lambda: next(clock))
    assert seen == [("a", 10.0), ("b", 11.0)] and out.outcome == "silenced"


async def test_a_stage_that_raises_is_named_with_the_batch_it_was_given():
    seen = []
    stages = [Step("drop-first", seen), Step("boom", seen, fail=True), Step("never", seen)]
    with pytest.raises(StageFailed) as ei:
        await run_stages(stages, Batch("s1", [notice("x"), notice("y")]), lambda: 0.0)
    assert ei.value.stage is stages[1] and ei.value.batch.event_ids == ["y"]
    assert isinstance(ei.value.__cause__, OSError) and [n for n, _ in seen] == ["drop-first", "boom"]


# ------------------------------------------------------------------ a channel's list

def _stage_types(svc, channel):
    return [type(s) for s in svc._fanout.workers[channel].stages]


async def test_each_channel_gets_the_stages_in_order_and_mute_only_with_silences(tmp_path):
    full = [DedupStage, MuteStage, RateStage, RenderStage, ChartStage, RetryStage, DeadLetterStage, SetDeliveredStage]

    async def publish(t, k, v):
        pass

    async with NotificationService(make_config(), publish, store_path=tmp_path / "a.sqlite", out=io.StringIO(),
                                   muted=lambda s, t: None) as svc:
        assert _stage_types(svc, "console") == full
    async with NotificationService(make_config(), publish, store_path=tmp_path / "b.sqlite", out=io.StringIO()) as svc:
        assert _stage_types(svc, "console") == [s for s in full if s is not MuteStage]


# ------------------------------------------------------------------ through the service, on the console

def _records(published):
    return [(json.loads(v)["event_id"], json.loads(v)["outcome"]) for t, v in published if t == "deliveries"]


async def test_the_dedup_record_is_written_before_delivered_is_published(tmp_path):
    published, seen_in_record = [], []
    svc = NotificationService(make_config(), None, store_path=tmp_path / "n.sqlite", out=io.StringIO())

    async def publish(topic, key, value):
        published.append((topic, value))
        if json.loads(value)["outcome"] == "delivered":
            seen_in_record.append(svc._log.delivered(["a" * 32], "console"))

    svc.publish = publish
    async with svc:
        await svc.handle(event())
        assert await svc.drain(10)
    assert _records(published) == [("a" * 32, "delivered")] and seen_in_record == [{"a" * 32}]


async def test_a_stage_that_raises_dead_letters_the_message_and_the_channel_goes_on(tmp_path):
    published = []

    async def publish(topic, key, value):
        published.append((topic, value))

    async with NotificationService(make_config(), publish, store_path=tmp_path / "n.sqlite",
                                   out=io.StringIO()) as svc:
        worker = svc._fanout.workers["console"]
        render = next(s for s in worker.stages if isinstance(s, RenderStage))
        real = render.render
        render.render = lambda ns: (_ for _ in ()).throw(KeyError("template"))
        await svc.handle(event(eid="1" * 32))
        assert await svc.drain(10)
        render.render = real
        await svc.handle(event(eid="2" * 32))
        assert await svc.drain(10)
    (dead,) = [json.loads(v) for t, v in published if t == "notifications.dlq"]
    assert dead["event_ids"] == ["1" * 32] and dead["error"] == "internal error: KeyError: 'template'"
    assert _records(published) == [("2" * 32, "delivered")]


async def test_set_config_routes_later_events_with_the_new_scenarios_and_starts_new_channels(tmp_path):
    published = []

    async def publish(topic, key, value):
        published.append((topic, value))

    out = io.StringIO()
    before = make_config()
    after = parse_config({"channels": {"desk": "json://127.0.0.1:9/x"}, "scenarios": [
        {"id": "s1", "title": "Small caps lead", "trigger": {"series": "IWM/SPY", "lookback": 63, "above": 0.1},
         "notify": ["console"]},
        {"id": "s2", "title": "Second", "trigger": {"series": "IWM/SPY", "lookback": 63, "above": 0.1},
         "notify": ["console"]}]}, "new.yaml")
    async with NotificationService(before, publish, store_path=tmp_path / "n.sqlite", out=out) as svc:
        await svc.handle(event(scenario="s2", eid="1" * 32))  # not in the config yet: not notified
        assert svc.pending == 0
        svc.set_config(after)
        assert "desk" in svc._fanout.workers  # a channel the new config adds runs at once
        await svc.handle(event(scenario="s2", eid="2" * 32))
        assert await svc.drain(10)
    assert _records(published) == [("2" * 32, "delivered")] and out.getvalue().count("ALERT:") == 1


async def test_set_config_refuses_a_channel_url_apprise_does_not_know_and_keeps_the_old_config(tmp_path):
    async def publish(t, k, v):
        pass

    before = make_config()
    svc = NotificationService(before, publish, store_path=tmp_path / "n.sqlite", out=io.StringIO())
    with pytest.raises(ConfigError, match="channels.bad.url"):
        svc.set_config(make_config({"bad": "nosuchthing://x@example.com/y"}, notify=["bad"]))
    assert svc.config is before

