"""Follows the compacted ``scenarios`` topic: the scenarios in force, for the engine, notify and web
roles (streams/follow.py: read whole at start, then followed; bad records dead-lettered, skipped).

``on_scenarios(scenarios)`` hears the whole new set after each batch of records that changed it,
in the topic's order (the order ``scenarios apply`` wrote the file in).
"""

from __future__ import annotations

import logging
from typing import Callable

from ratiowatch.config import parse_scenario_record
from ratiowatch.errors import ConfigError
from ratiowatch.model import Scenario
from ratiowatch.streams.topics import SCENARIOS
from ratiowatch.streams.follow import BadControlRecord, TopicFollower
from ratiowatch.streams.kafka_settings import KafkaSecurity

__all__ = ["ScenarioFollower"]

log = logging.getLogger(__name__)


class ScenarioFollower(TopicFollower):
    def __init__(self, *, bootstrap: str, role: str, sec: KafkaSecurity | None = None,
                 on_scenarios: Callable[[tuple[Scenario, ...]], None] | None = None,
                 on_bad_record: Callable[[str], None] | None = None, catch_up_s: float = 60.0) -> None:
        super().__init__(SCENARIOS, self._apply, bootstrap=bootstrap, role=role, sec=sec,
                         on_bad_record=on_bad_record, on_change=self._changed, catch_up_s=catch_up_s)
        self.by_id: dict[str, Scenario] = {}
        self.on_scenarios = on_scenarios
        self._told: tuple[Scenario, ...] | None = None

    @property
    def scenarios(self) -> tuple[Scenario, ...]:
        return tuple(self.by_id.values())

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            sc = parse_scenario_record(key, value, SCENARIOS)
        except ConfigError as e:
            raise BadControlRecord(str(e)) from None
        sid = key.decode() if key is not None else ""
        if sc is None:
            self.by_id.pop(sid, None)
        else:
            # A changed scenario keeps its place; an added one goes last, as apply wrote it.
            self.by_id[sid] = sc

    def _changed(self) -> None:
        now = self.scenarios
        if now == self._told:
            return
        self._told = now
        if self.on_scenarios is not None:
            self.on_scenarios(now)
