"""Group: notices of one scenario that arrive within its ``group_window_s`` go out as one
message (Alertmanager's ``group_wait``). Pure: the caller passes the time in.

A group opens with its first notice and is due ``window`` seconds later; anything for the same
scenario arriving before then joins it. A window of 0 makes every notice due at once. A notice
for an event already in the open group is dropped there (handled twice in quick succession).

A due :class:`Batch` is what then flows through the channel's stages (stage.py); the stages fill
in its later fields, as Alertmanager's stages pass what they learnt on in the context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .decide import SKIP, dedup
from .route import Notice

if TYPE_CHECKING:
    from .render import Message

__all__ = ["Batch", "Grouper"]


@dataclass(slots=True)
class Batch:
    """Notices of one scenario that form one message to one channel."""

    scenario_id: str
    notices: list[Notice]
    due: float = 0.0
    # Set for a batch re-sent from the DLQ: it is not dead-lettered again, and the caller learns
    # the outcome through this future.
    redelivery: object | None = field(default=None, repr=False)
    # Filled in by the stages: the rendered message and its chart, the attempts made, the last
    # error when every attempt failed, and the outcome once a stage has ended the message.
    message: "Message | None" = field(default=None, repr=False)
    chart: bytes | None = field(default=None, repr=False)
    attempts: int = 0
    error: str | None = None
    outcome: str | None = None

    @property
    def event_ids(self) -> list[str]:
        return [n.event_id for n in self.notices]


class Grouper:
    """Open groups of one channel, keyed by scenario."""

    def __init__(self, window_for: Callable[[Notice], float]) -> None:
        self._window_for = window_for
        self._open: dict[str, Batch] = {}
        self._ready: list[Batch] = []  # window 0: each notice is its own message

    def add(self, notice: Notice, now: float) -> bool:
        """Put ``notice`` in its scenario's group (opening one if needed). False when that group
        already holds the same event, which is then dropped."""
        window = self._window_for(notice)
        if window <= 0:
            self._ready.append(Batch(notice.scenario_id, [notice], now))
            return True
        group = self._open.get(notice.scenario_id)
        if group is None:
            self._open[notice.scenario_id] = Batch(notice.scenario_id, [notice], now + window)
            return True
        if dedup(notice.event_id, group.event_ids).action == SKIP:
            return False
        group.notices.append(notice)
        return True

    def due(self, now: float) -> list[Batch]:
        """Batches due at ``now``, oldest first; they leave the grouper."""
        expired = [b for b in self._open.values() if b.due <= now]
        for b in expired:
            del self._open[b.scenario_id]
        ready, self._ready = self._ready, []
        return sorted(ready + expired, key=lambda b: b.due)  # stable: arrival order within a time

    def next_due(self) -> float | None:
        return min((b.due for b in self._open.values()), default=None)

    def __len__(self) -> int:
        return sum(len(b.notices) for b in self._open.values()) + len(self._ready)
