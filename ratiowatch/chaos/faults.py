"""Injecting a chaos run's faults: each scheduled :class:`~ratiowatch.chaos.plan.Fault` applied to
the broker, the worker, the notification endpoint or the feed, held for its duration and healed,
and recorded (when it began and was healed) so the verdict can measure the recovery."""

from __future__ import annotations

import asyncio
import time

from .observed import FaultRecord
from .plan import FAULT_ERRORS, Fault
from .rig import Rig

__all__ = ["inject", "run_faults", "ENDPOINT_MODES"]

# fault kind -> what the notification endpoint does meanwhile (peers.HookEndpoint.set_mode)
ENDPOINT_MODES = {"endpoint_500": "fail500", "endpoint_stall": "stall", "endpoint_drop": "drop"}


async def inject(rig: Rig, f: Fault) -> None:
    """Apply ``f``, wait out its duration, heal it, and record it in ``rig.obs.faults``."""
    broker, worker, hook = rig.broker, rig.worker, rig.hook
    start = time.monotonic()
    info = ""
    if f.kind == "broker_down":
        broker.set_broker_down(1)
        await asyncio.sleep(f.duration_s)
        broker.set_broker_up(1)
    elif f.kind == "broker_slow":
        broker.set_rtt(1, f.params["rtt_ms"])
        await asyncio.sleep(f.duration_s)
        broker.set_rtt(1, 0)
        info = f"rtt {f.params['rtt_ms']} ms"
    elif f.kind in FAULT_ERRORS:
        broker.push_request_errors(f.params["api"], *f.params["errors"])
        info = f"{f.params['api']}: {', '.join(f.params['errors'])}"
    elif f.kind == "worker_kill":
        await worker.kill()
        await asyncio.sleep(f.duration_s)
        await worker.start()
    elif f.kind in ENDPOINT_MODES:
        hook.set_mode(ENDPOINT_MODES[f.kind])
        await asyncio.sleep(f.duration_s)
        hook.set_mode("ok")
    elif f.kind == "feed_drop":
        await rig.feed_idle.wait()
        if not await rig.feed.drop():
            info = "no connection to drop"
    rig.obs.faults.append(FaultRecord(f.kind, start, time.monotonic(), info))
    rig.say(f"fault {f.kind} ({f.duration_s:g}s{'; ' + info if info else ''})")


async def run_faults(rig: Rig, t0: float, schedule: list[Fault]) -> None:
    """The faults one after another, each at its time after ``t0`` (monotonic)."""
    for f in schedule:
        await asyncio.sleep(max(0.0, t0 + f.at_s - time.monotonic()))
        await inject(rig, f)
