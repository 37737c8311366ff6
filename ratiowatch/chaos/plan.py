"""What the chaos run sends and which faults it injects, decided before it starts. Pure: a seeded
random generator in, plain values out.

How a tick is proven applied without trusting the worker: the chaos config adds *witness*
scenarios. ``CHAOS.CLOCK`` ticks on every date, alternately far below and far above 1, and each
real symbol S gets a scenario whose trigger is the level of ``S/CHAOS.CLOCK`` against 1: the ratio
crosses 1 on every date, so every date gives one event per witness, and that event carries
``S``'s price as of that date (``series_value``, 12 significant digits). The batch backtest over
exactly the ticks sent computes the same events independently, so an event that is on the
``events`` topic and equal to the computed one proves that S's tick of that date was applied, with
that price and that time. A witness's first evaluation only arms its rule (rules.py), so the tick
of that date is proven by the event of the next evaluation, which exists only if the first one
happened. ``CHAOS.CLOCK`` itself is witnessed by a level scenario on it, ``CHAOS.PULSE`` (a random
walk whose scenario notifies the chaos HTTP endpoint) by its own witness.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
import polars as pl

__all__ = ["CLOCK", "PULSE", "UNKNOWN", "HOOK", "PULSE_SCENARIO", "CLOCK_SCENARIO", "witness_id",
           "config_doc", "synthetic_history", "Garbage", "ticks_garbage", "feed_garbage",
           "mixed_item", "late_tick", "FAULT_KINDS", "FAULT_ERRORS", "Fault", "fault_schedule"]

CLOCK = "CHAOS.CLOCK"
PULSE = "CHAOS.PULSE"
UNKNOWN = "CHAOS.NOPE"           # a well-formed symbol no scenario uses
HOOK = "hook"                    # the channel posting to the chaos HTTP endpoint
PULSE_SCENARIO = "chaos-pulse"
CLOCK_SCENARIO = "chaos-clock"


def witness_id(symbol: str) -> str:
    """The witness scenario of ``symbol`` (scenario ids are lowercase)."""
    if symbol == CLOCK:
        return CLOCK_SCENARIO
    return "chaos-witness-" + re.sub(r"[^a-z0-9]+", "-", symbol.lower()).strip("-")


def config_doc(base: dict[str, Any], hook_url: str, partitions: int | None = None) -> dict[str, Any]:
    """The scenario document of the run: the base scenarios (notifying only the chaos endpoint,
    resolved messages included, no grouping), the pulse scenario and one witness per symbol."""
    base = dict(base)
    settings = dict(base.get("settings") or {})
    if partitions is not None:
        settings["partitions"] = partitions
    scenarios = []
    symbols: set[str] = set()
    for s in base["scenarios"]:
        s = dict(s, notify=[HOOK], notify_resolved=True, group_window_s=0)
        scenarios.append(s)
        for r in [s["trigger"], *(s.get("confirmations") or [])]:
            symbols.update(x.strip().upper() for x in re.split(r"[/-]", r["series"]))
    scenarios.append({"id": PULSE_SCENARIO, "title": "Chaos pulse", "trigger":
                      {"series": PULSE, "above": 1.05, "rearm": 1.0}, "windows": [1], "notify": [HOOK],
                      "notify_resolved": True})
    # The level of the clock: below 1 on even dates, above on odd ones.
    scenarios.append({"id": CLOCK_SCENARIO, "title": "Chaos clock", "windows": [],
                      "trigger": {"series": CLOCK, "above": 1.0, "rearm": 1.0}, "notify": []})
    for sym in sorted(symbols | {PULSE}):
        scenarios.append({"id": witness_id(sym), "title": f"Witness of {sym}", "windows": [], "notify": [],
                          "trigger": {"series": f"{sym}/{CLOCK}", "above": 1.0, "rearm": 1.0}})
    return {"settings": settings, "channels": {HOOK: {"url": hook_url, "format": "json"}}, "scenarios": scenarios}


def synthetic_history(dates: list[date], rng: random.Random) -> pl.DataFrame:
    """``symbol, date, close`` rows of the clock and the pulse on every date.

    Clock: 1e-4..2e-4 on even dates and 1e4..2e4 on odd ones, so ``S/CHAOS.CLOCK`` lies far above
    1 (S >= 0.09 in the real history) or far below it (S <= 760), alternately.
    Pulse: a mean-reverting random walk around 1 that crosses its scenario's 1.05 every few weeks.
    """
    clock = [rng.uniform(1e-4, 2e-4) if i % 2 == 0 else rng.uniform(1e4, 2e4) for i in range(len(dates))]
    pulse, x = [], 0.0
    for _ in dates:
        x = 0.93 * x + rng.gauss(0.0, 0.02)
        pulse.append(round(math.exp(x), 6))
    n = len(dates)
    return pl.DataFrame({"symbol": [CLOCK] * n + [PULSE] * n, "date": dates + dates, "close": clock + pulse},
                        schema={"symbol": pl.Utf8, "date": pl.Date, "close": pl.Float64})


@dataclass(frozen=True)
class Garbage:
    """One bad input and what it must become: one ``ticks.dlq`` record per reason."""

    kind: str
    payload: bytes
    reasons: tuple[str, ...]
    marker: str = ""          # a text the dlq record's input contains (feed garbage is matched by it)


def _obj(**kw: Any) -> bytes:
    return orjson.dumps(kw)


def ticks_garbage(rng: random.Random, n: int, ts_ms: int, symbol: str) -> Garbage:
    """A bad record for the ``ticks`` topic (matched to its dlq records by partition and offset).
    ``symbol`` is one the scenarios use; ``ts_ms`` a plausible event time."""
    m = f"chaos#{n}#"  # closed, so chaos#5# is not found inside chaos#50#
    choices: list[tuple[str, bytes, tuple[str, ...]]] = [
        ("not_json", b"\xff\xfe " + m.encode() + b" {not json", ("not_json",)),
        ("not_json_truncated", b'{"symbol": "' + symbol.encode() + b'", "price": 1', ("not_json",)),
        ("not_object", orjson.dumps([n, m]), ("not_object", "not_object")),
        ("empty_batch", b"[]", ("empty_batch",)),
        ("missing_price", _obj(id=m, symbol=symbol, ts_ms=ts_ms), ("missing_field",)),
        ("missing_ts", _obj(id=m, symbol=symbol, price=10.0), ("missing_field",)),
        ("negative_price", _obj(id=m, symbol=symbol, price=-rng.uniform(1, 100), ts_ms=ts_ms), ("bad_price",)),
        ("price_text", _obj(id=m, symbol=symbol, price="12.5", ts_ms=ts_ms), ("bad_price",)),
        ("price_huge", _obj(id=m, symbol=symbol, price=1e15, ts_ms=ts_ms), ("bad_price",)),
        ("ts_text", _obj(id=m, symbol=symbol, price=10.0, ts="yesterday"), ("bad_ts",)),
        ("ts_naive", _obj(id=m, symbol=symbol, price=10.0, ts="2024-01-02T16:00:00"), ("bad_ts",)),
        ("ts_both", _obj(id=m, symbol=symbol, price=10.0, ts=1, ts_ms=ts_ms), ("bad_ts",)),
        ("ts_ms_float", _obj(id=m, symbol=symbol, price=10.0, ts_ms=ts_ms + 0.5), ("bad_ts",)),
        ("ts_future", _obj(id=m, symbol=symbol, price=10.0, ts_ms=5_000_000_000_000), ("bad_ts",)),
        ("symbol_empty", _obj(id=m, symbol="", price=10.0, ts_ms=ts_ms), ("bad_symbol",)),
        ("symbol_number", _obj(id=m, symbol=42, price=10.0, ts_ms=ts_ms), ("bad_symbol",)),
        ("symbol_long", _obj(id=m, symbol="X" * 40, price=10.0, ts_ms=ts_ms), ("bad_symbol",)),
        ("symbol_control", _obj(id=m, symbol="SP\nY", price=10.0, ts_ms=ts_ms), ("bad_symbol",)),
        ("unknown_symbol", _obj(id=m, symbol=UNKNOWN, price=10.0, ts_ms=ts_ms), ("unknown_symbol",)),
        ("big_batch", orjson.dumps([{"id": f"{m}{i}", "symbol": symbol, "price": -1.0, "ts_ms": ts_ms}
                                    for i in range(500)]), ("bad_price",) * 500),
    ]
    kind, payload, reasons = rng.choice(choices)
    return Garbage(kind, payload, reasons, m)


def feed_garbage(rng: random.Random, n: int, ts_ms: int, symbol: str) -> Garbage:
    """A bad websocket message of the plain feed format; every dlq record it gives contains
    ``marker`` in its input."""
    m = f"chaos#{n}#"
    choices: list[tuple[str, bytes, tuple[str, ...]]] = [
        ("feed_not_json", f"{m} <html>502 Bad Gateway</html>".encode(), ("not_json",)),
        ("feed_binary", b"\x00\x9f\xff" + m.encode(), ("not_json",)),
        ("feed_string", orjson.dumps(f"hello {m}"), ("not_object",)),
        ("feed_missing_price", _obj(id=m, symbol=symbol, ts_ms=ts_ms), ("missing_field",)),
        ("feed_bad_price", _obj(id=m, symbol=symbol, price=float("-1"), ts_ms=ts_ms), ("bad_price",)),
        ("feed_bad_ts", _obj(id=m, symbol=symbol, price=10.0, ts="not a time"), ("bad_ts",)),
        ("feed_unknown_symbol", _obj(id=m, symbol=UNKNOWN, price=10.0, ts_ms=ts_ms), ("unknown_symbol",)),
        ("feed_batch", orjson.dumps([{"id": f"{m}a", "symbol": symbol, "price": "x", "ts_ms": ts_ms},
                                     {"id": f"{m}b", "symbol": "", "price": 1.0, "ts_ms": ts_ms}]),
         ("bad_price", "bad_symbol")),
    ]
    kind, payload, reasons = rng.choice(choices)
    return Garbage(kind, payload, reasons, m)


def mixed_item(n: int, ts_ms: int, symbol: str) -> tuple[dict[str, Any], Garbage]:
    """A bad item to put inside a date's batch of valid ticks: the valid ones must still apply."""
    m = f"chaos#{n}#"
    item = {"id": m, "symbol": symbol, "price": "n/a", "ts_ms": ts_ms}
    return item, Garbage("mixed_batch", orjson.dumps(item), ("bad_price",), m)


