"""Reading and writing the control topics (``scenarios``, ``silences``) from a command: a whole
read to the end offsets, and acknowledged writes. The running roles follow the same topics live
(streams/follow.py)."""

from __future__ import annotations

import sys

from ratiowatch.config import parse_scenario_record
from ratiowatch.errors import ConfigError
from ratiowatch.model import Scenario
from ratiowatch.notifiers.silences import SilenceError, SilenceSet
from ratiowatch.streams.kafka_settings import KafkaSecurity
from ratiowatch.streams.readback import read_topic
from ratiowatch.streams.topics import SCENARIOS, SILENCES
from ratiowatch.streams.writeback import write_records

__all__ = ["read_scenarios", "read_silences", "write_silence"]


def read_scenarios(bootstrap: str, *, sec: KafkaSecurity | None = None) -> dict[str, Scenario]:
    """The scenarios in force, in topic order (bad records skipped, with a warning on stderr)."""
    out: dict[str, Scenario] = {}
    for key, value, partition, offset in read_topic(bootstrap, SCENARIOS, sec=sec):
        try:
            sc = parse_scenario_record(key, value, SCENARIOS)
        except ConfigError as e:
            print(f"{SCENARIOS}[{partition}]@{offset}: skipped: {e}", file=sys.stderr)
            continue
        if sc is None:
            out.pop(key.decode(), None)
        else:
            out[sc.id] = sc
    return out


def read_silences(bootstrap: str, *, sec: KafkaSecurity | None = None) -> SilenceSet:
    """Every silence on the topic (bad records skipped, with a warning on stderr)."""
    out = SilenceSet()
    for key, value, partition, offset in read_topic(bootstrap, SILENCES, sec=sec):
        try:
            out.apply(key, value)
        except SilenceError as e:
            print(f"{SILENCES}[{partition}]@{offset}: skipped: {e}", file=sys.stderr)
    return out


def write_silence(bootstrap: str, key: bytes, value: bytes, *, sec: KafkaSecurity | None = None) -> None:
    """Write one record and wait for the cluster to acknowledge it (acks=all)."""
    write_records(bootstrap, SILENCES, [(key, value)], client_id="ratiowatch-silence", sec=sec)
