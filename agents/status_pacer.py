"""When the engine publishes a scenario's status on ``scenario-status``. Pure.

The web role builds its page from that compacted topic (one record per scenario id, the latest
wins), so every web process shows every scenario whatever engine owns it. A status goes out at
once when the scenario crossed (the page must not lag an alert), otherwise at most once per
``every_s`` per scenario however many ticks touch it, and once for every scenario of a shard
the engine takes over (so the page has each scenario as soon as an engine owns it).
"""

from __future__ import annotations

__all__ = ["StatusPacer"]


class StatusPacer:
    __slots__ = ("every_s", "_dirty", "_sent_at")

    def __init__(self, every_s: float = 1.0) -> None:
        self.every_s = every_s
        self._dirty: dict[str, int] = {}       # scenario id -> its shard, changed since last sent
        self._sent_at: dict[str, float] = {}   # scenario id -> when its status last went out

    def touched(self, shard: int, scenarios: set[str] | list[str]) -> None:
        for sid in scenarios:
            self._dirty[sid] = shard

    def crossed(self, shard: int, sid: str) -> None:
        """A crossing: due at the next :meth:`due`, whenever the last status went out."""
        self._dirty[sid] = shard
        self._sent_at.pop(sid, None)

    def forget(self, shards: set[int]) -> None:
        """Shards revoked: their new owner publishes them."""
        self._dirty = {sid: n for sid, n in self._dirty.items() if n not in shards}

    def due(self, now: float) -> list[tuple[int, str]]:
        """(shard, scenario id) to publish now; they count as sent."""
        out = []
        for sid, n in list(self._dirty.items()):
            at = self._sent_at.get(sid)
            if at is None or now - at >= self.every_s:
                out.append((n, sid))
                self._sent_at[sid] = now
                del self._dirty[sid]
        return out