def late_tick(rng: random.Random, n: int, ts_ms: int) -> dict[str, Any]:
    """A clock tick far older than the allowed lateness: every shard that would use it must
    dead-letter it as ``late``. Its price is unique so its dlq records can be found."""
    return {"symbol": CLOCK, "price": round(3.0 + n * 1e-3 + rng.random() * 1e-4, 9), "ts_ms": ts_ms}


FAULT_KINDS = ("broker_down", "broker_slow", "produce_errors", "fetch_errors", "commit_errors",
               "worker_kill", "endpoint_500", "endpoint_stall", "endpoint_drop", "feed_drop")

# Retriable Kafka errors per API (streams/broker.py EmbeddedBroker.ERRORS).
FAULT_ERRORS = {
    "produce_errors": ("produce", ("not_leader", "request_timed_out", "not_enough_replicas", "network_exception")),
    "fetch_errors": ("fetch", ("not_leader", "request_timed_out", "network_exception")),
    "commit_errors": ("offset_commit", ("not_coordinator", "coordinator_not_available", "request_timed_out")),
}


@dataclass(frozen=True)
class Fault:
    at_s: float                # seconds after the start of the run
    kind: str
    duration_s: float          # how long the fault lasts (0: instantaneous, e.g. pushed errors)
    params: dict[str, Any] = field(default_factory=dict)


