"""``ratiowatch topics``: the Kafka topics ratiowatch uses, with partitions, compaction and retention;
``--create`` makes them on a real cluster.

The list comes from :func:`ratiowatch.streams.topics.all_topics`. On a real cluster the topics are
created one by one (an existing topic is reported, never altered) through kafka-python's admin
client, with the settings of :func:`ratiowatch.streams.clients.kafka_python_kwargs_for` (the
cluster's TLS/SASL settings from the ``RATIOWATCH_KAFKA_*`` variables, and the version pin). The embedded
broker refuses CreateTopics: it creates its topics itself when ``ratiowatch broker`` or
``ratiowatch run`` starts, and this command says so and shows which of them it has.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from ratiowatch.config import load_config
from ratiowatch.streams.clients import kafka_python_kwargs_for
from ratiowatch.streams.kafka_settings import load_kafka_security
from ratiowatch.streams.topic_admin import (EmbeddedBrokerRefuses, create_topics, existing_partitions,
                                            partition_problems, parts)
from ratiowatch.streams.topics import APP_ID, TopicSpec, all_topics, topic_configs

from ._common import add_config, broker_url

__all__ = ["NAME", "HELP", "add_arguments", "run", "topic_configs", "describe", "EMBEDDED_MESSAGE"]

NAME = "topics"
HELP = "list the Kafka topics (partitions, compaction, retention); --create makes them on a real cluster"

EMBEDDED_MESSAGE = ("{where} does not accept CreateTopics: it is ratiowatch's embedded broker, and the embedded "
                    "broker creates topics itself (`ratiowatch broker` and `ratiowatch run` create every topic "
                    "listed here when they start). Nothing to create; what it has:")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config(p)
    # Not _common.add_broker: that one promises an embedded broker by default; this command starts
    # none, and the listing needs no broker at all.
    p.add_argument("--broker", metavar="URL", default=os.environ.get("RATIOWATCH_BROKER"),
                   help="kafka://host:port[,host:port] of the cluster for --create (env RATIOWATCH_BROKER); "
                        "required with --create, not used by the listing")
    p.add_argument("--create", action="store_true",
                   help="create the missing topics on the cluster given by --broker (needs a real cluster)")
    p.add_argument("--partitions", type=int, default=None, metavar="N",
                   help="engine partitions (default: settings.partitions of the config)")
    p.add_argument("--replication-factor", type=int, default=1, metavar="N",
                   help="replicas per partition for --create (default 1; 3 on a cluster that must survive "
                        "the loss of a broker, which also sets min.insync.replicas=2)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="with --create: keep retrying this long while the cluster starts (no broker answers "
                        "yet, or too few brokers for the replication factor); for compose's init job")
    p.add_argument("--app-id", default=APP_ID,
                   help=f"faust app id: it names the changelog topics (default {APP_ID})")
    p.add_argument("--json", action="store_true", help="the list as JSON")


def _human_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    for unit, size in (("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def describe(specs: list[TopicSpec], replication_factor: int) -> list[dict[str, Any]]:
    """One plain dict per topic: what ``--json`` prints."""
    return [{"name": s.name, "partitions": s.partitions, "replication_factor": replication_factor,
             "cleanup_policy": "compact" if s.compacted else "delete", "retention_ms": s.retention_ms,
             "configs": topic_configs(s, replication_factor), "doc": s.doc} for s in specs]


def _print_table(rows: list[dict[str, Any]]) -> None:
    width = max(len(r["name"]) for r in rows) + 2
    print(f"{'TOPIC':<{width}}{'PARTITIONS':>10}  {'CLEANUP':<8} {'RETENTION':<12} PURPOSE")
    for r in rows:
        retention = "(compacted)" if r["cleanup_policy"] == "compact" else _human_ms(r["retention_ms"])
        print(f"{r['name']:<{width}}{r['partitions']:>10}  {r['cleanup_policy']:<8} {retention:<12} {r['doc']}")


def run(args: argparse.Namespace) -> int:
    url = broker_url(args.broker)
    for flag, value in (("--partitions", args.partitions), ("--replication-factor", args.replication_factor)):
        if value is not None and value < 1:
            print(f"ratiowatch topics: {flag} must be >= 1, got {value}", file=sys.stderr)
            return 2
    partitions = args.partitions or load_config(args.config, require_channels=False).settings.partitions
    specs = all_topics(partitions, args.app_id)
    if not args.create:
        rows = describe(specs, args.replication_factor)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            _print_table(rows)
        return 0
    if url is None:
        print("ratiowatch topics: --create needs --broker kafka://host:port of a real cluster (or env "
              "RATIOWATCH_BROKER); the embedded broker creates topics itself", file=sys.stderr)
        return 2
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    if getattr(args, "verbose", 0) == 0:
        # kafka-python logs every failed probe at ERROR; this command reports the outcome itself.
        kafka_log.setLevel(logging.CRITICAL)
    try:
        return _create(url.removeprefix("kafka://"), specs, args.replication_factor, max(0.0, args.wait))
    finally:
        kafka_log.setLevel(level)


def _create(bootstrap: str, specs: list[TopicSpec], rf: int, wait_s: float) -> int:
    from kafka.errors import NoBrokersAvailable

    client_kw = kafka_python_kwargs_for(load_kafka_security())
    try:
        outcome = create_topics(bootstrap, specs, rf, client_kw, wait_s=wait_s)
    except NoBrokersAvailable:
        print(f"ratiowatch topics: no broker answered at {bootstrap}", file=sys.stderr)
        return 1
    except EmbeddedBrokerRefuses:
        return _report_embedded(bootstrap, specs, client_kw)
    problems = partition_problems(specs, existing_partitions(bootstrap, client_kw))
    ok = True
    for s in specs:
        note = outcome[s.name]
        if not note.startswith("FAILED") and s.name in problems:
            note += f", but it {problems[s.name]} (see docs/deployment.md, \"Adding partitions\")"
            ok = False
        ok = ok and not note.startswith("FAILED")
        print(f"{s.name}: {note}")
    return 0 if ok else 1


def _report_embedded(bootstrap: str, specs: list[TopicSpec], client_kw: dict[str, Any]) -> int:
    print(EMBEDDED_MESSAGE.format(where=f"the broker at {bootstrap}"))
    problems = partition_problems(specs, existing_partitions(bootstrap, client_kw))
    for s in specs:
        print(f"  {s.name}: {problems.get(s.name, f'present, {parts(s.partitions)}')}")
    if problems:
        print(f"ratiowatch topics: the embedded broker lacks {len(problems)} of them; start it with "
              f"`ratiowatch broker` (or `ratiowatch run`) using the same partition count", file=sys.stderr)
        return 1
    return 0
