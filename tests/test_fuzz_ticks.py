"""Fuzzing the tick parser (streams/ticks.py): whatever arrives on the ``ticks`` topic, parsing
never raises, every rejected item comes back with a known reason and a detail, a bad item never
changes what the good items next to it parse to, and the fast path of ``parse_rows`` answers
exactly as the reference ``parse_tick_obj`` does."""

from __future__ import annotations

import json
import math

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ratiowatch.streams.ticks import (MAX_PRICE, MAX_SYMBOL_LEN, MAX_TS_MS, MIN_TS_MS, Rejected, Tick, dlq_record,
                                      parse_rows, parse_tick_obj, parse_ticks)

KNOWN = frozenset({"SPY", "IWM", "DGS10", "T10Y2Y", "BRK.B"})
SIGNED = frozenset({"T10Y2Y"})
# Every reason parse_ticks may give (docs/faults.md lists them with their meaning).
REASONS = {"not_json", "not_object", "empty_batch", "missing_field", "bad_symbol", "bad_price", "bad_ts",
           "unknown_symbol"}
FUZZ = settings(max_examples=200, deadline=None)

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
big_ints = st.integers(min_value=2**63, max_value=2**70)  # orjson refuses these: they must not crash the parser
json_values = st.recursive(json_scalars | big_ints, lambda kids: st.lists(kids, max_size=5)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=5), max_leaves=25)
# Objects that look like ticks, with fields drawn from good and bad values alike.
symbols = st.sampled_from(sorted(KNOWN) + ["spy", "NOPE", "", " ", "A" * 33, "SP\nY", "\u00e9"]) | st.text(max_size=40) | json_scalars
prices = (st.floats(allow_nan=False) | st.integers(min_value=-(10**14), max_value=10**14)
          | st.sampled_from([0, -0.0, 1e12, 1e12 + 1, 5e-324]) | json_scalars)
timestamps = (st.integers(min_value=-(10**14), max_value=10**14) | st.floats(allow_nan=False)
              | st.sampled_from(["2026-01-02T16:00:00Z", "2026-01-02T16:00:00", "2026-01-02", "yesterday", "",
                                 "2026-01-02T16:00:00+05:30"]) | json_scalars)
tickish = st.fixed_dictionaries({}, optional={"symbol": symbols, "price": prices, "ts": timestamps,
                                              "ts_ms": timestamps, "extra": json_scalars})


def _check_result(good, bad) -> None:
    for t in good:
        sym, price, ts = t
        assert isinstance(sym, str) and sym in KNOWN
        assert isinstance(price, float) and math.isfinite(price) and abs(price) <= MAX_PRICE
        assert price > 0 or sym in SIGNED
        assert isinstance(ts, int) and MIN_TS_MS <= ts <= MAX_TS_MS
    for r in bad:
        assert isinstance(r, Rejected)
        assert r.reason in REASONS, r
        assert isinstance(r.detail, str) and r.detail
        # the dead letter can always be written and read back
        rec = orjson.loads(dlq_record(r, source="ticks", at_ms=1, partition=0, offset=7))
        assert rec["reason"] == r.reason and rec["detail"] == r.detail


@FUZZ
@given(st.binary(max_size=300))
@example(b"\xff\xfe{")
@example(b"[]")
@example(b"NaN")
@example(b'{"symbol":"SPY","price":1e999,"ts_ms":1}')
def test_any_bytes_parse_without_raising_and_every_rejection_has_a_reason(raw):
    good, bad = parse_ticks(raw, KNOWN, SIGNED)
    _check_result(good, bad)
    assert good or bad  # nothing vanishes: a record gives ticks, rejections, or both


@FUZZ
@given(json_values)
def test_any_json_document_is_all_accounted_for(doc):
    good, bad = parse_ticks(json.dumps(doc).encode(), KNOWN, SIGNED)  # json: it writes any int
    _check_result(good, bad)
    if isinstance(doc, list):
        assert len(good) + len(bad) == (len(doc) or 1)  # one answer per item; [] is one rejection
    else:
        assert len(good) + len(bad) == 1