def fault_schedule(rng: random.Random, duration_s: float, *, start_s: float = 3.0, gap_s: tuple[float, float] = (1.5, 4.0),
                   kinds: tuple[str, ...] = FAULT_KINDS) -> list[Fault]:
    """Faults one after another from ``start_s`` until ``duration_s``: the kinds come in shuffled
    rounds, so a short run still tries each of them."""
    out: list[Fault] = []
    t = start_s
    bag: list[str] = []
    while True:
        if not bag:
            bag = list(kinds)
            rng.shuffle(bag)
        kind = bag.pop()
        params: dict[str, Any] = {}
        if kind == "broker_down":
            dur = rng.uniform(1.0, 4.0)
        elif kind == "broker_slow":
            dur, params = rng.uniform(2.0, 5.0), {"rtt_ms": rng.choice([150, 300, 600])}
        elif kind in FAULT_ERRORS:
            api, errors = FAULT_ERRORS[kind]
            dur, params = 0.0, {"api": api, "errors": [rng.choice(errors) for _ in range(rng.randint(2, 6))]}
        elif kind == "worker_kill":
            dur = rng.uniform(0.3, 2.0)  # down time before the restart
        elif kind == "feed_drop":
            dur = 0.0
        else:  # endpoint_*
            dur = rng.uniform(2.0, 6.0)
        if t + dur > duration_s:
            return out
        out.append(Fault(round(t, 3), kind, round(dur, 3), params))
        t += dur + rng.uniform(*gap_s)
