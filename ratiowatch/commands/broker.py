"""``ratiowatch broker``: an embedded broker in the foreground, for several processes to share."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.topics import APP_ID

NAME = "broker"
HELP = "run an embedded Kafka-protocol broker in the foreground and print its address"
DESCRIPTION = (
    "Starts librdkafka's mock cluster on 127.0.0.1 with every ratiowatch topic created, prints "
    "its bootstrap address, and keeps it alive until Ctrl-C or SIGTERM. Its data lives only as long "
    "as this process, and it keeps at most 5 MB or 100,000 message sets per partition."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--brokers", type=int, default=1, help="number of mock brokers (default 1)")
    p.add_argument("--partitions", type=int, default=8, help="partitions of the engine topics (default 8)")
    p.add_argument("--app-id", default=APP_ID, help="app id whose changelog topics to create")
    p.add_argument("--topic", action="append", default=[], metavar="NAME[:PARTITIONS]",
                   help="an extra topic to create (repeatable)")


def run(args: argparse.Namespace) -> int:
    if args.brokers < 1 or args.partitions < 1:
        print("ratiowatch broker: --brokers and --partitions must be >= 1", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedBroker(args.brokers) as broker:
        ensure_topics(broker, args.partitions, args.app_id)
        for t in args.topic:
            name, _, parts = t.partition(":")
            broker.create_topic(name, int(parts or 1))
        print(f"bootstrap: {broker.bootstrap}", flush=True)
        print(f"broker url: kafka://{broker.bootstrap}   (use: ratiowatch run --broker kafka://{broker.bootstrap})",
              flush=True)
        print("topics: " + ", ".join(f"{k}({v})" for k, v in sorted(broker.topics.items())), flush=True)
        print("Ctrl-C stops it; its data goes with it.", flush=True)
        stop.wait()
    return 0
