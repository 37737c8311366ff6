"""The peers' side of ``ratiowatch bench --peers``: Bytewax and Quix Streams doing the peers' job
on the bench's stream, each run as a script in a process of its own (``python peer_workers.py
PEER SPEC_FILE``), possibly with another interpreter than the bench's: Quix Streams 3.28.1 pins a
confluent-kafka older than ratiowatch's, so it can only live in an environment of its own.

This file therefore imports nothing of ratiowatch and nothing beyond the standard library and the
peer (and orjson when it is there). It talks to the bench on stdout, one JSON object a line:
``{"ready": {...}}`` once the peer's dataflow is built, ``{"progress": n}`` as ticks are
processed (the bench's feed paces itself on it), then ``{"result": {...}}`` or ``{"error": "..."}``.

The job, as in the peers' harness (docs/performance.md): one tick per Kafka record keyed by
symbol, JSON-decoded; the latest price per symbol kept in the peer's state; on every tick, the
ratio with the partner leg of its pair (``spec["partner"]``).

- **Bytewax** (0.21.1, Rust core): ``KafkaSource`` -> decode -> ``stateful_map`` keyed by the
  tick's pair (the symbols linked by ``partner`` share one state, so the ratio per tick reads the
  partner from the state).
- **Quix Streams** (3.28.1): ``Application`` -> ``sdf.apply(stateful=True)`` keyed by the
  record's key (the symbol: Quix's state is per message key and a key cannot read another's, so
  the partner's latest price is read from the process's own map of latest prices; regrouping by
  pair would need a repartition topic, which the embedded broker cannot create). Its state is
  RocksDB without a changelog topic, for the same reason, and its topic's settings come from the
  metadata (the embedded broker does not answer DescribeConfigs).

The clock starts at the first tick processed (the bench puts what fits on the broker before the
peer starts, as for the bare consumer) and stops at the expected count.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from typing import Any

try:
    import orjson

    loads, dumps = orjson.loads, lambda o: orjson.dumps(o).decode()
except ImportError:  # a peer's own environment may lack it
    import json

    loads, dumps = json.loads, json.dumps

__all__ = ["main"]

PROGRESS_EVERY = 2_000  # ticks between progress lines


def _say(**what: Any) -> None:
    sys.stdout.write(dumps(what) + "\n")
    sys.stdout.flush()


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


class _Count:
    """Ticks processed, the progress lines and the clock; ends the process at the expected count
    (neither peer has a way to stop a tailing Kafka source from inside its dataflow)."""

    def __init__(self, expected: int, peer: str, version: str) -> None:
        self.expected, self.peer, self.version = expected, peer, version
        self.n = self.ratios = 0
        self.t0 = self.cpu0 = 0.0

    def tick(self, ratio: float | None) -> None:
        if self.n == 0:
            self.t0, self.cpu0 = time.perf_counter(), _cpu_s()
        self.n += 1
        if ratio is not None:
            self.ratios += 1
        if self.n % PROGRESS_EVERY == 0:
            _say(progress=self.n)
        if self.n >= self.expected:
            seconds = time.perf_counter() - self.t0
            _say(progress=self.n)
            _say(result={"ticks": self.n, "seconds": seconds, "cpu_s": round(_cpu_s() - self.cpu0, 2),
                         "ratios": self.ratios, "peak_rss_mb": round(_rss_mb(), 1), "peer": self.peer,
                         "version": self.version})
            os._exit(0)


def _groups(partner: dict[str, str]) -> dict[str, str]:
    """symbol -> the key of the symbols linked to it by ``partner`` (a symbol in several ratios
    links them), so that a tick's state holds its partner's price."""
    root: dict[str, str] = {}

    def find(s: str) -> str:
        while root.setdefault(s, s) != s:
            s = root[s]
        return s

    for a, b in partner.items():
        ra, rb = find(a), find(b)
        if ra != rb:
            root[max(ra, rb)] = min(ra, rb)
    return {s: find(s) for s in root}


def bytewax(spec: dict[str, Any]) -> None:
    from importlib.metadata import version

    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.testing import run_main

    partner: dict[str, str] = spec["partner"]
    count = _Count(spec["ticks"], "bytewax", version("bytewax"))

    group = _groups(partner)

    def decode(msg: Any) -> tuple[str, dict[str, Any]]:
        tick = loads(msg.value)
        return group.get(tick["symbol"], tick["symbol"]), tick

    def latest(state: dict[str, float] | None, tick: dict[str, Any]) -> tuple[dict[str, float], float | None]:
        state = state if state is not None else {}
        symbol, price = tick["symbol"], tick["price"]
        state[symbol] = price
        q = state.get(partner.get(symbol, ""))
        return state, (price / q if q else None)

    flow = Dataflow("ratiowatch-bench-peer")
    source = KafkaSource([spec["bootstrap"]], [spec["topic"]], tail=True,
                         add_config={"group.id": "bench-bytewax", "enable.auto.commit": "false"})
    ticks = op.map("decode", op.input("ticks", flow, source), decode)
    ratios = op.stateful_map("latest", ticks, latest)
    op.inspect("count", ratios, lambda _step, kv: count.tick(kv[1]))
    _say(ready={"peer": "bytewax", "version": count.version})
    run_main(flow)


def quix(spec: dict[str, Any]) -> None:
    from importlib.metadata import version

    from quixstreams import Application

    partner: dict[str, str] = spec["partner"]
    count = _Count(spec["ticks"], "quixstreams", version("quixstreams"))
    prices: dict[str, float] = {}

    app = Application(broker_address=spec["bootstrap"], consumer_group="bench-quix", auto_offset_reset="earliest",
                      state_dir=tempfile.mkdtemp(prefix="rw-bench-quix-"), auto_create_topics=False,
                      use_changelog_topics=False, loglevel="ERROR")
    _describe_from_metadata(app)
    topic = app.topic(spec["topic"], key_deserializer="str", value_deserializer="json")
    sdf = app.dataframe(topic)

    def latest(tick: dict[str, Any], state: Any) -> None:
        symbol, price = tick["symbol"], tick["price"]
        state.set("price", price)
        prices[symbol] = price
        q = prices.get(partner.get(symbol, ""))
        count.tick(price / q if q else None)

    sdf.update(latest, stateful=True)
    _say(ready={"peer": "quixstreams", "version": count.version})
    app.run()


def _describe_from_metadata(app: Any) -> None:
    """Quix reads a topic's settings with DescribeConfigs, which the embedded broker (librdkafka's
    mock cluster) does not answer: its partitions and replicas are taken from the metadata, which
    is all a topic that exists needs here (no topic is created)."""
    from quixstreams.models.topics import TopicConfig

    admin = app._topic_manager._admin

    def inspect_topics(topic_names: list[str], timeout: float = 30) -> dict[str, Any]:
        cluster = admin.list_topics(timeout=timeout)
        return {t: TopicConfig(num_partitions=len(cluster[t].partitions),
                               replication_factor=len(cluster[t].partitions[0].replicas),
                               extra_config={"retention.ms": "-1", "retention.bytes": "-1"})
                if t in cluster else None for t in topic_names}

    admin.inspect_topics = inspect_topics


PEERS = {"bytewax": bytewax, "quixstreams": quix}


def main(argv: list[str]) -> int:
    peer, spec_file = argv
    with open(spec_file, "rb") as f:
        spec = loads(f.read())
    try:
        PEERS[peer](spec)
    except BaseException as e:  # the bench must hear about it rather than wait
        _say(error=f"{type(e).__name__}: {e}")
        return 1
    _say(error=f"{peer} stopped after {spec['ticks']} ticks were expected")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
