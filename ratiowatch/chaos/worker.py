"""The worker process of the chaos run: the real engine and notify roles (ratiowatch/roles/), in a
process of their own so the chaos run can SIGKILL and restart them together.

    python -m ratiowatch.chaos.worker --broker kafka://127.0.0.1:PORT --config FILE --datadir DIR

It prints ``ready`` once it owns its partitions, stops cleanly on SIGTERM, and keeps everything
that must survive a kill where a production worker keeps it: state in the broker's changelog,
delivered (event, channel) pairs in the SQLite dedup record, notices handed to the service and
not yet settled in the notifier's inbox (both under ``--datadir``).

It builds the roles through the same classes as ``ratiowatch engine`` and ``ratiowatch notify``,
with only what a test wants tuned: a short consumer-group session, so a killed member is replaced
in seconds rather than a minute, and a short notification retry policy, so a failing endpoint
exhausts its retries within the run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from ratiowatch import logs

__all__ = ["main", "CHAOS_RETRY", "APP_SETTINGS"]

log = logging.getLogger(__name__)

# faust: a killed member's partitions move after ``broker_session_timeout`` seconds.
APP_SETTINGS: dict[str, Any] = {"broker_session_timeout": 6.0, "broker_heartbeat_interval": 1.0,
                                "broker_rebalance_timeout": 20.0}
# attempts, base delay, max delay, deadline, attempt timeout (s): a few seconds of trying.
CHAOS_RETRY = (4, 0.3, 2.0, 12.0, 2.0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ratiowatch.chaos.worker", description=__doc__.split("\n")[0])
    p.add_argument("--broker", required=True, metavar="URL")
    p.add_argument("--config", required=True, metavar="FILE")
    p.add_argument("--datadir", required=True, metavar="DIR")
    p.add_argument("--partitions", type=int, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logs.install()  # the clients' known-harmless ERROR records at their real level, as the CLI does
    for name in ("mode.timers", "faust.transport.producer"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from ratiowatch.config import load_config

    config = load_config(args.config)
    return asyncio.run(_main(args, config))


async def _main(args: argparse.Namespace, config: Any) -> int:
    from ratiowatch.notifiers import RetryPolicy
    from ratiowatch.roles.engine import EngineRole
    from ratiowatch.roles.notify import NotifyRole
    from ratiowatch.streams.origin import REPLAY

    os.makedirs(args.datadir, exist_ok=True)
    # The production roles, as `ratiowatch run --broker` wires them: only the settings differ.
    rt = EngineRole(config, broker_url=args.broker, partitions=args.partitions, datadir=args.datadir,
                    app_settings=APP_SETTINGS, origin=REPLAY)
    notify = NotifyRole(config, bootstrap=rt.bootstrap, partitions=args.partitions, datadir=args.datadir,
                        app_settings=APP_SETTINGS, retry=RetryPolicy(*CHAOS_RETRY), metrics=rt.metrics,
                        health=rt.health)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await notify.start()
    try:
        await rt.start()  # on failure it stops itself, saying which bound it passed (roles/startup_watch.py)
    except BaseException:
        await notify.stop()  # its consumer thread (not a daemon) would hold the exit back
        raise
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await rt.stop()
        await notify.stop()
    c = rt.pipeline.counters
    print(f"stopped: {c['ticks_in']} ticks in, {c['dead_lettered']} dead-lettered, {c['events']} events", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
