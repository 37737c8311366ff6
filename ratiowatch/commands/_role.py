"""What the role commands (engine, notify, web) share: options, the ops HTTP server, signals, a
bounded start, and a bounded stop.

Exit codes: 0 stopped by a signal or --duration; 1 could not start (broker unreachable or refusing,
no partitions within --start-timeout, state not recovered within --recovery-timeout); 3 stopped
being able to work while running (unready for --unready-timeout, or its group coordination
stopped). Never a hang: a start that fails stops what it started, the stop is bounded, and a
client thread still running after it does not hold the exit back."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from typing import Any, Awaitable, Callable

from ratiowatch.ops.health import Health
from ratiowatch.ops.http import OpsServer, add_http_argument, http_settings
from ratiowatch.ops.metrics import Metrics
from ratiowatch.roles.startup_watch import StartupFailed, watch_coordination

from ._common import add_broker, broker_url

__all__ = ["add_role_arguments", "role_broker", "serve_role", "role_main", "exit_without_stragglers"]

START_TIMEOUT_S = 60.0
RECOVERY_TIMEOUT_S = 120.0
UNREADY_TIMEOUT_S = 90.0  # well past a rebalance (session timeout 15 s) and a state recovery
WATCH_S = 1.0
STOP_TIMEOUT_S = 30.0
STRAGGLERS_S = 5.0  # how long threads still running after the stop get to end by themselves


def add_role_arguments(p: argparse.ArgumentParser, http_port: int) -> None:
    """The options engine, notify and web share. Their scenarios are the cluster's ``scenarios``
    topic, followed live; --config gives only the settings and the channels."""
    p.add_argument("--config", metavar="FILE", default=None,
                   help="settings and channels (default: the shipped configs/scenarios.yaml); the scenarios "
                        "evaluated are the cluster's, on its scenarios topic (`ratiowatch scenarios apply FILE`), "
                        "followed live")
    add_broker(p, embedded_default=False)
    p.add_argument("--partitions", type=int, default=None, help="engine partitions (default: settings.partitions)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop cleanly after this many seconds (default: until Ctrl-C or SIGTERM)")
    p.add_argument("--start-timeout", type=float, default=START_TIMEOUT_S, metavar="SECONDS",
                   help="give up (exit 1) if the role is not running within this time; for engine and notify: "
                        f"if its group has not given it partitions within it (default {START_TIMEOUT_S:g})")
    p.add_argument("--recovery-timeout", type=float, default=RECOVERY_TIMEOUT_S, metavar="SECONDS",
                   help="engine and notify: give up (exit 1) if the state of its partitions is not recovered "
                        f"from the changelog within this time after they were assigned (default {RECOVERY_TIMEOUT_S:g})")
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
        if hasattr(role, "startup"):  # a group member (engine, notify): its own bounds, its own message
            from ratiowatch.roles.startup_watch import StartupBounds

            role.startup = StartupBounds(assign_s=args.start_timeout, recover_s=args.recovery_timeout)
        return await serve_role(name, args, metrics, health, role.start, role.stop, live=live,
                                coordination=getattr(role, "coordination_error", None))

    before = set(threading.enumerate())
    return exit_without_stragglers(name, asyncio.run(main()), before=before)


def exit_without_stragglers(name: str, code: int, grace_s: float = STRAGGLERS_S,
                            before: set[threading.Thread] | None = None) -> int:
    """``code``, once the threads the role started and that still run have ended; past
    ``grace_s``, the process exits at once with ``code`` (os._exit) rather than wait for them. A
    client thread that outlives its stop (faust's consumer thread is not a daemon) would otherwise
    hold the exit back forever, and a role that hangs instead of exiting is never restarted.
    Threads in ``before`` (running before the role started: a caller's own) are not the role's."""
    deadline = threading.Event()
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon
              and t not in (before or ())]
    timer = threading.Timer(grace_s, deadline.set)
    timer.daemon = True
    timer.start()
    for t in others:
        while t.is_alive() and not deadline.is_set():
            t.join(0.1)
    left = [t.name for t in others if t.is_alive()]
    timer.cancel()
    if left:
        print(f"ratiowatch {name}: threads still running {grace_s:g}s after the stop ({', '.join(left)}): "
              f"exiting with code {code} without them", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(code)
    return code


async def serve_role(name: str, args: argparse.Namespace, metrics: Metrics, health: Health,
                     start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]], *,
                     live: Any = None, coordination: Callable[[], str | None] | None = None) -> int:
    """Serve /metrics, /healthz, /readyz (and the page, with ``live``), start the role within
    ``--start-timeout``, run until a signal or ``--duration``, stop. Exit code 1 when it could not
    start, 3 when it stopped being able to work (unready too long; ``coordination()``: why its
    group coordination stopped, checked every second)."""
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
    # A group member bounds its own wait for partitions and state and says which failed
    # (StartupFailed); this outer bound is for the rest (connecting, producer ids).
    start_bound = args.start_timeout + (getattr(args, "recovery_timeout", 0) + 5 if coordination else 0)
    try:
        try:
            await asyncio.wait_for(start(), start_bound)
        except (asyncio.TimeoutError, TimeoutError) as e:
            print(f"ratiowatch {name}: could not start within {start_bound:g}s against {args.broker}: "
                  f"{type(e).__name__}: {e or 'timed out'}", file=sys.stderr)
            return 1
        except StartupFailed as e:  # it says which: no partitions, or no state
            print(f"ratiowatch {name}: {e}", file=sys.stderr)
            return 1
        except (OSError, RuntimeError) as e:  # the broker answered, and said no (e.g. no producer ids)
            print(f"ratiowatch {name}: could not start against {args.broker}: {type(e).__name__}: {e}",
                  file=sys.stderr)
            return 1
        print(f"ratiowatch {name}: running" + (f" for {args.duration:g}s" if args.duration else ""), flush=True)
        watchdog = asyncio.create_task(_unready_watchdog(health, args.unready_timeout))
        finished = asyncio.create_task(done.wait())
        watches = {watchdog, finished}
        group = None
        if coordination is not None:
            group = asyncio.create_task(watch_coordination(coordination, group=name, every_s=WATCH_S))
            watches.add(group)
        await asyncio.wait(watches, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
        if watchdog.done():
            print(f"ratiowatch {name}: not ready for {args.unready_timeout:g}s: {watchdog.result()}; exiting so that "
                  "its restart policy starts it afresh", file=sys.stderr)
            code = 3
        elif group is not None and group.done():
            print(f"ratiowatch {name}: {group.result()}; it cannot work on: exiting so that its restart policy "
                  "starts it afresh", file=sys.stderr)
            code = 3
        for t in watches:
            t.cancel()
    finally:
        try:
            await asyncio.wait_for(stop(), STOP_TIMEOUT_S)
        except (asyncio.TimeoutError, TimeoutError):
            print(f"ratiowatch {name}: did not stop within {STOP_TIMEOUT_S:g}s; exiting anyway", file=sys.stderr)
            code = code or 1
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
