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

from ratiowatch.notifiers.exceptions import InvalidEvent

__all__ = ["install_notifier"]

log = logging.getLogger(__name__)


def install_notifier(app: faust.App, events_topic: faust.TopicT,
                     handle: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    async def notify(stream: faust.StreamT) -> None:
        async for raw in stream:
            try:
                await handle(orjson.loads(raw))
            except (orjson.JSONDecodeError, InvalidEvent) as e:
                # Not ours to fix here: the record stays on the topic for whoever wrote it to see.
                log.error("events: skipping a record the notifiers cannot use (%d bytes): %s", len(raw), e)

    app.agent(events_topic, name="ratiowatch.notify")(notify)
