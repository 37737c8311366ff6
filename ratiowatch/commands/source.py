"""``ratiowatch source``: the source role alone, a plain producer into ``ticks`` / ``ticks.dlq``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any


from ratiowatch.config import load_config

from ._common import add_broker, add_config, add_history, broker_url

NAME = "source"
HELP = "run the tick sources (feeds, polls, or the simulated market) into the ticks topic"
DESCRIPTION = (
    "Runs every configured source concurrently and publishes to the `ticks` topic (bad input to "
    "`ticks.dlq`, with reasons) through a plain Kafka producer: it joins no consumer group. "
    "Serves /metrics, /healthz and /readyz on --http. See docs/sources.md."
)
CONNECT_TIMEOUT_S = 15.0
HTTP_PORT = 9473  # engine 9470, notify 9471, web 9472


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ratiowatch.ops.http import add_http_argument
    from ratiowatch.roles.source_options import add_source_arguments

    add_config(p)
    add_broker(p, embedded_default=False)
    add_history(p)
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop cleanly after this many seconds (default: until Ctrl-C or SIGTERM)")
    add_http_argument(p, HTTP_PORT)
    add_source_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ratiowatch.ops.http import http_settings
    from ratiowatch.roles.source_options import source_options_from_args

    url = broker_url(args.broker)
    if url is None:
        print("ratiowatch source: --broker kafka://HOST:PORT is required (env RATIOWATCH_BROKER): "
              "the source role writes into a running cluster", file=sys.stderr)
        return 2
    if args.duration is not None and args.duration <= 0:
        print("ratiowatch source: --duration must be > 0", file=sys.stderr)
        return 2
    config = load_config(args.config, require_channels=False)  # a source never notifies
    opts = source_options_from_args(args, config)
    http = http_settings(args.http)  # a non-loopback address without a token: ConfigError, exit 2
    return asyncio.run(_main(args, opts, config, url.removeprefix("kafka://"), http))


async def _main(args: argparse.Namespace, opts: Any, config: Any, bootstrap: str, http: tuple) -> int:
    from ratiowatch.ops import Health, Metrics, OpsServer
    from ratiowatch.roles.source import run_sources
    from ratiowatch.streams.clients import aio_producer
    from ratiowatch.streams.sources.base import FeedFatalError
    from ratiowatch.streams.sources.sinks import KafkaTickSink, MeteredSink

    metrics, health = Metrics(), Health()
    metrics.add_role("source")
    metrics.watch_health(health)
    connected = health.ready_flag("broker", f"not connected to {bootstrap} yet")
    address, token = http
    server = await OpsServer(metrics, health, token=token).start(address) if address else None
    if server is not None:
        print(f"ratiowatch source: http://{address.host}:{server.port}/metrics /healthz /readyz", flush=True)
    producer = aio_producer(bootstrap, client_id="ratiowatch-source", request_timeout_ms=10_000)
    try:
        try:
            await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_S)
        except Exception as e:  # KafkaConnectionError, TimeoutError: either way the broker is not there
            print(f"ratiowatch source: cannot reach the broker at {bootstrap} within {CONNECT_TIMEOUT_S:g}s "
                  f"({type(e).__name__}: {e})", file=sys.stderr)
            await producer.stop()
            return 1
        sim_at: dict[str, Any] = {}
        if opts.sim:  # never in the past of the state it joins: after the newest tick on `ticks`
            from ratiowatch.roles.sim_start import SimStartRefused, plan_sim_start

            try:
                plan = await plan_sim_start(config, bootstrap=bootstrap, history_dir=args.history,
                                            timeout_s=CONNECT_TIMEOUT_S)
            except SimStartRefused as e:
                print(f"ratiowatch source: the simulated market does not start: {e}. It must not start in the past "
                      f"of the state on the broker; fix that, or run with --no-sim", file=sys.stderr)
                await producer.stop()
                return 1
            print(f"ratiowatch source: {plan.describe()}", flush=True)
            sim_at = {"start": plan.start, "levels": plan.levels}
        connected.ready()
        sink = KafkaTickSink(producer)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration:
            loop.call_later(args.duration, stop.set)
        kinds = [f.label for f in opts.feeds] + [f"poll:{s.vendor}:{s.remote}" for s in opts.polls]
        print(f"ratiowatch source: {', '.join(kinds) or ('simulated market' if opts.sim else 'no source')} "
              f"-> ticks at {bootstrap}", flush=True)
        code = 0
        try:
            await run_sources(opts, config, MeteredSink(sink, metrics), stop, history_dir=args.history, **sim_at)
        except FeedFatalError as e:
            print(f"ratiowatch source: {e}", file=sys.stderr)
            code = 1
        except Exception as e:
            print(f"ratiowatch source: a source failed: {type(e).__name__}: {e}", file=sys.stderr)
            code = 1
        finally:
            connected.not_ready("stopping")
            await producer.stop()
        c = sink.counters
        print(f"stopped: {c['ticks']} ticks in {c['batches']} records, {c['dead_lettered']} dead-lettered", flush=True)
        return code
    finally:
        if server is not None:
            await server.close()
