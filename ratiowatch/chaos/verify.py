"""The chaos run's verdict: what went in and what came out, compared with the batch computation.
Pure: every input is plain data the run recorded from outside the worker (what it sent and the
broker acknowledged, what it read back from the topics, what its HTTP endpoint answered 200 to).

Counting rules (docs/faults.md):

- A valid tick is *applied* when the witness event that carries it (:mod:`.plan`) is on ``events``
  and equal to the event the backtest computes; a valid tick on ``ticks.dlq`` is *dead-lettered*;
  any other valid tick is *lost*. A bad input is *dead-lettered* when ``ticks.dlq`` holds one record
  per expected reason for it (found by the source record's partition and offset, by the late
  tick's unique price, or by the feed message's marker), otherwise the missing records are *lost*.
- Events: *expected* is the backtest over exactly the valid ticks sent; *emitted* counts expected
  event_ids seen with the expected content; *duplicated* counts records beyond the first per
  event_id, except *broker retry copies* (:mod:`.repeats`: a produce batch the embedded broker
  appended twice, which Kafka stores once), counted and shown apart and not failing the run;
  *missing* the expected ones never seen; *unexpected* ids seen that the backtest does not have
  (or with other content).
- Notifications: *expected* (event_id, channel) pairs are the expected trigger events the
  scenario notifies; *delivered* pairs got at least one 200 from the endpoint, each further 200 is
  *duplicated*, except a *kill-window repeat* (:mod:`.kill_window`: answered twice across a worker
  SIGKILL that came within 0.5 s after the first 200, before the dedup record could be written),
  counted and shown apart and not failing the run; a pair never answered 200 but on
  ``notifications.dlq`` is *dead-lettered*; the rest are *lost*.
"""

from __future__ import annotations

import bisect
import re
import statistics
from collections import Counter, defaultdict
from typing import Any, Iterable

import orjson

from .observed import Observed
from .kill_window import KILL_WINDOW_WHY, classify_deliveries, duplicate_examples
from .plan import HOOK, witness_id
from .repeats import BROKER_RETRY_WHY, Placed, blocks_evidence, classify_repeats, duplicates_where

__all__ = ["expected_pairs", "verify", "passed", "failures"]

_MARK = re.compile(r"chaos#(\d+)#")


