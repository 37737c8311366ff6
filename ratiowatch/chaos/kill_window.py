"""Notifications answered 200 twice: the notifier's at-least-once window after a SIGKILL, or a
duplicate. Pure.

A channel's pipeline writes the dedup record of a message only after the channel accepted it
(``SetDeliveredStage`` in ``notifiers/stages.py``, as Alertmanager's notification log). A worker
SIGKILLed after the endpoint's 200 and before that write has no record of the delivery, and the
restarted worker sends the message again. The sender cannot close this window: it cannot know
whether the answer came before it died. The payload carries ``event_id``, so a receiver drops
the repeat.

Such a repeat is recognisable from outside, on the chaos process's one monotonic clock: the pair
was answered 200 exactly twice, a ``worker_kill`` fault's SIGKILL came at most
:data:`KILL_WINDOW_S` after the first 200, and the second 200 came after the worker was started
again. It is classified as a *kill-window repeat*, shown with that evidence and not failing the
run. Any other repeat is a *duplicate* that fails it: a kill seconds after the 200 came after the
record was written (the restarted worker's dedup stage skips the pair), and a third delivery is
not explained by one kill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["KILL_WINDOW_S", "KILL_WINDOW_WHY", "Deliveries", "KillWindowRepeat", "classify_deliveries",
           "duplicate_examples"]

# The longest a SIGKILL may come after the first 200 and still have fallen before the dedup
# record. Between the two the worker does no network I/O and waits on nothing: apprise's thread
# reads the 200 and hands back to the event loop, the chart's temporary directory is removed, the
# dead-letter stage passes a success through, and the dedup stage commits one SQLite transaction
# (WAL, synchronous=FULL: one fsync) from the thread pool. That is a few milliseconds (the one seen:
# 1.5 ms); it stretches only while the worker's event loop is held by the engine role sharing the
# process, or the fsync waits on a busy disk. 0.5 s covers those with a wide margin, and is far
# below the 0.3-2 s a kill keeps the worker down and the seconds between faults, so a kill that
# came after the record was written is not taken for one that came before it.
KILL_WINDOW_S = 0.5

KILL_WINDOW_WHY = (
    "the notifier's at-least-once window between a channel's acknowledgement and the dedup record: "
    "the worker was SIGKILLed after the endpoint answered 200 and before the dedup record of that "
    "delivery was written (SetDeliveredStage in notifiers/stages.py writes it only after a success, as "
    "Alertmanager's notification log does), so the restarted worker sent the message again. The sender "
    "cannot close this window, since it cannot know the answer arrived before it died; the payload "
    "carries event_id, and a receiver drops the repeat by event_id (docs/faults.md, the limits of "
    "promise 3)")

Pair = tuple[str, str]                      # (event_id, channel)
Deliveries = Mapping[Pair, Sequence[float]]  # pair -> the times the endpoint wrote a 200 for it


@dataclass(frozen=True)
class KillWindowRepeat:
    """A pair delivered twice across a kill in the window, and the evidence."""

    event_id: str
    channel: str
    first_delivery_s: float   # the first 200 (chaos monotonic seconds)
    kill_s: float             # the SIGKILL
    restart_s: float          # the worker started again
    second_delivery_s: float  # the 200 of the restarted worker's send

    @property
    def gap_s(self) -> float:
        return self.kill_s - self.first_delivery_s

    def evidence(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "channel": self.channel,
                "first_delivery_s": round(self.first_delivery_s, 4), "kill_s": round(self.kill_s, 4),
                "gap_ms": round(self.gap_s * 1000, 1), "restart_s": round(self.restart_s, 3),
                "second_delivery_s": round(self.second_delivery_s, 3)}


def _kills(faults: Sequence[Any]) -> list[tuple[float, float]]:
    """(SIGKILL time, restart time) of each ``worker_kill`` fault: its record's start is stamped
    just before the signal is sent, its end once the new worker was started."""
    return sorted((f.start, f.end) for f in faults if f.kind == "worker_kill")


def _in_window(first: float, second: float, kills: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    for kill, restart in kills:
        if 0.0 <= kill - first <= KILL_WINDOW_S and second > restart:
            return kill, restart
    return None


def classify_deliveries(deliveries: Deliveries, faults: Sequence[Any]) -> tuple[dict[Pair, int], list[KillWindowRepeat]]:
    """The pairs answered 200 more than once, split: ``(duplicated, kill_window)``, where
    ``duplicated`` maps each failing pair to its deliveries beyond the first, and ``kill_window``
    holds the repeats of the module docstring, by time of the first delivery."""
    kills = _kills(faults)
    duplicated: dict[Pair, int] = {}
    window: list[KillWindowRepeat] = []
    for pair, times in deliveries.items():
        if len(times) < 2:
            continue
        first, second = sorted(times)[:2]
        hit = _in_window(first, second, kills) if len(times) == 2 else None
        if hit is None:
            duplicated[pair] = len(times) - 1
        else:
            window.append(KillWindowRepeat(pair[0], pair[1], first, hit[0], hit[1], second))
    window.sort(key=lambda r: r.first_delivery_s)
    return duplicated, window


def duplicate_examples(duplicated: Mapping[Pair, int], deliveries: Deliveries,
                       faults: Sequence[Any]) -> list[dict[str, Any]]:
    """The first five failing pairs (by first delivery): when each 200 came, and how long after the
    first the next SIGKILL came (None: none after it), so that a kill just outside the window is
    seen as such."""
    kills = [k for k, _ in _kills(faults)]
    out = []
    for pair in sorted(duplicated, key=lambda p: min(deliveries[p]))[:5]:
        times = sorted(deliveries[pair])
        after = [k - times[0] for k in kills if k >= times[0]]
        out.append({"event_id": pair[0], "channel": pair[1], "deliveries_s": [round(t, 3) for t in times],
                    "next_kill_after_first_s": round(min(after), 4) if after else None})
    return out
