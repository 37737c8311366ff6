#!/usr/bin/env python
"""An example downstream service: reads ratiowatch's ``events`` topic and handles each event once.

What every consumer of the events topic has to get right, in one small file:

1. Join a consumer group: copies of the service share the partitions, and a restarted copy
   resumes where the group left off.
2. Validate each record against the published schema (ratiowatch/schemas/event.v1.json). An
   invalid record is reported, skipped and committed: retrying it would block its partition forever.
   Unknown fields are fine (fields may be added within schema_version 1); another schema_version
   fails validation, because a new version runs on its own topic (``events.v2``).
3. Deduplicate by ``event_id``. Delivery is at least once: a worker restarted mid-batch emits
   some events again, and this service re-reads what it handled but had not yet committed. The
   id is a digest of what the event is, so a repeat carries the same id.
4. Commit offsets only after the records before them have been handled: a crash re-reads
   (and step 3 absorbs the repeat) instead of losing an event.

Run it (ratiowatch must be installed: it provides the schema, and the consumer is built with
ratiowatch's own client settings, ``ratiowatch.streams.clients.kafka_python_kwargs_for``: the
cluster's TLS/SASL settings from the RATIOWATCH_KAFKA_* variables, see docs/deployment.md, and the
protocol version pin. A service that cannot install ratiowatch maps the same variables onto
kafka-python's ``security_protocol``, ``sasl_*`` and ``ssl_*`` options itself):

    python examples/events_consumer.py --bootstrap 127.0.0.1:19092 [--group G] [--max-messages N] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter, OrderedDict
from typing import Any, Callable

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata

from ratiowatch.agents.events import load_schema
from ratiowatch.streams.clients import kafka_python_kwargs_for

__all__ = ["main", "consume", "check_event", "SeenIds"]

log = logging.getLogger("events_consumer")

TOPIC = "events"


class SeenIds:
    """The most recent ``limit`` event ids. A real service records the id in the same transaction
    as its side effect (e.g. a unique key in its database); memory is enough for an example, and
    the bound keeps a long run from growing without end."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """True the first time ``event_id`` is seen."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        return True


def check_event(raw: bytes | None, validator: Draft202012Validator) -> tuple[dict[str, Any] | None, str | None]:
    """(event, None) for a valid record, (None, reason) for an invalid one."""
    if raw is None:
        return None, "empty record (no value)"
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"not JSON: {e}"
    error = best_match(validator.iter_errors(event))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        return None, f"does not match schema_version 1 at {where}: {error.message}"
    return event, None


def describe(event: dict[str, Any]) -> str:
    return (f"handled {event['event_id']} {event['at']} {event['scenario']} {event['rule']} {event['kind']} "
            f"{event['series']} value={event['value']:.6g} threshold={event['threshold']:.6g}")


def consume(bootstrap: str, *, group: str, topic: str = TOPIC, max_messages: int | None = None,
            timeout: float | None = None, session_timeout_ms: int = 10_000,
            handle: Callable[[dict[str, Any]], None] | None = None) -> Counter:
    """Read ``topic`` in consumer group ``group`` until ``max_messages`` records were read, or
    ``timeout`` seconds passed without a new record (None: until interrupted). Returns counts."""
    handle = handle or (lambda ev: print(describe(ev), flush=True))
    validator = Draft202012Validator(load_schema())
    seen = SeenIds()
    counts: Counter = Counter()
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, client_id=f"{group}-example",
        enable_auto_commit=False,        # step 4: we commit, after handling
        auto_offset_reset="earliest",    # a new group starts from the oldest retained event
        session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=max(100, session_timeout_ms // 3),
        **kafka_python_kwargs_for(),      # TLS/SASL from RATIOWATCH_KAFKA_*, the version pin
    )
    assigned: set = set()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while max_messages is None or counts["read"] < max_messages:
            if deadline is not None and time.monotonic() >= deadline:
                break
            left = None if max_messages is None else max_messages - counts["read"]
            batch = consumer.poll(timeout_ms=200, max_records=left)
            if consumer.assignment() - assigned:
                assigned |= consumer.assignment()
                if timeout is not None:  # joining the group is not idleness
                    deadline = time.monotonic() + timeout
            commit: dict[Any, OffsetAndMetadata] = {}
            for tp, records in batch.items():
                for rec in records:
                    counts["read"] += 1
                    event, reason = check_event(rec.value, validator)
                    if event is None:
                        counts["invalid"] += 1
                        log.warning("invalid record %s[%d]@%d skipped and committed (retrying cannot fix "
                                    "it): %s", tp.topic, tp.partition, rec.offset, reason)
                        print(f"invalid {tp.topic}[{tp.partition}]@{rec.offset}: {reason}", flush=True)
                    elif not seen.add(event["event_id"]):
                        counts["duplicate"] += 1
                        log.info("duplicate %s at %s[%d]@%d skipped", event["event_id"], tp.topic,
                                 tp.partition, rec.offset)
                    else:
                        handle(event)  # if this raises, nothing of this batch is committed
                        counts["handled"] += 1
                    commit[tp] = OffsetAndMetadata(rec.offset + 1, "", -1)
            if commit:
                consumer.commit(commit)
                if timeout is not None:
                    deadline = time.monotonic() + timeout
    finally:
        consumer.close()
    counts["partitions"] = len(assigned)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bootstrap", required=True, metavar="HOST:PORT[,HOST:PORT]", help="Kafka bootstrap servers")
    p.add_argument("--group", default="events-consumer-example", help="consumer group id")
    p.add_argument("--topic", default=TOPIC)
    p.add_argument("--max-messages", type=int, default=None, metavar="N", help="stop after reading N records")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="stop after S seconds without a new record (default: run until Ctrl-C)")
    p.add_argument("--session-timeout-ms", type=int, default=10_000, metavar="MS",
                   help="how long the group waits for a silent member before moving its partitions (default 10000)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO level narrates every group join
    try:
        counts = consume(args.bootstrap.removeprefix("kafka://"), group=args.group, topic=args.topic,
                         max_messages=args.max_messages, timeout=args.timeout,
                         session_timeout_ms=args.session_timeout_ms)
    except KeyboardInterrupt:
        return 130
    print(f"summary: read={counts['read']} handled={counts['handled']} duplicate={counts['duplicate']} "
          f"invalid={counts['invalid']} partitions={counts['partitions']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
