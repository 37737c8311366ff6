"""The channels side by side: one worker task per channel, so a slow Slack send never holds up
an email (Alertmanager's ``FanoutStage``, with a task per channel for its goroutine per
integration). Handing a notice to a channel only appends to its inbox and never waits.
"""

from __future__ import annotations

import asyncio
import logging

from .group import Batch
from .route import Notice
from .unsent import Unsent
from .worker import ChannelWorker

__all__ = ["Fanout"]

log = logging.getLogger("ratiowatch.notifiers")


class Fanout:
    def __init__(self) -> None:
        self.workers: dict[str, ChannelWorker] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def __contains__(self, channel: str) -> bool:
        return channel in self.workers

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def start(self, worker: ChannelWorker) -> None:
        self.workers[worker.name] = worker
        task = asyncio.create_task(worker.run(), name=f"notify-{worker.name}")
        task.add_done_callback(_report_crash)
        self._tasks.append(task)

    def put(self, channel: str, item: Notice | Batch) -> None:
        self.workers[channel].put(item)

    def unsent(self) -> list[Unsent]:
        """Every message the channels hold and have not sent, now."""
        return [u for w in self.workers.values() for u in w.unsent()]

    async def stop(self, grace_s: float) -> list[Unsent]:
        """Stops every channel: none begins anything new, an attempt under way may end first (for
        at most ``grace_s``), then the tasks are cancelled. What was not sent."""
        unsent: list[Unsent] = []
        if self._tasks:
            for w in self.workers.values():
                w.lifecycle.stopping = True
            waits = [asyncio.ensure_future(w.at_rest()) for w in self.workers.values()]
            _done, late = await asyncio.wait(waits, timeout=grace_s)
            for t in late:
                t.cancel()
            unsent = self.unsent()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.workers.clear()
        return unsent


def _report_crash(task: "asyncio.Task[None]") -> None:
    # A worker handles its own errors per message; ending any other way is a bug worth shouting about.
    if not task.cancelled() and task.exception() is not None:
        log.critical("notification worker %s stopped: %r", task.get_name(), task.exception())
