"""Follows the compacted ``silences`` topic into a :class:`SilenceSet`, for the notify and web roles
(streams/follow.py: read whole at start, then followed; bad records dead-lettered and skipped)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable

from ratiowatch.notifiers.silences import SilenceError, SilenceSet, state
from ratiowatch.streams.topics import SILENCES
from ratiowatch.streams.follow import BadControlRecord, TopicFollower
from ratiowatch.streams.kafka_settings import KafkaSecurity

__all__ = ["SilenceFollower"]

log = logging.getLogger(__name__)


class SilenceFollower(TopicFollower):
    def __init__(self, *, bootstrap: str, role: str, sec: KafkaSecurity | None = None,
                 on_bad_record: Callable[[str], None] | None = None,
                 on_change: Callable[[], None] | None = None, catch_up_s: float = 60.0) -> None:
        super().__init__(SILENCES, self._apply, bootstrap=bootstrap, role=role, sec=sec,
                         on_bad_record=on_bad_record, on_change=on_change, catch_up_s=catch_up_s)
        self.silences = SilenceSet()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            s = self.silences.apply(key, value)
        except SilenceError as e:
            raise BadControlRecord(str(e)) from None
        if s is not None:
            # When this process took a silence (or its expiry) into force: a notification sent
            # just before the line was not muted by it, one just before its expiry still was.
            log.info("%s: silence %s on %s: %s until %s", self.role, s.id, ", ".join(s.matchers),
                     state(s, datetime.now(timezone.utc)), s.ends_at.isoformat(timespec="milliseconds"))

    def muted(self, scenario: str, epoch_s: float) -> str | None:
        """The id of a silence muting ``scenario`` at ``epoch_s``, or None (NotificationService's ``muted``)."""
        s = self.silences.muting(scenario, datetime.fromtimestamp(epoch_s, timezone.utc))
        return s.id if s is not None else None
