"""Ticks: the one input shape of the engine, and the parser every source goes through.

A tick is ``{"symbol": "IWM", "price": 277.61, "ts": ...}``. ``ts`` is event time: epoch
seconds or milliseconds (a number below 1e11 is taken as seconds, so milliseconds before
1973-03-03 are ambiguous) or an ISO-8601 string with an offset. ``"ts_ms"`` instead of ``"ts"``
is unambiguous epoch milliseconds; ratiowatch's own producers write that. A record on the ``ticks`` topic holds one tick (keyed by symbol) or a JSON array of
ticks (one vendor message, keyed by its source): batches are the production ingest shape.

Parsing is pure. A bad item never stops the good ones next to it: each rejected item comes back
with a reason and goes to ``ticks.dlq``; nothing is applied from it.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from functools import lru_cache
from typing import Any, Iterable, NamedTuple, Sequence

import orjson

from ratiowatch.model.sessions import iso_utc

__all__ = ["Tick", "Rejected", "parse_ticks", "parse_rows", "parse_records", "parse_tick_obj", "parse_ts_ms",
           "encode_ticks", "dlq_record"]

# Bounds that catch unit mistakes (a price in cents sent as 1e8, a ts in microseconds) early.
MAX_PRICE = 1e12
MIN_TS_MS = 0                       # 1970-01-01
MAX_TS_MS = 4_102_444_800_000       # 2100-01-01
MAX_SYMBOL_LEN = 32


class Tick(NamedTuple):
    symbol: str
    price: float
    ts_ms: int  # event time, epoch milliseconds


class Rejected(NamedTuple):
    reason: str   # not_json | not_object | missing_field | bad_symbol | bad_price | bad_ts | unknown_symbol | late | ...
    detail: str
    item: Any     # the offending item (or the raw text when it was not JSON at all)


def parse_ts_ms(ts: Any) -> int:
    """Event time in epoch milliseconds. Raises ValueError with a reason text."""
    if isinstance(ts, bool):
        raise ValueError(f"ts must be epoch seconds/milliseconds or ISO-8601, got {ts!r}")
    if isinstance(ts, (int, float)):
        if not math.isfinite(ts):
            raise ValueError(f"ts is not finite: {ts!r}")
        ms = int(round(ts * 1000)) if abs(ts) < 1e11 else int(round(ts))
    elif isinstance(ts, str):
        try:
            dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"ts {ts[:40]!r} is not ISO-8601") from None
        if dt.tzinfo is None:
            raise ValueError(f"ts {ts[:40]!r} has no UTC offset: event time must be unambiguous")
        ms = int(round(dt.timestamp() * 1000))
    else:
        raise ValueError(f"ts must be epoch seconds/milliseconds or ISO-8601, got {type(ts).__name__}")
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        if isinstance(ts, (int, float)) and abs(ts) < 1e11:  # the reading a sender may not expect
            raise ValueError(f"ts {ts!r}, read as epoch seconds (a number below 1e11 is seconds), is "
                             f"{_reads_as(ms, ', ')}outside 1970..2100; send ts_ms for epoch milliseconds")
        raise ValueError(f"ts {ts!r} is {_reads_as(ms, ', ')}outside 1970..2100")
    return ms


def parse_tick_obj(obj: Any, known: frozenset[str] | set[str] | None = None,
                   signed: frozenset[str] = frozenset()) -> Tick | Rejected:
    """Validate one decoded tick object. ``signed``: symbols whose values may be <= 0."""
    if not isinstance(obj, dict):
        return Rejected("not_object", f"a tick must be a JSON object, got {type(obj).__name__}", obj)
    for f in ("symbol", "price"):
        if f not in obj:
            return Rejected("missing_field", f"missing {f!r}", obj)
    if ("ts" in obj) == ("ts_ms" in obj):
        return Rejected("missing_field" if "ts" not in obj else "bad_ts",
                        "needs exactly one of 'ts' and 'ts_ms'", obj)
    sym = obj["symbol"]
    if not isinstance(sym, str) or not sym or len(sym) > MAX_SYMBOL_LEN or not sym.isprintable():
        return Rejected("bad_symbol", f"symbol must be a non-empty printable string of at most {MAX_SYMBOL_LEN}", obj)
    sym = sym.upper()
    price = obj["price"]
    if isinstance(price, bool) or not isinstance(price, (int, float)):
        return Rejected("bad_price", f"price must be a number, got {type(price).__name__}", obj)
    if not math.isfinite(price) or abs(price) > MAX_PRICE:
        return Rejected("bad_price", f"price must be finite and at most {MAX_PRICE:g} in size, got {price!r}", obj)
    if price <= 0 and sym not in signed:
        # A price is positive; series that may go negative (T10Y2Y) are listed in settings.signed_symbols.
        return Rejected("bad_price", f"price must be > 0 ({sym} is not in settings.signed_symbols), got {price!r}", obj)
    if "ts_ms" in obj:
        ts = obj["ts_ms"]
        if isinstance(ts, bool) or not isinstance(ts, int) or not MIN_TS_MS <= ts <= MAX_TS_MS:
            return Rejected("bad_ts", f"ts_ms must be whole epoch milliseconds in 1970..2100, got {ts!r}"
                            + (_reads_as(ts, ")", " (") if type(ts) is int else ""), obj)
    else:
        try:
            ts = parse_ts_ms(obj["ts"])
        except ValueError as e:
            return Rejected("bad_ts", str(e), obj)
    if known is not None and sym not in known:
        return Rejected("unknown_symbol", f"no scenario uses symbol {sym!r}", obj)
    return Tick(sym, float(price), ts)


def parse_ticks(raw: bytes | str, known: frozenset[str] | set[str] | None = None,
                signed: frozenset[str] = frozenset()) -> tuple[list[Tick], list[Rejected]]:
    """Parse one ``ticks`` record: a tick object or an array of them."""
    rows, bad = parse_rows(raw, known, signed)
    return [Tick._make(r) for r in rows], bad


@lru_cache(maxsize=16)
def _plain_symbols(known: frozenset[str]) -> frozenset[str]:
    """The known symbols that parse_tick_obj would accept exactly as written (already upper case,
    printable, short enough)."""
    return frozenset(s for s in known if s == s.upper() and 0 < len(s) <= MAX_SYMBOL_LEN and s.isprintable())


def parse_rows(raw: bytes | str, known: frozenset[str] | set[str] | None = None,
               signed: frozenset[str] = frozenset()) -> tuple[list[tuple[str, float, int]], list[Rejected]]:
    """:func:`parse_ticks` for the hot path: the same checks and answers, each good tick as a plain
    ``(symbol, price, ts_ms)`` tuple (orjson writes tuples as arrays; a NamedTuple it refuses)."""
    rows, bad, _ = parse_records((raw,), known, signed)
    return rows, [r for _, r in bad]


def parse_records(values: Sequence[bytes | str], known: frozenset[str] | set[str] | None = None,
                  signed: frozenset[str] = frozenset()
                  ) -> tuple[list[tuple[str, float, int]], list[tuple[int, Rejected]], list[int]]:
    """:func:`parse_rows` over many ``ticks`` records in one call (one record may be one tick:
    per record, a call costs more than the tick). Returns (the good ticks of all records, in
    order; each rejection with the index of its record; ``ends[i]``, the number of good ticks up
    to and including record ``i``)."""
    # The shape ratiowatch's producers write ({"symbol", "price": float > 0, "ts_ms": int}, a known
    # upper-case symbol) is accepted by a few type checks: the full validation costs ~1.3 µs a tick,
    # most of the route stage's budget. Anything else goes through parse_tick_obj, the reference.
    plain = _plain_symbols(known) if isinstance(known, frozenset) else frozenset()
    loads = orjson.loads
    good: list[tuple[str, float, int]] = []
    bad: list[tuple[int, Rejected]] = []
    ends: list[int] = []
    append = good.append
    for i, raw in enumerate(values):
        try:
            doc = loads(raw)
        except (orjson.JSONDecodeError, TypeError) as e:
            text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
            bad.append((i, Rejected("not_json", f"not JSON: {e}", text[:2000])))
            ends.append(len(good))
            continue
        if type(doc) is dict and len(doc) == 3:  # one tick per record (keyed by symbol): no loop
            sym, price, ts = doc.get("symbol"), doc.get("price"), doc.get("ts_ms")
            if (type(sym) is str and sym in plain and type(price) is float and 0.0 < price <= MAX_PRICE
                    and type(ts) is int and MIN_TS_MS <= ts <= MAX_TS_MS):
                append((sym, price, ts))
                ends.append(len(good))
                continue
        if type(doc) is list:
            if not doc:
                bad.append((i, Rejected("empty_batch", "an empty array carries no tick", doc)))
            items = doc
        else:
            items = (doc,)
        for obj in items:
            if type(obj) is dict and len(obj) == 3:
                sym, price, ts = obj.get("symbol"), obj.get("price"), obj.get("ts_ms")
                if (type(sym) is str and sym in plain and type(price) is float and 0.0 < price <= MAX_PRICE
                        and type(ts) is int and MIN_TS_MS <= ts <= MAX_TS_MS):
                    append((sym, price, ts))
                    continue
            r = parse_tick_obj(obj, known, signed)
            if isinstance(r, Rejected):
                bad.append((i, r))
            else:
                append(tuple(r))
        ends.append(len(good))
    return good, bad, ends


def encode_ticks(ticks: Iterable[Tick]) -> bytes:
    """A batch record for the ``ticks`` topic (event time as unambiguous ``ts_ms``)."""
    return orjson.dumps([{"symbol": t.symbol, "price": t.price, "ts_ms": t.ts_ms} for t in ticks])


def dlq_record(rej: Rejected, *, source: str, at_ms: int, partition: int | None = None,
               offset: int | None = None, judged_by: str = "") -> bytes:
    """The ``ticks.dlq`` record for a rejected input: why, where from, and the input itself.

    ``partition`` and ``offset`` say where on ``source`` (a topic) the input was read; an input
    that never was on a partition (a websocket message, a polled response) has neither field,
    rather than a null. ``at`` is when it was dead-lettered, in ISO-8601 UTC (``at_ms``, the same
    instant in epoch milliseconds, stays for programs that read it).

    ``dlq_id`` names the rejection, not the write: an engine restarted before its commit reads the
    same records again and dead-letters them again, with the same id, so a consumer keeps one per
    id (at-least-once, as every Kafka consumer of a topic written outside a transaction must).
    It digests where the input was read, why, the input, and ``judged_by`` (which shard, for a
    tick late at a shard: each shard judges its own copy). Without a partition the input was never
    on a topic and is never read again: the time it came is part of the id."""
    where = f"{partition}|{offset}" if partition is not None else f"at {at_ms}"
    material = f"{source}|{where}|{rej.reason}|{judged_by}|".encode() + orjson.dumps(rej.item, default=str,
                                                                                      option=orjson.OPT_SORT_KEYS)
    rec: dict[str, Any] = {"dlq_id": hashlib.sha256(material).hexdigest()[:32], "reason": rej.reason,
                           "detail": rej.detail, "input": rej.item, "source": source}
    if partition is not None:
        rec["partition"] = partition
    if offset is not None:
        rec["offset"] = offset
    rec["at"] = iso_utc(at_ms)
    rec["at_ms"] = at_ms
    return orjson.dumps(rec, default=str)


def _reads_as(ms: int, after: str, before: str = "") -> str:
    """The instant an out-of-range time stands for, in ISO-8601 UTC between ``before`` and
    ``after``, where a date can say it (the detail then shows the sender what their number meant);
    "" where it cannot."""
    try:
        return f"{before}{iso_utc(ms)}{after}"
    except (ValueError, OverflowError, OSError):
        return ""
