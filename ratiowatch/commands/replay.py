"""``ratiowatch replay``: daily history sent as ticks through the whole streaming path.

History -> ``ticks`` topic (one batch record per date) -> route/evaluate agents -> ``events``,
then the events are read back from the topic with a plain consumer and printed. With ``--json``
the output is comparable line for line with ``ratiowatch backtest --json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import date
from typing import Any, TextIO

import orjson

from ratiowatch.agents.events import canonical_order
from ratiowatch.config import load_config
from ratiowatch.model import Config
from ratiowatch.streams.topics import APP_ID, EVENTS
from ratiowatch.streams.history import available_symbols, daily_ticks, load_history
from ratiowatch.streams.origin import REPLAY, header
from ratiowatch.streams.readback import read_topic
from ratiowatch.streams.ticks import encode_ticks

from ._common import add_broker, add_config, add_history, broker_url

NAME = "replay"
HELP = "send daily history as ticks through the streaming path and print the events read back"

# Records in flight between this producer and the worker. The embedded broker keeps only the
# newest 5 MB of a partition, so the producer must not run far ahead of the consumer.
MAX_IN_FLIGHT = 200
PROGRESS_S = 5.0  # a long replay says where it is this often


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config(p)
    add_broker(p)
    add_history(p, "--data", required=True)
    p.add_argument("--json", action="store_true", help="one JSON event per line (the events topic's records)")
    p.add_argument("--speed", type=float, default=None, metavar="DAYS_PER_S",
                   help="pace the replay at this many trading days per second (default: as fast as it goes)")
    p.add_argument("--partitions", type=int, default=None,
                   help="engine partitions (default: settings.partitions of --config)")
    p.add_argument("--from", dest="start", type=_day, default=None, metavar="YYYY-MM-DD",
                   help="replay from this day on; the days before it warm the scenarios up without going "
                        "through Kafka, so the events are those of a full replay from that day on")
    p.add_argument("--to", dest="end", type=_day, default=None, metavar="YYYY-MM-DD",
                   help="replay up to this day, included (default: the end of the history)")
    p.add_argument("--notify", action="store_true",
                   help="also deliver the trigger events to the scenarios' channels (email, Slack, push)")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day as YYYY-MM-DD") from None


def run(args: argparse.Namespace) -> int:
    url = broker_url(args.broker)
    config = load_config(args.config, known_symbols=available_symbols(args.data), require_channels=args.notify)
    if args.speed is not None and args.speed <= 0:
        print("ratiowatch replay: --speed must be > 0", file=sys.stderr)
        return 2
    if args.start and args.end and args.end < args.start:
        print(f"ratiowatch replay: --to {args.end} is before --from {args.start}", file=sys.stderr)
        return 2
    from ratiowatch.streams.faust_consumer import IdempotenceUnsupported

    try:
        events, stats = asyncio.run(replay(config, args.data, broker=url, speed=args.speed, partitions=args.partitions,
                                           notify=args.notify, start=args.start, end=args.end, progress=sys.stderr))
    except IdempotenceUnsupported as e:
        print(f"ratiowatch replay: {e}", file=sys.stderr)
        return 1
    if not stats["dates"]:
        print(f"ratiowatch replay: the history in {args.data} has no day from {args.start or 'its start'} "
              f"to {args.end or 'its end'}", file=sys.stderr)
        return 2
    for ev in events:
        if args.json:
            sys.stdout.write(orjson.dumps(ev).decode() + "\n")
        elif ev["rule"] == "trigger":
            print(f"{ev['at'][:10]}  {ev['scenario']:<28} {ev['kind']:<8} {ev['series']:<12} "
                  f"value {ev['value']:+.4f}  threshold {ev['threshold']:+.4f}")
    print(f"replay: {stats['dates']} dates, {stats['ticks']} ticks, {len(events)} events in {stats['seconds']:.1f}s",
          file=sys.stderr)
    return 0


async def replay(config: Config, data: str, *, broker: str | None = None, speed: float | None = None,
                 partitions: int | None = None, notify: bool = False, start: date | None = None,
                 end: date | None = None, progress: TextIO | None = None,
                 app_id: str = APP_ID) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the replay of the days from ``start`` to ``end`` (both included; None: the history's
    ends); returns (events read back from the topic, in canonical order; stats). ``progress``
    gets a line every PROGRESS_S."""
    from ratiowatch.agents.warmstart import seed_states
    from ratiowatch.roles.engine import EngineRole
    from ratiowatch.roles.notify import NotifyRole

    history = load_history(data, config.symbols, config.settings.signed_symbols)
    # The days before ``start`` go through the same pure engine the workers run, in this process:
    # the state a replay from the first day would have reached, without its events.
    seed = seed_states(config, data, before=start, history=history)[0] if start is not None else None
    days = list(daily_ticks(history, config.settings.session_timezone, start=start, end=end))
    rt = EngineRole(config, broker_url=broker, partitions=partitions, app_id=app_id, seed=seed, origin=REPLAY)
    notifier = None
    if notify:
        notifier = NotifyRole(config, bootstrap=rt.bootstrap, partitions=rt.partitions, history_dir=data,
                              ephemeral=rt.embedded is not None, app_id=f"{app_id}-notify", metrics=rt.metrics,
                              health=rt.health)
    t0 = time.monotonic()
    dates = ticks_sent = 0
    await rt.start()
    if notifier is not None:
        await notifier.start()
    try:
        pipe = rt.pipeline
        said = time.monotonic()
        for day, ticks in days:
            while dates - pipe.counters["records_in"] > MAX_IN_FLIGHT:
                await asyncio.sleep(0.005)
            await pipe.ticks_topic.send(key=b"replay", value=encode_ticks(ticks), headers=header(REPLAY))
            dates += 1
            ticks_sent += len(ticks)
            if progress is not None and time.monotonic() - said >= PROGRESS_S:
                said = time.monotonic()
                print(f"replay: at {day} ({dates}/{len(days)} days, {pipe.counters['events']} events so far)",
                      file=progress, flush=True)
            if speed:
                await asyncio.sleep(1.0 / speed)
        while pipe.counters["ticks_in"] < ticks_sent or not pipe.idle():
            await asyncio.sleep(0.02)
        await rt.app.producer.flush()
        loop = asyncio.get_running_loop()
        records = await loop.run_in_executor(
            None, lambda: list(read_topic(rt.bootstrap, EVENTS, **rt.client_kwargs)))
        if notifier is not None:
            # The notify role may still be reading events; wait until it has seen them all.
            while len(records) > notifier.handled:
                await asyncio.sleep(0.02)
            await notifier.drain(timeout=600)
    finally:
        if notifier is not None:
            await notifier.stop()
        await rt.stop()
    events = canonical_order([orjson.loads(v) for _, v, _, _ in records], config)
    return events, {"dates": dates, "ticks": ticks_sent, "seconds": time.monotonic() - t0,
                    "counters": dict(rt.pipeline.counters)}
