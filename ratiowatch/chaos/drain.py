"""Draining a chaos run: once sending is over, heal whatever a fault may have left behind, wait
until every expected event, dead letter and notification is out (or the drain timeout passes),
then stop the worker cleanly."""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import orjson

from .observed import Observed
from .peers import HookEndpoint
from .rig import Rig
from .verify import expected_pairs

__all__ = ["drain", "heal", "outstanding", "wait_for_outputs"]

SETTLE_S = 3.0   # after the outputs are complete: a repeat would show up by then


def heal(rig: Rig) -> None:
    """The broker up, fast and answering, the endpoint answering 200."""
    rig.broker.set_broker_up(1)
    rig.broker.set_rtt(1, 0)
    for api in rig.broker.API_KEYS:
        rig.broker.clear_request_errors(api)
    rig.hook.set_mode("ok")


async def drain(rig: Rig, sending_began: float) -> None:
    """Heal, restart the worker if a fault left it down, wait for the outputs, stop the worker."""
    heal(rig)
    if rig.worker.proc is None or rig.worker.proc.returncode is not None:
        await rig.worker.start()
    rig.say(f"sending done in {time.monotonic() - sending_began:.1f}s; draining")
    timeout = rig.opts.drain_timeout_s or max(120.0, rig.opts.duration_s / 2)
    await wait_for_outputs(rig.obs, rig.hook, timeout, rig.say)
    await rig.worker.stop()
    await asyncio.sleep(1.0)  # a last read of what the clean stop wrote


def outstanding(obs: Observed, receipts: list[tuple[float, list[str]]], seen: set[str]) -> dict[str, int]:
    """What is still missing: expected events not in ``seen``, dead letters not yet on
    ``ticks.dlq``, notifications neither answered 200 (``receipts``) nor dead-lettered."""
    expected_ids = {e["event_id"] for e in obs.expected_events}
    pairs = {eid for eid, _ in expected_pairs(obs)}
    n_dlq = (sum(len(g.reasons) for _, _, g in obs.route_garbage) + sum(c for _, c in obs.late)
             + sum(len(g.reasons) for g in obs.feed_garbage))
    settled = {eid for _, ids in receipts for eid in ids}
    settled |= {eid for _, r in obs.notifications_dlq for eid in orjson.loads(r).get("event_ids", [])}
    return {"events": len(expected_ids - seen), "dead letters": max(0, n_dlq - len(obs.ticks_dlq)),
            "notifications": len(pairs - settled)}


async def wait_for_outputs(obs: Observed, hook: HookEndpoint, timeout: float, say: Callable[[str], None]) -> None:
    """Until every expected event, dead letter and notification is out, or ``timeout``."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    read = 0
    while True:
        for _, raw in obs.events[read:]:
            seen.add(orjson.loads(raw)["event_id"])
        read = len(obs.events)
        todo = outstanding(obs, hook.receipts, seen)
        if not any(todo.values()):
            await asyncio.sleep(SETTLE_S)
            return
        if time.monotonic() > deadline:
            say(f"drain: gave up after {timeout:g}s; still missing " + ", ".join(f"{v} {k}" for k, v in todo.items()))
            return
        await asyncio.sleep(0.5)