def _events(obs: Observed) -> tuple[dict[str, Any], dict[str, float]]:
    expected = {e["event_id"]: e for e in obs.expected_events}
    seen: Counter[str] = Counter()
    copies: dict[str, list[int]] = defaultdict(list)  # event id -> indexes of its records
    ids: list[str | None] = []
    good_at: dict[str, float] = {}
    unexpected: set[str] = set()
    for i, (t, raw) in enumerate(obs.events):
        try:
            ev = orjson.loads(raw)
            eid = ev["event_id"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            unexpected.add(f"<unreadable {raw[:40]!r}>")
            ids.append(None)
            continue
        ids.append(eid)
        seen[eid] += 1
        copies[eid].append(i)
        if expected.get(eid) == ev:
            good_at.setdefault(eid, t)
        else:
            unexpected.add(eid)
    missing = [eid for eid in expected if eid not in good_at]
    placed = [Placed(p, o, ts, raw) for (p, o, ts), (_, raw) in zip(obs.event_places, obs.events)]
    rep = classify_repeats(placed, ids)
    read_at = [t for t, _ in obs.events]
    where = {(r.partition, r.offset): i for i, r in enumerate(placed)}
    repeated = {e: c for e, c in copies.items() if len(c) > 1}
    return {
        "expected": len(expected),
        "emitted": len(good_at),
        "duplicated": sum(rep.duplicated.values()),
        "broker_retry_copies": sum(rep.broker_copies.values()),
        "missing": len(missing),
        "unexpected": len(unexpected),
        "examples_missing": [_describe(expected[e]) for e in sorted(missing, key=lambda e: expected[e]["ts_ms"])[:5]],
        "examples_duplicated": sorted(rep.duplicated)[:5],
        "broker_retry_blocks": blocks_evidence(rep.blocks, {k: read_at[i] for k, i in where.items()},
                                               {k: placed[i] for k, i in where.items()}, obs.faults),
        "broker_retry_why": BROKER_RETRY_WHY if rep.broker_copies else None,
        "duplicates_where": duplicates_where(repeated, read_at, placed, obs.faults,
                                             set(rep.broker_copies) - set(rep.duplicated)),
    }, good_at


def _describe(e: dict[str, Any]) -> str:
    return f"{e['at'][:10]} {e['scenario']} {e['rule']} {e['kind']} ({e['event_id'][:12]})"


def _ticks(obs: Observed, good_at: dict[str, float]) -> dict[str, Any]:
    # The witness event of each (scenario, ts): the first expected event at or after a tick's time.
    by_witness: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for e in obs.expected_events:
        if e["rule"] == "trigger":
            by_witness[e["scenario"]].append((e["ts_ms"], e["event_id"]))
    for v in by_witness.values():
        v.sort()
    dlq = [orjson.loads(raw) for _, raw in obs.ticks_dlq]
    late_dlq: Counter[tuple[str, float, int]] = Counter()
    route_dlq: dict[tuple[int, int], Counter[str]] = defaultdict(Counter)
    feed_dlq: dict[int, Counter[str]] = defaultdict(Counter)
    no_reason = 0
    for d in dlq:
        if not d.get("reason") or not d.get("detail"):
            no_reason += 1
        if str(d.get("source", "")).startswith("feed:"):
            for n in {int(x) for x in _MARK.findall(orjson.dumps(d.get("input"), default=str).decode())}:
                feed_dlq[n][d["reason"]] += 1
        elif d.get("reason") == "late":  # by the route stage (with its partition) or by a shard
            i = d.get("input") or {}
            late_dlq[(i.get("symbol"), i.get("price"), i.get("ts_ms"))] += 1
        else:
            route_dlq[(d["partition"], d["offset"])][d["reason"]] += 1

    applied = unwitnessed = valid_dead = 0
    for sym, price, ts in obs.valid_ticks:
        w = by_witness.get(witness_id(sym), [])
        i = bisect.bisect_left(w, (ts, ""))
        if i < len(w) and w[i][1] in good_at:
            applied += 1
        elif late_dlq.get((sym, price, ts)):
            valid_dead += 1
        elif i >= len(w):
            unwitnessed += 1
    # Valid ticks the route agent rejected would show here (a record of valid ticks with dlq records).
    valid_rejected = sum(sum(c.values()) for po, c in route_dlq.items()
                         if po in obs.valid_records and po not in {(p, o) for p, o, _ in obs.route_garbage})

    bad_sent = bad_dead = dup = wrong = 0
    bad_lost: Counter[str] = Counter()
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # kind -> inputs, items sent, dead-lettered

    def match(expected: Iterable[str], got: Counter[str], kind: str) -> None:
        nonlocal bad_sent, bad_dead, dup, wrong
        exp = Counter(expected)
        bad_sent += sum(exp.values())
        k = by_kind[kind]
        k[0] += 1
        k[1] += sum(exp.values())
        for r, n in exp.items():
            bad_dead += min(n, got[r])
            k[2] += min(n, got[r])
            if got[r] < n:
                bad_lost[kind] += n - got[r]
            dup += max(0, got[r] - n)
        wrong += sum(n for r, n in got.items() if r not in exp)

    for p, o, g in obs.route_garbage:
        match(g.reasons, route_dlq.get((p, o), Counter()), g.kind)
    for key, copies in obs.late:
        match(["late"] * copies, Counter({"late": late_dlq.get(key, 0)}), "late")
    for g in obs.feed_garbage:
        n = int(_MARK.search(g.marker).group(1))
        match(g.reasons, feed_dlq.get(n, Counter()), g.kind)
    valid = len(obs.valid_ticks)
    lost_valid = valid - applied - valid_dead - unwitnessed
    return {
        "sent": valid + bad_sent,
        "valid": valid,
        "invalid": bad_sent,
        "applied": applied,
        "dead_lettered": bad_dead + valid_dead,
        "lost": lost_valid + sum(bad_lost.values()),
        "valid_dead_lettered": valid_dead,
        "valid_rejected": valid_rejected,
        "unwitnessed": unwitnessed,
        "dlq_duplicates": dup,
        "dlq_wrong_reason": wrong,
        "dlq_without_reason": no_reason,
        "lost_by_kind": dict(bad_lost),
        "bad_input_by_kind": {k: {"inputs": v[0], "items": v[1], "dead_lettered": v[2]} for k, v in sorted(by_kind.items())},
    }


def expected_pairs(obs: Observed) -> set[tuple[str, str]]:
    """(event_id, channel) of every expected notification: a trigger event that fired, or that
    re-armed in a scenario with notify_resolved, to each channel its scenario names."""
    out: set[tuple[str, str]] = set()
    for e in obs.expected_events:
        channels, resolved = obs.notify.get(e["scenario"], ((), False))
        if e["rule"] == "trigger" and (e["kind"] == "fired" or resolved):
            out.update((e["event_id"], ch) for ch in channels)
    return out


def _notifications(obs: Observed, good_at: dict[str, float]) -> tuple[dict[str, Any], dict[tuple[str, str], float]]:
    expected = expected_pairs(obs)
    answered: dict[tuple[str, str], list[float]] = defaultdict(list)  # pair -> when each 200 was written
    for t, ids in obs.receipts:
        for eid in ids:
            answered[(eid, HOOK)].append(t)
    settled = {p: ts[0] for p, ts in answered.items()}
    # An unexpected pair fails the run as unexpected: only expected ones may be kill-window repeats.
    dup, window = classify_deliveries({p: ts for p, ts in answered.items() if p in expected}, obs.faults)
    dup.update({p: len(ts) - 1 for p, ts in answered.items() if len(ts) > 1 and p not in expected})
    dead: set[tuple[str, str]] = set()
    for t, raw in obs.notifications_dlq:
        d = orjson.loads(raw)
        for eid in d.get("event_ids", []):
            dead.add((eid, d["channel"]))
            settled.setdefault((eid, d["channel"]), t)
    delivered = {p for p in expected if answered.get(p)}
    dead_only = (expected - delivered) & dead
    return {
        "expected": len(expected),
        "delivered": len(delivered),
        "duplicated": sum(dup.values()),
        "kill_window_repeats": len(window),
        "kill_window_evidence": [r.evidence() for r in window[:20]],
        "kill_window_why": KILL_WINDOW_WHY if window else None,
        "examples_duplicated": duplicate_examples(dup, answered, obs.faults),
        "dead_lettered": len(dead_only),
        "lost": len(expected - delivered - dead_only),
        "unexpected": sum(len(ts) for p, ts in answered.items() if p not in expected),
    }, {p: settled.get(p, float("inf")) for p in expected}


def _recovery(obs: Observed, good_at: dict[str, float], settled: dict[tuple[str, str], float]) -> dict[str, Any]:
    # ``settled``: every expected (event, channel) pair -> when it was delivered or dead-lettered (inf: never).
    """Seconds from the end of each fault until what it held up came through: every expected event
    up to the last date sent before the end (pipeline faults), every expected notification of the
    events out before the end (endpoint faults), the feed's next connection (feed drops)."""
    evs = sorted(obs.expected_events, key=lambda e: e["ts_ms"])
    ts_list = [e["ts_ms"] for e in evs]
    prefix: list[float] = []
    worst = 0.0
    for e in evs:
        worst = max(worst, good_at.get(e["event_id"], float("inf")))
        prefix.append(worst)
    acks = sorted(obs.date_acks)
    ack_times = [t for t, _ in acks]
    ev_at = {eid: t for eid, t in good_at.items()}
    out: list[tuple[str, float | None]] = []
    for f in obs.faults:
        if f.kind.startswith("endpoint_"):
            due = [t for (eid, _), t in settled.items() if ev_at.get(eid, float("inf")) <= f.end]
            r = None if float("inf") in due else max([0.0] + [t - f.end for t in due])
        elif f.kind == "feed_drop":
            nxt = [t for t in obs.feed_connected if t >= f.start]
            r = (min(nxt) - f.end) if nxt else None
        else:
            i = bisect.bisect_right(ack_times, f.end) - 1
            if i < 0:
                r = 0.0
            else:
                j = bisect.bisect_right(ts_list, acks[i][1]) - 1
                caught = prefix[j] if j >= 0 else f.end
                r = None if caught == float("inf") else max(0.0, caught - f.end)
        out.append((f.kind, None if r is None else round(max(r, 0.0), 3)))
    vals = [r for _, r in out if r is not None]
    by_kind: dict[str, float] = {}
    for k, r in out:
        if r is not None:
            by_kind[k] = max(by_kind.get(k, 0.0), r)
    return {"max": max(vals) if vals else None, "median": round(statistics.median(vals), 3) if vals else None,
            "never": sum(1 for _, r in out if r is None), "max_by_kind": by_kind}


def _serving(obs: Observed, good_at: dict[str, float]) -> list[int]:
    """Events that came out during each window a notification endpoint was failing: the worker
    keeps serving while a channel is down."""
    arrivals = sorted(good_at.values())
    return [bisect.bisect_right(arrivals, f.end) - bisect.bisect_left(arrivals, f.start)
            for f in obs.faults if f.kind.startswith("endpoint_")]


def verify(obs: Observed) -> dict[str, Any]:
    """The report: ticks, events, notifications, faults by kind, recovery times."""
    events, good_at = _events(obs)
    events["during_endpoint_faults"] = _serving(obs, good_at)
    ticks = _ticks(obs, good_at)
    notes, settled = _notifications(obs, good_at)
    return {
        "ticks": ticks,
        "events": events,
        "notifications": notes,
        "faults": dict(Counter(f.kind for f in obs.faults)),
        "recovery_s": _recovery(obs, good_at, settled),
        "worker_exits_unplanned": list(obs.worker_exits),
    }


_MUST_BE_ZERO = {"ticks": ("lost", "dlq_wrong_reason", "dlq_without_reason"),
                 "events": ("missing", "duplicated", "unexpected"),
                 "notifications": ("lost", "duplicated", "unexpected")}


def failures(report: dict[str, Any]) -> list[str]:
    """What makes the run fail, e.g. ``["notifications duplicated 1"]``: every figure that must be 0
    and is not. Broker retry copies (:mod:`.repeats`) and kill-window repeats of notifications
    (:mod:`.kill_window`) are not among them."""
    return [f"{part} {k} {report[part][k]}" for part, keys in _MUST_BE_ZERO.items() for k in keys if report[part][k]]


def passed(report: dict[str, Any]) -> bool:
    """Nothing lost, missing, duplicated or unexplained."""
    return not failures(report)
