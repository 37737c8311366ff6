"""What the role commands (engine, notify, web) share: options, the ops HTTP server, signals, a
bounded start, and a clean stop."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any, Awaitable, Callable

from ratiowatch.ops.health import Health
from ratiowatch.ops.http import OpsServer, add_http_argument, http_settings
from ratiowatch.ops.metrics import Metrics

from ._common import add_broker, add_config, broker_url

__all__ = ["add_role_arguments", "role_broker", "serve_role", "role_main"]

START_TIMEOUT_S = 60.0
UNREADY_TIMEOUT_S = 90.0  # well past a rebalance (session timeout 15 s) and a state recovery
WATCH_S = 1.0


def add_role_arguments(p: argparse.ArgumentParser, http_port: int) -> None:
    add_config(p)
    add_broker(p, embedded_default=False)
    p.add_argument("--partitions", type=int, default=None, help="engine partitions (default: settings.partitions)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop cleanly after this many seconds (default: until Ctrl-C or SIGTERM)")
    p.add_argument("--start-timeout", type=float, default=START_TIMEOUT_S, metavar="SECONDS",
                   help=f"give up (exit 1) if the role is not running within this time (default {START_TIMEOUT_S:g})")
    p.add_argument("--unready-timeout", type=float, default=UNREADY_TIMEOUT_S, metavar="SECONDS",
                   help="exit (code 3) once the role has been unready this long without a break, e.g. a group "
                        f"member left without partitions: its restart policy brings it back (default {UNREADY_TIMEOUT_S:g})")
    add_http_argument(p, http_port)


def role_broker(name: str, args: argparse.Namespace) -> str | None:
    """The role's bootstrap ``host:port``; None (after saying why) when the arguments are wrong."""
    url = broker_url(args.broker)
    if url is None:
        print(f"ratiowatch {name}: --broker kafka://HOST:PORT is required (env RATIOWATCH_BROKER): a role joins "
              "a running cluster (`ratiowatch broker` starts an embedded one)", file=sys.stderr)
        return None
    if args.duration is not None and args.duration <= 0:
        print(f"ratiowatch {name}: --duration must be > 0", file=sys.stderr)
        return None
    return url.removeprefix("kafka://")


# (args, config, bootstrap, metrics, health) -> (the role: start() and stop(), the live hub to mount or None)
BuildRole = Callable[[argparse.Namespace, Any, str, Metrics, Health], tuple[Any, Any]]


def role_main(name: str, args: argparse.Namespace, build: BuildRole, *, notifies: bool = False) -> int:
    """A role command from start to exit code: its arguments checked, its config loaded, the role
    built by ``build`` and served (exit 1 when the broker cannot be reached). Only a role that
    ``notifies`` needs the channels' secrets set."""
    from ratiowatch.config import load_config
    from ratiowatch.streams.clients import BrokerUnreachable
    from ratiowatch.streams.history import available_symbols

    bootstrap = role_broker(name, args)
    if bootstrap is None:
        return 2
    history = getattr(args, "history", None)
    config = load_config(args.config, known_symbols=available_symbols(history) if history else None,
                         require_channels=notifies)

    async def main() -> int:
        metrics, health = Metrics(), Health()
        try:
            role, live = build(args, config, bootstrap, metrics, health)
        except BrokerUnreachable as e:
            print(f"ratiowatch {name}: {e}", file=sys.stderr)
            return 1
        return await serve_role(name, args, metrics, health, role.start, role.stop, live=live)

    return asyncio.run(main())


async def serve_role(name: str, args: argparse.Namespace, metrics: Metrics, health: Health,
                     start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]], *,
                     live: Any = None) -> int:
    """Serve /metrics, /healthz, /readyz (and the page, with ``live``), start the role within
    ``--start-timeout``, run until a signal or ``--duration``, stop. Exit code 1 when it could not start."""
    address, token = http_settings(args.http)
    server = await OpsServer(metrics, health, token=token, live=live).start(address) if address else None
    if server is not None:
        print(f"ratiowatch {name}: http://{address.host}:{server.port}/metrics /healthz /readyz", flush=True)
    # The ops server stamps the heartbeat; without one (--http off) the unready watchdog below would
    # otherwise read a stale heartbeat as a stuck loop and stop a healthy role.
    beat = asyncio.create_task(health.heartbeat(), name="heartbeat") if server is None else None
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    code = 0
    try:
        try:
            await asyncio.wait_for(start(), args.start_timeout)
        except (asyncio.TimeoutError, TimeoutError) as e:
            print(f"ratiowatch {name}: could not start within {args.start_timeout:g}s against {args.broker}: "
                  f"{type(e).__name__}: {e or 'timed out'}", file=sys.stderr)
            return 1
        except (OSError, RuntimeError) as e:  # the broker answered, and said no (e.g. no producer ids)
            print(f"ratiowatch {name}: could not start against {args.broker}: {type(e).__name__}: {e}",
                  file=sys.stderr)
            return 1
        print(f"ratiowatch {name}: running" + (f" for {args.duration:g}s" if args.duration else ""), flush=True)
        watchdog = asyncio.create_task(_unready_watchdog(health, args.unready_timeout))
        finished = asyncio.create_task(done.wait())
        await asyncio.wait({watchdog, finished}, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
        if watchdog.done():
            print(f"ratiowatch {name}: not ready for {args.unready_timeout:g}s: {watchdog.result()}; exiting so that "
                  "its restart policy starts it afresh", file=sys.stderr)
            code = 3
        for t in (watchdog, finished):
            t.cancel()
    finally:
        try:
            await asyncio.wait_for(stop(), 30)
        finally:
            if beat is not None:
                beat.cancel()
            if server is not None:
                await server.close()
    return code


async def _unready_watchdog(health: Health, limit_s: float) -> str:
    """Returns (why) once readiness has failed for ``limit_s`` without a break."""
    loop = asyncio.get_running_loop()
    since = None
    while True:
        verdict = health.readiness()
        if verdict.ok:
            since = None
        elif since is None:
            since = loop.time()
        elif loop.time() - since >= limit_s:
            return "; ".join(f"{n}: {r.reason}" for n, r in verdict.checks.items() if not r.ok)
        await asyncio.sleep(WATCH_S)
