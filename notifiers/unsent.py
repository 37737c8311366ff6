"""What a stop leaves unsent, per channel and scenario, and the one line that reports it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Unsent", "describe_unsent"]


@dataclass(frozen=True, slots=True)
class Unsent:
    """A message of one channel not sent (yet), as the worker holds it: what a stop leaves behind."""

    channel: str
    scenario_id: str
    event_ids: tuple[str, ...]
    # retrying (waiting for its next attempt) | sending (an attempt under way: it may still reach
    # the channel) | held (quiet hours, rate limit) | grouping | queued
    state: str
    failed_attempts: int = 0        # retrying, sending: attempts that failed so far
    last_error: str | None = None   # the latest failure, redacted
    redelivery: bool = False        # a notifications.dlq record sent again (`dlq retry`)


_STATES = {"held": "held by quiet hours or the rate limit", "grouping": "in an open group window", "queued": "queued"}


def describe_unsent(unsent: list[Unsent]) -> str:
    """One line for a stop: how many notifications (event x channel) were not sent, and per
    channel and scenario, in what state (mid-retry: after how many failed attempts, and the last
    error). "" when nothing was pending."""
    if not unsent:
        return ""

    def attempts(n: int) -> str:
        return f"{n} failed attempt{'s' * (n != 1)}"

    total = sum(len(u.event_ids) for u in unsent)
    retrying = sum(len(u.event_ids) for u in unsent if u.failed_attempts)
    parts = []
    for u in unsent:
        if u.state == "retrying":
            state = f"retrying after {attempts(u.failed_attempts)}; last: {u.last_error}"
        elif u.state == "sending":
            state = f"attempt {u.failed_attempts + 1} under way at the stop, which may still reach the channel"
            if u.failed_attempts:
                state += f"; last failure: {u.last_error}"
        else:
            state = _STATES.get(u.state, u.state)
        n = len(u.event_ids)
        parts.append(f"{u.channel}: {u.scenario_id} ({n} event{'s' * (n != 1)}, {state}"
                     + ("; a dlq re-delivery)" if u.redelivery else ")"))
    return f"{total} notification{'s' * (total != 1)} not sent ({retrying} mid-retry): " + "; ".join(parts)
