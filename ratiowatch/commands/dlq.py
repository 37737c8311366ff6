"""``ratiowatch dlq retry``: send the notifications on ``notifications.dlq`` again.

Reads every record on the topic (from the beginning to its current end, no consumer group), and
hands each to a notification service that sends it to its channel once more, with the usual
retries. A pair (event, channel) already delivered (by an earlier ``dlq retry``, or because the
record is a duplicate) is skipped, so running this twice is safe. Records that fail again stay
on the topic for the next run; attempts and outcomes go to ``deliveries`` as usual.

The delivery record is, by default, the one the notify role keeps for the same --broker
(RATIOWATCH_DATADIR/ratiowatch-notify/notifications-CLUSTER/notifications.sqlite, as
`ratiowatch notify` and `ratiowatch run` write it), so pairs the notify role delivered meanwhile
are not sent twice. Run it where that file is (the notify role's machine or volume), or name
another with --store.

Its Kafka clients (the read-back consumer, and the producer for deliveries and
notifications.dlq) come from ratiowatch's client factory (streams/clients.py), with the
cluster's TLS/SASL settings from the RATIOWATCH_KAFKA_* variables, like every ratiowatch process.

Exit code: 0 when nothing is left undelivered, 1 when some record still failed, 2 on bad input
(including bad Kafka security settings).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
from collections import Counter
from pathlib import Path

from ratiowatch.config import load_config
from ratiowatch.model import Config
from ratiowatch.notifiers.chart import HistoryFor, history_from_folder
from ratiowatch.notifiers.exceptions import NotifyError
from ratiowatch.notifiers.records import parse_dlq_record
from ratiowatch.notifiers.retry import RetryPolicy
from ratiowatch.notifiers.service import NotificationService
from ratiowatch.streams.clients import aio_producer
from ratiowatch.streams.kafka_settings import KafkaSecurity, load_kafka_security
from ratiowatch.streams.readback import read_topic
from ratiowatch.streams.topics import NOTIFICATIONS_DLQ

from ._common import add_config, add_history, broker_url, for_users

__all__ = ["NAME", "HELP", "add_arguments", "run", "retry_dlq", "notify_store_path"]

NAME = "dlq"
HELP = "work with notifications.dlq (retry: send its notifications again)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = sub.add_parser("retry", help="send every notification on notifications.dlq again", description=for_users(__doc__),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    # Not _common.add_broker: that one promises an embedded broker by default, and the DLQ lives on
    # the cluster the notify role wrote it to.
    r.add_argument("--broker", metavar="URL", default=os.environ.get("RATIOWATCH_BROKER"),
                   help="kafka://host:port[,host:port] of the cluster holding notifications.dlq "
                        "(env RATIOWATCH_BROKER); required")
    add_config(r)
    add_history(r)  # to draw the email chart again; without it emails go without one
    r.add_argument("--store", metavar="FILE", default=None,
                   help="the delivery record (SQLite) shared with the notify role (default: the notify role's "
                        "for this --broker, under RATIOWATCH_DATADIR, default ./ratiowatch-data)")
    r.add_argument("--attempts", type=int, default=5, help="tries per notification (default 5)")
    r.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="give up waiting for the channels after this many seconds (default 600)")


def run(args: argparse.Namespace, *, policy: RetryPolicy | None = None) -> int:
    url = broker_url(args.broker)
    if url is None:
        print("ratiowatch dlq retry: --broker kafka://HOST:PORT is required (the DLQ lives on that cluster)",
              file=sys.stderr)
        return 2
    if args.attempts < 1:
        print("ratiowatch dlq retry: --attempts must be >= 1", file=sys.stderr)
        return 2
    config = load_config(args.config)
    sec = load_kafka_security()  # bad settings: ConfigError naming the variable, exit 2
    bootstrap = url[len("kafka://"):]
    policy = policy or RetryPolicy(attempts=args.attempts)
    history_for = history_from_folder(args.history, config.settings.session_timezone) if args.history else None
    store = args.store or str(notify_store_path(bootstrap))
    counts = asyncio.run(retry_dlq(config, bootstrap, store_path=store, policy=policy, timeout_s=args.timeout,
                                   history_for=history_for, sec=sec))
    print(f"notifications.dlq: {counts['records']} records; delivered {counts['delivered']}, "
          f"already delivered {counts['skipped_duplicate']}, failed {counts['failed']}, "
          f"unreadable {counts['unreadable']}")
    return 0 if counts["failed"] == 0 and counts["unreadable"] == 0 else 1


def notify_store_path(bootstrap: str, datadir: str | os.PathLike[str] | None = None) -> Path:
    """The delivery record the notify role keeps for the cluster at ``bootstrap`` (what
    ``NotifyRole`` writes under its faust data dir: one folder per cluster, see roles/notify.py)."""
    from ratiowatch.roles.notify import NOTIFY_APP_ID

    base = Path(datadir if datadir is not None else os.environ.get("RATIOWATCH_DATADIR", "ratiowatch-data"))
    cluster = hashlib.sha256(bootstrap.encode()).hexdigest()[:12]
    return base / NOTIFY_APP_ID / f"notifications-{cluster}" / "notifications.sqlite"


async def retry_dlq(config: Config, bootstrap: str, *, store_path: str | None = None,
                    policy: RetryPolicy | None = None, timeout_s: float = 600.0,
                    history_for: HistoryFor | None = None, sec: KafkaSecurity | None = None) -> Counter:
    """Send every record of notifications.dlq again; a Counter of outcomes (records, delivered,
    skipped_duplicate, failed, unreadable). ``sec``: the cluster's security settings (default:
    those of the environment)."""
    records = await asyncio.to_thread(lambda: list(read_topic(bootstrap, NOTIFICATIONS_DLQ, sec=sec)))
    producer = aio_producer(bootstrap, client_id="ratiowatch-dlq-retry", sec=sec, request_timeout_ms=30_000)

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        await producer.send_and_wait(topic, value, key=key)

    counts: Counter = Counter(records=len(records), delivered=0, skipped_duplicate=0, failed=0, unreadable=0)
    try:
        await producer.start()
        svc = NotificationService(config, publish, store_path=store_path, retry=policy, history_for=history_for)
        await svc.start()
        try:
            futures = []
            for _key, value, partition, offset in records:
                try:
                    futures.append(await svc.redeliver(parse_dlq_record(value)))
                except (ValueError, NotifyError) as e:
                    counts["unreadable"] += 1
                    print(f"notifications.dlq[{partition}]@{offset}: skipped: {e}", file=sys.stderr)
            if not await svc.drain(timeout_s):
                print(f"ratiowatch dlq retry: channels still busy after {timeout_s:g}s", file=sys.stderr)
            for f in futures:
                counts[f.result() if f.done() else "failed"] += 1
        finally:
            await svc.stop()
    finally:
        await producer.stop()
    return counts
