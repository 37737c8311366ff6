"""``ratiowatch run``: the main job, every role in one process.

With no arguments: an embedded broker in this process, the shipped scenarios, and a simulated
market whose first rally crosses the small-caps scenario within the first minute. The four roles
run through the same classes as ``ratiowatch engine``, ``notify``, ``web`` and ``source`` and
talk only through the broker's topics, as they do when they run as separate processes.

The --config file's scenarios are applied to the ``scenarios`` topic at start, and again on
SIGHUP or when the file changes on disk (the diff is printed; the roles take it live). With the
embedded broker the file is the whole truth: a scenario taken out of it is removed. With --broker
other scenarios on that cluster stay (``ratiowatch scenarios apply --prune`` removes them).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from ratiowatch.config import load_config
from ratiowatch.model import Config
from ratiowatch.ops.health import Health
from ratiowatch.ops.http import HttpAddress, OpsServer, http_settings, parse_http_address
from ratiowatch.ops.metrics import Metrics
from ratiowatch.roles.sim_start import SimStartRefused, plan_sim_start
from ratiowatch.roles.source import run_sources
from ratiowatch.roles.source_options import add_source_arguments, source_options_from_args
from ratiowatch.roles.startup_watch import watch_coordination
from ratiowatch.streams.clients import check_reachable
from ratiowatch.streams.history import available_symbols
from ratiowatch.streams.kafka_settings import load_kafka_security
from ratiowatch.streams.sources.sinks import KafkaTickSink, MeteredSink

from ._common import add_broker, add_config, add_history, broker_url
from ._reload import FileFollower
from .scenarios import apply_file

NAME = "run"
HELP = "run everything in one process: broker (embedded unless --broker), engine, notify, tick source, page"

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config(p)
    add_broker(p)
    add_history(p)
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop cleanly after this many seconds (default: until Ctrl-C)")
    p.add_argument("--partitions", type=int, default=None, help="engine partitions (default: settings.partitions)")
    p.add_argument("--serve", nargs="?", const=HttpAddress("127.0.0.1", 8765), default=None, type=_address,
                   metavar="HOST:PORT", help="serve the status page, /status, /ws and /metrics, /healthz, /readyz "
                   "(default 127.0.0.1:8765; port 0: any free port). A non-loopback address needs env RATIOWATCH_TOKEN")
    add_source_arguments(p)


async def _first_broken(roles: dict[str, Any]) -> str:
    watches = [asyncio.create_task(watch_coordination(r.coordination_error, group=name)) for name, r in roles.items()]
    try:
        done, _ = await asyncio.wait(watches, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()
    finally:
        for w in watches:
            w.cancel()


class _Indented:
    """What apply prints, indented under the line that says why it runs."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def write(self, text: str) -> int:
        return self.out.write("".join("  " + ln if ln.strip() else ln for ln in text.splitlines(keepends=True)))

    def flush(self) -> None:
        self.out.flush()


def _address(text: str) -> HttpAddress:
    try:
        return parse_http_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    url = broker_url(args.broker)
    known = available_symbols(args.history) if args.history else None
    config = load_config(args.config, known_symbols=known)
    if args.duration is not None and args.duration <= 0:
        print("ratiowatch run: --duration must be > 0", file=sys.stderr)
        return 2
    opts = source_options_from_args(args, config)
    address, token = http_settings(args.serve, flag="--serve")
    from ratiowatch.streams.clients import BrokerUnreachable
    from ratiowatch.streams.faust_consumer import IdempotenceUnsupported

    try:
        return asyncio.run(_main(args, config, url, opts, address, token, known))
    except BrokerUnreachable as e:
        print(f"ratiowatch run: {e}", file=sys.stderr)
        return 1
    except IdempotenceUnsupported as e:
        print(f"ratiowatch run: {e}", file=sys.stderr)
        return 1
    except SimStartRefused as e:
        print(f"ratiowatch run: the simulated market does not start: {e}. It must not start in the past of the "
              f"state on the broker; fix that, or run with --no-sim", file=sys.stderr)
        return 1


