"""Where one channel's work may stop, and what it is sending: shared by its worker (worker.py),
which waits and picks the next message, and its retry stage (stages.py), which makes attempts.

Stopping sets ``stopping``: no new attempt or message begins after it. The worker and the retry
stage mark the places where cancelling them loses nothing ("at rest": idle, or a backoff between
attempts); the service waits for that before it cancels them, so an attempt under way ends and
its outcome is recorded.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

from .group import Batch

__all__ = ["ChannelLifecycle"]

T = TypeVar("T")


class ChannelLifecycle:
    def __init__(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.sleep = sleep
        self.stopping = False
        self._at_rest = asyncio.Event()
        # The message in the retry stage, the failures of its attempts so far, and whether an
        # attempt is under way: what a stop reports as retrying or sending.
        self.sending: Batch | None = None
        self.errors: list[str] = []
        self.attempting = False

    async def resting(self, aw: Awaitable[T]) -> T:
        """Awaits ``aw`` at rest: a stop may cancel it there."""
        self._at_rest.set()
        try:
            return await aw
        finally:
            self._at_rest.clear()

    async def backoff(self, delay: float) -> None:
        """The wait between two attempts: a place to stop (the next attempt is not made)."""
        self._at_rest.set()
        try:
            await self.sleep(delay)
            if self.stopping:
                await self.park()
        finally:
            self._at_rest.clear()

    async def park(self) -> None:
        """Waits, at rest, to be cancelled by the service's stop."""
        self._at_rest.set()
        await asyncio.Event().wait()

    async def at_rest(self) -> None:
        """Returns once the channel waits where cancelling it loses nothing."""
        await self._at_rest.wait()

    def begin_send(self, batch: Batch) -> list[str]:
        self.sending, self.errors = batch, []
        return self.errors

    def end_send(self) -> None:
        self.sending, self.errors, self.attempting = None, [], False
