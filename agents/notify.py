"""The notifier agent: consumes ``events`` and hands each event to the notification service.

It is a separate consumer of the events topic, not a call from the evaluating agent, so a slow
or failing channel never holds up crossings (and a downstream service sees exactly what the
notifiers see).
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

import faust
import orjson

__all__ = ["install_notifier"]

log = logging.getLogger(__name__)


def install_notifier(app: faust.App, events_topic: faust.TopicT,
                     handle: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    async def notify(stream: faust.StreamT) -> None:
        async for raw in stream:
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError:
                log.error("events: skipping a record that is not JSON (%d bytes)", len(raw))
                continue
            await handle(event)

    app.agent(events_topic, name="ratiowatch.notify")(notify)