async def _main(args: argparse.Namespace, config: Config, url: str | None, opts: Any, address: Any,
                token: str | None, known: Any) -> int:
    from ratiowatch.roles.engine import EngineRole
    from ratiowatch.roles.notify import NotifyRole
    from ratiowatch.roles.web import WebRole
    from ratiowatch.streams.app import ensure_topics
    from ratiowatch.streams.broker import EmbeddedBroker
    from ratiowatch.streams.clients import aio_producer
    from ratiowatch.streams.live import LiveHub
    from ratiowatch.streams.origin import LIVE, SIMULATED

    partitions = args.partitions or config.settings.partitions
    embedded = None
    if url is None:
        embedded = EmbeddedBroker()
        ensure_topics(embedded, partitions)
        url = embedded.url
    bootstrap = url.removeprefix("kafka://")
    metrics, health = Metrics(), Health()
    engine = notify = web = producer = server = follower = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    source_failed: BaseException | None = None
    role_failed: str | None = None
    try:
        # The simulated market runs only without feeds and polls: then everything this run
        # evaluates is simulated, and says so.
        origin = SIMULATED if opts.sim else LIVE
        where = f"kafka://{bootstrap}" if embedded is None else f"embedded broker at {bootstrap}"
        print(f"ratiowatch: {len(config.scenarios)} scenarios from {config.path}; broker: {where}", flush=True)
        # The roles take their scenarios from the topic, as on a cluster; this file is applied
        # first, and again whenever it changes (commands/_reload.py).
        prune = embedded is not None

        def apply(cfg: Config, each: bool = True) -> None:
            apply_file(bootstrap, cfg.scenarios, prune=prune, sec=load_kafka_security() if embedded is None else None,
                       out=_Indented(sys.stdout), each=each)

        if embedded is None:
            check_reachable(bootstrap)  # BrokerUnreachable: exit 1 at once, as every role does
        await loop.run_in_executor(None, apply, config, False)  # at start, the summary is enough
        engine = EngineRole(config, broker_url=url, partitions=partitions, history_dir=args.history, metrics=metrics,
                            health=health, origin=origin, follow_scenarios=True)
        notify = NotifyRole(config, bootstrap=bootstrap, partitions=partitions, history_dir=args.history,
                            ephemeral=embedded is not None, metrics=metrics, health=health, follow_scenarios=True)
        if origin == SIMULATED:
            print("SIMULATED MARKET: the prices and alerts of this run are simulated, not market data "
                  "(--no-sim with --feed or --poll for real ones)", flush=True)
        await notify.start()
        await engine.start()
        if engine.warm_started:
            print(engine.warm_started, flush=True)
        follower = FileFollower(config.path, config, apply, known_symbols=known)
        follower.start()
        if address is not None:
            hub = LiveHub()
            web = WebRole(hub, bootstrap=bootstrap, sec=engine.security, metrics=metrics, health=health,
                          follow_scenarios=True)
            await web.start()
            server = await OpsServer(metrics, health, token=token, live=hub).start(address)
            print(f"status page: http://{address.host}:{server.port}/  (live stream: ws://{address.host}:"
                  f"{server.port}/ws, metrics: /metrics)", flush=True)
        sim_at: dict[str, Any] = {}
        if opts.sim:  # never in the past of the state it joins (a new embedded broker holds nothing)
            plan = await plan_sim_start(config, bootstrap=None if embedded is not None else bootstrap,
                                        sec=engine.security, history_dir=args.history)
            print(f"ratiowatch: {plan.describe()}", flush=True)
            sim_at = {"start": plan.start, "levels": plan.levels}
        metrics.add_role("source")
        producer = aio_producer(bootstrap, client_id="ratiowatch-source", sec=engine.security)
        await producer.start()
        sink = MeteredSink(KafkaTickSink(producer), metrics)
        source = asyncio.create_task(run_sources(opts, config, sink, stop, history_dir=args.history, **sim_at),
                                     name="source")
        print("running" + (f" for {args.duration:g}s" if args.duration else "; Ctrl-C stops") + "\n", flush=True)
        stopper = asyncio.create_task(stop.wait())
        # A role that can no longer work (its app crashed, its group coordination stopped) stops
        # the run, as it would stop its own process: nothing may go on looking alive.
        broken = asyncio.create_task(_first_broken({"engine": engine, "notify": notify}))
        done, _ = await asyncio.wait({source, stopper, broken}, timeout=args.duration,
                                     return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        broken.cancel()
        if broken in done and not broken.cancelled():
            role_failed = broken.result()
        if source in done and not source.cancelled() and source.exception() is not None:
            source_failed = source.exception()
        await asyncio.gather(source, stopper, return_exceptions=True)
    finally:
        if follower is not None:
            await follower.stop()
        for part in (server, web):
            if part is not None:
                await (part.close() if part is server else part.stop())
        if producer is not None:
            await producer.stop()
        if engine is not None:
            await engine.stop()
        if notify is not None:
            await notify.stop()
        if embedded is not None:
            embedded.stop()
    c = engine.pipeline.counters
    print(f"\nstopped: {c['ticks_in']} ticks in, {c['dead_lettered']} dead-lettered, {c['events']} events",
          flush=True)
    if role_failed is not None:
        print(f"ratiowatch run: {role_failed}", file=sys.stderr)
        return 1
    if source_failed is not None:
        print(f"ratiowatch run: the tick source failed: {source_failed!r}", file=sys.stderr)
        return 1
    return 0
