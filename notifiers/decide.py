"""The decisions of a channel's pipeline, as pure functions that say what to do and why.

Each returns a :class:`Decision`: an action and a reason in words (for a log line, a record, a
test). They read no clock, no file and no topic: whatever they depend on (what was delivered,
which silence matches, the time) is passed in. This is Alertmanager's ``needsUpdate`` in
``notify/notify.go``: the dedup stage queries the notification log, then asks a pure function
whether to send, so the rule is tested without a log, a clock or a receiver.

Where each is asked (pipeline.py lists the stages in order):

- :func:`dedup`: send or skip one event, from the (event, channel) pairs already delivered
  (dedup stage, and ``group.Grouper`` for the same event twice in one open group).
- :func:`mute`: send or hold back as silenced, from the silence matching the scenario now.
- :func:`after_failure`: retry or give up, after a failed attempt.
- :func:`after_give_up`: dead-letter, or report only (a re-delivery from the DLQ).

Routing (which channels an event goes to, or why none) is ``route.decide_route``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

__all__ = ["Decision", "SEND", "SKIP", "MUTE", "RETRY", "GIVE_UP", "DEAD_LETTER", "REPORT",
           "dedup", "mute", "after_failure", "after_give_up"]

SEND = "send"
SKIP = "skip"                # a duplicate: recorded as skipped_duplicate, not sent
MUTE = "mute"                # recorded as silenced, not sent, not even after the silence ends
RETRY = "retry"
GIVE_UP = "give_up"
DEAD_LETTER = "dead_letter"  # onto notifications.dlq, for `ratiowatch dlq retry`
REPORT = "report"            # logged as failed, nothing written to notifications.dlq


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    reason: str


def dedup(event_id: str, delivered: Collection[str]) -> Decision:
    """Whether to send ``event_id`` to a channel that already got the events in ``delivered``."""
    if event_id in delivered:
        return Decision(SKIP, "already delivered to this channel")
    return Decision(SEND, "not delivered to this channel yet")


def mute(silence_id: str | None, redelivery: bool) -> Decision:
    """Whether a message goes, given the silence muting its scenario now (or None). Asked when the
    message would go, not when its event came in (Alertmanager's mute stage): a message held by a
    group window, quiet hours or the rate limit while a silence began is not sent either."""
    if redelivery:
        return Decision(SEND, "a re-delivery from notifications.dlq is an operator's explicit ask")
    if silence_id is not None:
        return Decision(MUTE, f"silenced by {silence_id}")
    return Decision(SEND, "no silence matches")


def after_failure(retryable: bool, attempt: int, max_attempts: int, next_start_s: float,
                  deadline_s: float) -> Decision:
    """After failed attempt number ``attempt``: another, or give up. ``next_start_s`` is when the
    next attempt would start, counted from the first attempt; none starts after ``deadline_s``."""
    if not retryable:
        return Decision(GIVE_UP, "the channel refused it: another attempt cannot help")
    if attempt >= max_attempts:
        return Decision(GIVE_UP, f"{attempt} attempts made, the most allowed")
    if next_start_s > deadline_s:
        return Decision(GIVE_UP, f"a next attempt would start after the {deadline_s:g} s deadline")
    return Decision(RETRY, f"attempt {attempt} of {max_attempts} failed in a way that may pass")


def after_give_up(redelivery: bool) -> Decision:
    """What becomes of a message whose attempts all failed."""
    if redelivery:
        return Decision(REPORT, "a re-delivery from notifications.dlq is already there: not dead-lettered twice")
    return Decision(DEAD_LETTER, "kept on notifications.dlq until `ratiowatch dlq retry` sends it")
