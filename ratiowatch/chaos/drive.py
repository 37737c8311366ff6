"""Driving a chaos run: the worker is started, and for the run's duration three things go on at
once:

- the dates: one batch record per date to ``ticks`` (idempotent producer, each send acknowledged
  before the next, so the topic holds the dates in order), with bad records, bad items inside good
  batches and late ticks mixed in;
- the garbage feed: bad messages through the websocket feed to the real feed client;
- the faults (:mod:`.faults`), one after another, on the schedule :mod:`.plan` drew.

Everything sent is recorded in the rig's :class:`~ratiowatch.chaos.observed.Observed`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from ratiowatch.model.sessions import session_close_ts_ms
from ratiowatch.streams import topics

from .faults import run_faults
from .plan import fault_schedule, feed_garbage, late_tick, mixed_item, ticks_garbage
from .rig import Rig

__all__ = ["drive"]

WORKER_READY_S = 120.0   # a worker that does not own its partitions by then will not


async def drive(rig: Rig) -> float:
    """Start the worker, then send and inject faults for ``opts.duration_s``; returns the monotonic
    time the sending began."""
    await rig.worker.start()
    await asyncio.wait_for(rig.worker.ready.wait(), WORKER_READY_S)
    rig.say("worker ready; sending")
    t0 = time.monotonic()
    schedule = fault_schedule(rig.rng, rig.opts.duration_s, kinds=rig.opts.kinds)
    feeder = asyncio.create_task(_send_feed_garbage(rig, t0 + rig.opts.duration_s))
    await asyncio.gather(_send_dates(rig, t0), run_faults(rig, t0, schedule), feeder)
    return t0


async def _send_feed_garbage(rig: Rig, until: float) -> None:
    obs, feed, client, rng = rig.obs, rig.feed, rig.client, rig.rng
    while time.monotonic() < until:
        await asyncio.sleep(rig.opts.feed_interval_s)
        if not feed.connected:
            continue
        before = client.messages
        g = feed_garbage(rng, next(rig.counter), session_close_ts_ms(rig.dates[0], rig.tz), rng.choice(rig.bad_symbols))
        rig.feed_idle.clear()
        try:
            if await feed.send(g.payload):
                # Wait until the client has handled it (dead letters published): a drop
                # comes only between messages, so every message sent is a message received.
                while client.messages == before:
                    await asyncio.sleep(0.01)
                obs.feed_garbage.append(g)
        finally:
            rig.feed_idle.set()


async def _send_dates(rig: Rig, t0: float) -> None:
    obs, rng, dates, tz = rig.obs, rig.rng, rig.dates, rig.tz
    by_date = {d: part for (d,), part in rig.history.group_by("date", maintain_order=True)}
    for k, d in enumerate(dates):
        await asyncio.sleep(max(0.0, t0 + k / rig.pace - time.monotonic()))
        ts = session_close_ts_ms(d, tz)
        part = by_date[d]
        items: list[dict[str, Any]] = [{"symbol": s, "price": c, "ts_ms": ts}
                                       for s, c in zip(part["symbol"].to_list(), part["close"].to_list())]
        if rng.random() < rig.opts.garbage_every ** -1:
            g = ticks_garbage(rng, next(rig.counter), ts, rng.choice(rig.bad_symbols))
            p, o, _ = await rig.send(topics.TICKS, g.payload)
            obs.route_garbage.append((p, o, g))
        if k >= 40 and rng.random() < 1 / 50:
            late = late_tick(rng, next(rig.counter), session_close_ts_ms(dates[k - 25], tz))
            await rig.send(topics.TICKS, orjson.dumps(late))
            # 25 dates behind the ticks before it on its partition: the route stage dead-letters
            # it once, in partition order (a shard would dead-letter its own copy of a tick
            # only late against its frontier, see README "Late ticks").
            obs.late.append(((late["symbol"], late["price"], late["ts_ms"]), 1))
        mixed = None
        if rng.random() < 1 / 30:
            item, mixed = mixed_item(next(rig.counter), ts, rng.choice(rig.bad_symbols))
            items.insert(rng.randrange(len(items) + 1), item)
        p, o, at = await rig.send(topics.TICKS, orjson.dumps(items))
        obs.valid_records.add((p, o))
        obs.valid_ticks.extend((i["symbol"], i["price"], i["ts_ms"]) for i in items if "id" not in i)
        obs.date_acks.append((at, ts))
        if mixed is not None:
            obs.route_garbage.append((p, o, mixed))
        if (k + 1) % 500 == 0:
            rig.say(f"sent {k + 1}/{len(dates)} dates")
