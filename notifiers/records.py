"""Records: the JSON written to ``deliveries`` and ``notifications.dlq``. Pure.

``deliveries`` (key: event_id) gets one record per event, channel and attempt, and one per
outcome: ``{"event_id", "scenario", "channel", "attempt", "outcome", "error", "at_ms"}`` with
outcome ``delivered`` | ``failed`` (an attempt failed; another may follow) | ``dead_lettered``
(the last attempt failed; the message is on notifications.dlq) | ``skipped_duplicate`` (already
delivered to this channel, attempt 0) | ``silenced`` (a silence muted it, attempt 0; the record
also has ``silence``, the silence id). ``channel`` is the channel's name, never its URL, and
``error`` is redacted.

``notifications.dlq`` (key: first event_id) gets one record per message that exhausted its
retries: the channel name, the events (schema v1, whole, so ``ratiowatch dlq retry`` can render
them again), the error and the attempts made.
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson

from .route import FIRING, RESOLVED, Notice

__all__ = ["OUTCOMES", "DLQ_VERSION", "delivery_record", "dlq_record", "parse_dlq_record"]

OUTCOMES = ("delivered", "failed", "dead_lettered", "skipped_duplicate", "silenced")
DLQ_VERSION = 1


def delivery_record(event_id: str, scenario: str, channel: str, attempt: int, outcome: str,
                    error: str | None, at_ms: int, silence: str | None = None) -> bytes:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {OUTCOMES}")
    if (outcome == "silenced") != (silence is not None):
        raise ValueError("a 'silenced' record names its silence, and only it does")
    rec = {"event_id": event_id, "scenario": scenario, "channel": channel, "attempt": attempt,
           "outcome": outcome, "error": error, "at_ms": at_ms}
    if silence is not None:
        rec["silence"] = silence
    return orjson.dumps(rec)


def dlq_record(channel: str, notices: Iterable[Notice], error: str, attempts: int, at_ms: int) -> bytes:
    ns = list(notices)
    return orjson.dumps({
        "v": DLQ_VERSION, "channel": channel, "scenario": ns[0].scenario_id,
        "event_ids": [n.event_id for n in ns],
        "notices": [{"status": n.status, "event": n.event} for n in ns],
        "error": error, "attempts": attempts, "at_ms": at_ms,
    })


def parse_dlq_record(value: bytes) -> dict[str, Any]:
    """The record as a dict; ValueError saying what is wrong when it is not one of ours."""
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(d, dict) or d.get("v") != DLQ_VERSION:
        raise ValueError(f"not a notifications.dlq record of version {DLQ_VERSION}")
    notices = d.get("notices")
    if not isinstance(d.get("channel"), str) or not isinstance(notices, list) or not notices:
        raise ValueError("a notifications.dlq record needs 'channel' and a non-empty 'notices' list")
    for n in notices:
        if not isinstance(n, dict) or n.get("status") not in (FIRING, RESOLVED) or not isinstance(n.get("event"), dict):
            raise ValueError("each notice needs a 'status' (firing/resolved) and an 'event' object")
    return d
