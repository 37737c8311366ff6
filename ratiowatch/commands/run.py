"""``ratiowatch run``: the main job. A worker, a tick source, and alerts as they happen.

With no arguments: an embedded broker in this process, the shipped scenarios, and a simulated
market whose first rally crosses the small-caps scenario within the first minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from ratiowatch.config import Config, load_config
from ratiowatch.streams.history import available_symbols
from ratiowatch.streams.simfeed import SimMarket
from ratiowatch.streams.ticks import encode_ticks

from ._common import add_broker, add_config, add_history, broker_url

NAME = "run"
HELP = "run the engine: broker (embedded unless --broker), worker, tick source, alerts"

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config(p)
    add_broker(p)
    add_history(p)
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop cleanly after this many seconds (default: until Ctrl-C)")
    p.add_argument("--feed", metavar="URL", default=None,
                   help="ws:// or wss:// market-data feed (default: the simulated market)")
    p.add_argument("--feed-format", default="plain", help="feed message format: plain or polygon (default plain)")
    p.add_argument("--feed-subscribe", default=None, metavar="JSON",
                   help='subscribe message template, {symbols} is replaced, e.g. \'{"action":"subscribe","params":"{symbols}"}\'')
    p.add_argument("--no-sim", action="store_true", help="no simulated market (ticks come from the topic only)")
    p.add_argument("--sim-rate", type=float, default=40.0, metavar="STEPS_PER_S",
                   help="simulated prints per second, each a batch of every symbol (default 40)")
    p.add_argument("--seed", type=int, default=7, help="simulated market seed (default 7)")
    p.add_argument("--serve", nargs="?", const="127.0.0.1:8765", default=None, metavar="HOST:PORT",
                   help="serve the status page and live websocket (default 127.0.0.1:8765); "
                        "token from env RATIOWATCH_TOKEN")
    p.add_argument("--partitions", type=int, default=None, help="engine partitions (default: settings.partitions)")


def run(args: argparse.Namespace) -> int:
    url = broker_url(args.broker)
    known = available_symbols(args.history) if args.history else None
    config = load_config(args.config, known_symbols=known)
    problem = _check_args(args)
    if problem:
        print(f"ratiowatch run: {problem}", file=sys.stderr)
        return 2
    return asyncio.run(_main(args, config, url))


def _check_args(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, before anything starts (None: nothing)."""
    from ratiowatch.streams.feed_formats import FORMATS

    if args.duration is not None and args.duration <= 0:
        return "--duration must be > 0"
    if args.sim_rate <= 0:
        return "--sim-rate must be > 0"
    if args.serve is not None:
        host, _, port = args.serve.rpartition(":")
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            return f"--serve must be HOST:PORT (e.g. 127.0.0.1:8765), got {args.serve!r}"
        args.serve_at = (host or "127.0.0.1", int(port))
    if args.feed is not None and not args.feed.startswith(("ws://", "wss://")):
        return f"--feed must be a ws:// or wss:// URL, got {args.feed!r}"
    if args.feed_format not in FORMATS:
        return f"--feed-format must be one of {', '.join(sorted(FORMATS))}, got {args.feed_format!r}"
    if args.feed_subscribe is not None:
        try:
            args.feed_subscribe = json.loads(args.feed_subscribe)
        except json.JSONDecodeError as e:
            return f"--feed-subscribe is not JSON: {e}"
    return None


async def _main(args: argparse.Namespace, config: Config, url: str | None) -> int:
    from ratiowatch.runtime import Runtime

    seed, last_close, last_date = None, {}, None
    if args.history:
        from ratiowatch.agents.warmstart import seed_states

        t0 = time.monotonic()
        seed, last_close, last_date = seed_states(config, args.history)
        print(f"warm start: {len(seed)} scenarios seeded from {args.history} through {last_date} "
              f"({time.monotonic() - t0:.1f}s)", flush=True)

    hub = None
    if args.serve:
        from ratiowatch.streams.live import LiveHub

        hub = LiveHub(scenarios=[s.id for s in config.scenarios])

    rt = Runtime(config, broker_url=url, partitions=args.partitions, seed=seed,
                 on_event=hub.publish_event if hub else None, on_status=hub.publish_status if hub else None)
    notifier = rt.notification_service(args.history)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    where = url or f"embedded broker at {rt.bootstrap}"
    print(f"ratiowatch: {len(config.scenarios)} scenarios from {config.path}; broker: {where}", flush=True)
    await notifier.start()
    await rt.start()
    tasks: list[asyncio.Task[Any]] = []
    server = None
    try:
        if hub is not None:
            host, port = args.serve_at
            server = await hub.serve(host, port, token=os.environ.get("RATIOWATCH_TOKEN") or None)
            port = server.sockets[0].getsockname()[1]
            print(f"status page: http://{host}:{port}/  (live stream: ws://{host}:{port}/ws)", flush=True)
        if args.feed:
            tasks.append(asyncio.create_task(_run_feed(args, config, rt)))
        elif not args.no_sim:
            from datetime import timedelta

            start = (last_date + timedelta(days=1)) if last_date else None
            tasks.append(asyncio.create_task(_run_sim(args, config, rt, start, last_close)))
        for t in tasks:  # a tick source that dies stops the run loudly, not silently
            t.add_done_callback(lambda t: stop.set() if not t.cancelled() and t.exception() else None)
        print("running" + (f" for {args.duration:g}s" if args.duration else "; Ctrl-C stops") + "\n", flush=True)
        try:
            await asyncio.wait_for(stop.wait(), timeout=args.duration)
        except asyncio.TimeoutError:
            pass
        failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            server.close()
            hub.close()
        await rt.stop()
        await notifier.stop()
    c = rt.pipeline.counters
    print(f"\nstopped: {c['ticks_in']} ticks in, {c['dead_lettered']} dead-lettered, {c['events']} events",
          flush=True)
    for t in failed:
        print(f"ratiowatch run: the tick source failed: {t.exception()!r}", file=sys.stderr)
    return 1 if failed else 0


async def _run_sim(args: argparse.Namespace, config: Config, rt: Any, start: Any, levels: dict[str, float]) -> None:
    kw = {"start": start} if start else {}
    sim = SimMarket(tuple(sorted(config.symbols)), seed=args.seed, levels=levels,
                    tz=config.settings.session_timezone, **kw)
    interval = 1.0 / args.sim_rate
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        await rt.pipeline.ticks_topic.send(key=b"sim", value=encode_ticks(sim.step()))
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - loop.time()))


async def _run_feed(args: argparse.Namespace, config: Config, rt: Any) -> None:
    from ratiowatch.streams.feed import FeedClient

    async def publish_ticks(ticks: list[Any]) -> None:
        await rt.pipeline.ticks_topic.send(key=b"feed", value=encode_ticks(ticks))

    async def publish_dlq(record: bytes) -> None:
        await rt.pipeline.dlq_topic.send(key=b"feed", value=record)

    client = FeedClient(args.feed, fmt=args.feed_format, symbols=sorted(config.symbols),
                        publish_ticks=publish_ticks, publish_dlq=publish_dlq, subscribe=args.feed_subscribe,
                        known_symbols=config.symbols)
    await client.run()
