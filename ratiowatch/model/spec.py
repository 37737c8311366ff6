"""A scenario's written form: the mapping a scenario file holds (and ``scenarios export`` writes),
its version digests, and the record it is on the ``scenarios`` topic. Pure.

The written form is canonical (defaults filled, one spelling per rule), so a scenario read back
from ``export`` has the version it was exported with. Two digests, of that form:

- ``version``: everything. Events carry it; ``scenarios apply`` compares by it.
- ``rules_version``: only what the engine's state depends on (trigger, confirmations, require,
  windows). A change of title, description or routing keeps a running scenario's state; a change
  here starts its state again.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import orjson

from .scenario import Rule, Scenario

__all__ = ["spec", "rule_spec", "with_version", "version_of", "rules_version", "encode_record", "RECORD_SCHEMA"]

RECORD_SCHEMA = 1
_RULES_KEYS = ("trigger", "confirmations", "require", "windows")


def rule_spec(r: Rule, label: str | None = None) -> dict[str, Any]:
    """A rule as a file writes it (with its ``label`` for a confirmation)."""
    out: dict[str, Any] = {"label": label} if label is not None else {}
    out["series"] = r.series.name
    if r.transform == "streak":
        out["streak"] = True
    elif r.transform != "value":
        out[r.transform] = r.sessions
    out["above" if r.direction == "up" else "below"] = r.threshold
    out["rearm"] = r.rearm
    return out


def spec(sc: Scenario) -> dict[str, Any]:
    """The scenario as a file would write it, with every default spelled out."""
    out: dict[str, Any] = {
        "id": sc.id,
        "title": sc.title,
        # Left out when empty, as a file leaves it out: the file's rules refuse an empty string,
        # and a record must read back under them.
        **({"description": sc.description} if sc.description else {}),
        "trigger": rule_spec(sc.trigger),
        "confirmations": [rule_spec(c, c.name) for c in sc.confirmations],
        "windows": list(sc.windows),
        "notify": list(sc.notify),
        "notify_resolved": sc.notify_resolved,
        "group_window_s": sc.group_window_s,
    }
    if sc.require is not None:
        out["require"] = sc.require
    return out


def _digest(d: dict[str, Any]) -> str:
    # Sorted keys, and floats as orjson prints them (shortest round-trip form): the same scenario
    # gives the same digest on every machine and Python version.
    return hashlib.sha256(orjson.dumps(d, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def version_of(sc: Scenario) -> str:
    return _digest(spec(sc))


def rules_version(sc: Scenario) -> str:
    s = spec(sc)
    return _digest({k: s.get(k) for k in _RULES_KEYS})


def with_version(sc: Scenario) -> Scenario:
    return replace(sc, version=version_of(sc))


def encode_record(sc: Scenario) -> tuple[bytes, bytes]:
    """(key, value) of the scenario's record on the ``scenarios`` topic."""
    value = {"schema": RECORD_SCHEMA, "version": sc.version or version_of(sc), "scenario": spec(sc)}
    return sc.id.encode(), orjson.dumps(value)