@FUZZ
@given(st.lists(tickish, min_size=1, max_size=8))
def test_fast_path_answers_exactly_like_the_reference(items):
    raw = orjson.dumps(items)
    rows, bad = parse_rows(raw, KNOWN, SIGNED)
    reference = [parse_tick_obj(obj, KNOWN, SIGNED) for obj in orjson.loads(raw)]
    assert rows == [tuple(r) for r in reference if not isinstance(r, Rejected)]
    assert [(b.reason, b.item) for b in bad] == [(r.reason, r.item) for r in reference if isinstance(r, Rejected)]
    _check_result(rows, bad)


valid_ticks = st.builds(
    lambda sym, price, ts: {"symbol": sym, "price": price, "ts_ms": ts},
    st.sampled_from(sorted(KNOWN - SIGNED)),  # a non-positive price is valid for a signed symbol
    st.floats(min_value=1e-9, max_value=MAX_PRICE),
    st.integers(min_value=MIN_TS_MS, max_value=MAX_TS_MS))

# (what to change, the bad value, the reason it must give)
MUTATIONS = [
    ("symbol", None, "bad_symbol"), ("symbol", "", "bad_symbol"), ("symbol", 42, "bad_symbol"),
    ("symbol", "X" * (MAX_SYMBOL_LEN + 1), "bad_symbol"), ("symbol", "S\tPY", "bad_symbol"),
    ("symbol", "NOPE", "unknown_symbol"),
    ("price", "1.5", "bad_price"), ("price", True, "bad_price"), ("price", None, "bad_price"),
    ("price", -1.0, "bad_price"), ("price", 0, "bad_price"), ("price", MAX_PRICE * 10, "bad_price"),
    ("ts_ms", 1.5, "bad_ts"), ("ts_ms", "1767000000000", "bad_ts"), ("ts_ms", MAX_TS_MS + 1, "bad_ts"),
    ("ts_ms", -1, "bad_ts"), ("ts_ms", True, "bad_ts"),
    ("-price", None, "missing_field"), ("-symbol", None, "missing_field"), ("-ts_ms", None, "missing_field"),
    ("+ts", 1767000000, "bad_ts"),
]


@FUZZ
@given(st.lists(valid_ticks, min_size=1, max_size=6), st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4),
       st.randoms(use_true_random=False))
def test_a_bad_item_is_rejected_for_its_fault_and_leaves_its_neighbours_alone(ticks, mutations, rnd):
    clean = parse_ticks(orjson.dumps(ticks), KNOWN, SIGNED)
    assert clean == ([Tick(t["symbol"], float(t["price"]), t["ts_ms"]) for t in ticks], [])
    batch = list(ticks)
    expected_reasons = []
    for field, value, reason in mutations:
        bad = dict(rnd.choice(ticks))
        if field.startswith("-"):
            del bad[field[1:]]
        elif field.startswith("+"):
            bad[field[1:]] = value
        else:
            bad[field] = value
        batch.insert(rnd.randrange(len(batch) + 1), bad)
        expected_reasons.append(reason)
    good, rejected = parse_ticks(orjson.dumps(batch), KNOWN, SIGNED)
    assert good == clean[0]  # the good ones, in order, as if the bad ones were not there
    assert sorted(r.reason for r in rejected) == sorted(expected_reasons)


def test_signed_symbols_may_be_zero_or_negative_and_others_may_not():
    good, bad = parse_ticks(orjson.dumps([{"symbol": "T10Y2Y", "price": -0.42, "ts_ms": 1},
                                          {"symbol": "SPY", "price": -0.42, "ts_ms": 1}]), KNOWN, SIGNED)
    assert good == [Tick("T10Y2Y", -0.42, 1)]
    assert [r.reason for r in bad] == ["bad_price"]


def test_a_millisecond_time_sent_as_ts_is_rejected_saying_how_it_was_read():
    # 31,870,800,000 is 1971-01-04 in milliseconds, but `ts` below 1e11 is read as seconds (year
    # 2980): the sender must learn why, not only that it is out of range.
    good, rejected = parse_ticks(orjson.dumps({"symbol": "SPY", "price": 10.0, "ts": 31_870_800_000}), KNOWN, SIGNED)
    assert good == [] and [r.reason for r in rejected] == ["bad_ts"]
    assert "read as epoch seconds" in rejected[0].detail and "ts_ms" in rejected[0].detail
    good, _ = parse_ticks(orjson.dumps({"symbol": "SPY", "price": 10.0, "ts_ms": 31_870_800_000}), KNOWN, SIGNED)
    assert [t.ts_ms for t in good] == [31_870_800_000]
