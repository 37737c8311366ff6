"""The ``web`` role: the status page, ``/status`` and ``/ws``, built from topics alone.

It reads ``scenario-status`` (compacted, one record per scenario) from the beginning and then
follows it and ``events``, with partitions assigned by hand: it is in no consumer group, so every
web process sees every scenario whatever engine owns it, and a restarted one rebuilds the whole
page from the topic within seconds. It is ready (``/readyz``) once it has read ``scenario-status``
to the end offsets it found at start.

A record it cannot use (not JSON, no scenario id) is counted, logged with its offset and skipped:
a bad record on a topic must not take the page down.

It also follows ``silences`` (roles/silences.py): each status it shows carries ``muted`` (until
when, which silence, its comment and author; null when no silence matches), re-published when a
silence is added or expired and when one runs out; and it serves the silence API
(roles/silence_api.py) on the ops server, writing silences with its own producer.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any, Iterable

import orjson

from ratiowatch.ops.health import Health
from ratiowatch.notifiers.silences import Silence, encode
from ratiowatch.ops.metrics import Metrics
from ratiowatch.roles.silence_api import SilenceApi, mute_json
from ratiowatch.roles.scenarios import ScenarioFollower
from ratiowatch.roles.silences import SilenceFollower
from ratiowatch.streams.topics import EVENTS, SCENARIOS, SCENARIO_STATUS, SILENCES
from ratiowatch.streams.clients import aio_consumer, aio_producer, topic_partitions
from ratiowatch.streams.kafka_settings import KafkaSecurity
from ratiowatch.streams.live import LiveHub

__all__ = ["WebRole", "RECENT_EVENTS"]

log = logging.getLogger(__name__)

RECENT_EVENTS = 100  # per partition of ``events``: the crossings a fresh page starts with
MUTE_CHECK_S = 1.0   # how soon a card stops saying "muted" after its silence runs out


class WebRole:
    def __init__(self, hub: LiveHub, *, bootstrap: str, sec: KafkaSecurity | None = None,
                 metrics: Metrics | None = None, health: Health | None = None, client_id: str = "ratiowatch-web",
                 scenarios: Iterable[tuple[str, str]] | None = None, follow_scenarios: bool = False) -> None:
        """``scenarios``: (id, title) of the scenarios in force, which the page shows from its first
        paint and the silence API lets a silence name (default: those with a status on the
        topic). ``follow_scenarios``: they are the ``scenarios`` topic's, followed live (a
        removed scenario's card goes away)."""
        self.hub = hub
        self.bootstrap = bootstrap
        self.sec = sec
        self.client_id = client_id
        self.metrics = metrics if metrics is not None else Metrics()
        self.health = health if health is not None else Health()
        self.metrics.add_role("web")
        self.ready = self.health.ready_flag("web", "scenario-status not read to its end yet")
        self.counters = {"statuses": 0, "events": 0, "bad_records": 0}
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None
        self._configured = list(scenarios) if scenarios is not None else None
        self._statuses: dict[str, dict] = {}  # latest status per scenario as read, before its mute is added
        self._shown_mute: dict[str, Any] = {}
        self.silences = SilenceFollower(bootstrap=bootstrap, role="web", sec=sec, on_bad_record=self._bad_silence,
                                        on_change=self._refresh_mutes)
        self._producer: Any = None
        self._mute_task: asyncio.Task[None] | None = None
        hub.api = SilenceApi(self.silences.silences, self._scenarios, self._write_silence)
        self.follower: ScenarioFollower | None = None
        self._in_force: set[str] = set()
        # Statuses of scenarios not in force when read, the latest per id: an engine can publish a
        # just-applied scenario's first status before this process has read the scenario itself.
        self._early: dict[str, dict] = {}
        if follow_scenarios:
            self._configured = []
            self.follower = ScenarioFollower(bootstrap=bootstrap, role="web", sec=sec,
                                             on_scenarios=self._scenarios_in_force, on_bad_record=self._bad_scenario)

    def _scenarios_in_force(self, scenarios: tuple[Any, ...]) -> None:
        now = {s.id: s.title for s in scenarios}
        for sid, _ in self._configured or ():
            if sid not in now:
                self._statuses.pop(sid, None)
                self._shown_mute.pop(sid, None)
                self.hub.publish_status({"type": "status", "scenario": sid, "removed": True})
        self._configured = list(now.items())
        self._in_force = set(now)
        self.hub.fanout.set_order(now)
        versions = {s.id: s.version for s in scenarios}
        for sid, title in self._configured:
            if sid in self._statuses:
                continue
            early = self._early.pop(sid, None)
            if early is not None and early.get("scenario_version") == versions[sid]:
                self._statuses[sid] = early  # this version's status, read before the scenario was
                self._show(sid, self._mute(sid))
            else:
                self.hub.publish_status({"type": "status", "scenario": sid, "title": title, "pending": True})

    def _bad_scenario(self, why: str) -> None:
        self.counters["bad_records"] += 1
        self.metrics.bad_records.labels(role="web", topic=SCENARIOS).inc()

    async def start(self) -> None:
        # Every configured scenario has its card from the first paint, saying it waits for the
        # engine until its status is read (a status from the topic replaces it).
        for sid, title in self._configured or ():
            self.hub.publish_status({"type": "status", "scenario": sid, "title": title, "pending": True})
        if self.follower is not None:
            await self.follower.start()  # publishes the pending cards of the scenarios in force
        # Silences first: the first statuses shown already say whether they are muted.
        await self.silences.start()
        try:
            await self._start_statuses()
        except BaseException:
            await self.silences.stop()
            if self.follower is not None:
                await self.follower.stop()
            raise
        self._mute_task = asyncio.create_task(self._expire_mutes(), name="web-mutes")

    async def _start_statuses(self) -> None:
        from aiokafka import TopicPartition

        c = self._consumer = aio_consumer(self.bootstrap, client_id=self.client_id, sec=self.sec)
        await c.start()
        try:
            tps = []
            for topic in (SCENARIO_STATUS, EVENTS):
                parts = await self._partitions(topic)
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            c.assign(tps)
            begin = await c.beginning_offsets(tps)
            end = await c.end_offsets(tps)
            for tp in tps:
                start = begin[tp] if tp.topic == SCENARIO_STATUS else max(begin[tp], end[tp] - RECENT_EVENTS)
                c.seek(tp, start)
        except BaseException:
            await c.stop()
            raise
        self._todo = {tp: end[tp] for tp in tps if tp.topic == SCENARIO_STATUS and end[tp] > begin[tp]}
        if not self._todo:
            self.ready.ready()
        self._task = asyncio.create_task(self._follow(), name="web-follow")

    async def _partitions(self, topic: str) -> set[int]:
        parts = await topic_partitions(self._consumer, topic)
        if not parts:
            raise RuntimeError(f"topic {topic!r} not found at {self.bootstrap}: create the topics first "
                               "(ratiowatch topics --create, or an engine on this cluster)")
        return parts

    async def _follow(self) -> None:
        c = self._consumer
        while True:
            batches = await c.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for r in records:
                    self._take(tp.topic, r)
                if self._todo and tp in self._todo and r.offset + 1 >= self._todo[tp]:
                    del self._todo[tp]
                    if not self._todo:
                        self.ready.ready()
                        log.info("web: scenario-status read to its end (%d statuses)", self.counters["statuses"])

    def _take(self, topic: str, r: Any) -> None:
        if r.value is None:  # a tombstone: the scenario was removed
            if topic == SCENARIO_STATUS and r.key is not None:
                sid = r.key.decode("utf-8", "replace")
                self._early.pop(sid, None)
                if self._statuses.pop(sid, None) is not None:
                    self.hub.publish_status({"type": "status", "scenario": sid, "removed": True})
            return
        try:
            doc = orjson.loads(r.value)
            if not isinstance(doc, dict) or not isinstance(doc.get("scenario"), str):
                raise ValueError("no scenario id")
        except (orjson.JSONDecodeError, ValueError) as e:
            self.counters["bad_records"] += 1
            self.metrics.bad_records.labels(role="web", topic=topic).inc()
            log.warning("web: skipping a record on %s partition %d offset %d: %s", topic, r.partition, r.offset, e)
            return
        if topic == SCENARIO_STATUS:
            if self.follower is not None and doc["scenario"] not in self._in_force:
                # Written before its scenario was removed (its card must not come back), or after
                # it was applied and before this process read that: kept until it is in force.
                self._early[doc["scenario"]] = doc
                return
            self.counters["statuses"] += 1
            self._statuses[doc["scenario"]] = doc
            self._show(doc["scenario"], self._mute(doc["scenario"]))
        else:
            self.counters["events"] += 1
            self.hub.publish_event(doc)

    # --- silences ------------------------------------------------------------------------------

    def _mute(self, scenario: str) -> dict[str, Any] | None:
        return mute_json(self.silences.silences.muting(scenario, datetime.now(timezone.utc)))

    def _show(self, scenario: str, mute: dict[str, Any] | None) -> None:
        self._shown_mute[scenario] = mute
        self.hub.publish_status({**self._statuses[scenario], "muted": mute})

    def _refresh_mutes(self) -> None:
        """Re-publish the statuses whose mute changed (a silence added, expired or run out)."""
        for sid in self._statuses:
            mute = self._mute(sid)
            if mute != self._shown_mute.get(sid):
                self._show(sid, mute)

    async def _expire_mutes(self) -> None:
        while True:  # a silence runs out without a record on the topic: look every second
            await asyncio.sleep(MUTE_CHECK_S)
            self._refresh_mutes()

    def _bad_silence(self, why: str) -> None:
        self.counters["bad_records"] += 1
        self.metrics.bad_records.labels(role="web", topic=SILENCES).inc()

    def _scenarios(self) -> list[tuple[str, str]]:
        if self._configured is not None:
            return self._configured
        return [(sid, str(st.get("title") or sid)) for sid, st in self._statuses.items()]

    async def _write_silence(self, s: Silence) -> None:
        """Put ``s`` on the topic (acknowledged by the cluster), and in force here at once: the
        answer to a POST must hold for the GET that follows it."""
        if self._producer is None:
            self._producer = aio_producer(self.bootstrap, client_id=f"{self.client_id}-silences", sec=self.sec)
            await self._producer.start()
        key, value = encode(s)
        await self._producer.send_and_wait(SILENCES, value, key=key)
        self.silences.silences.put(s)
        self._refresh_mutes()

    async def stop(self) -> None:
        for task in (self._task, self._mute_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        await self.silences.stop()
        if self.follower is not None:
            await self.follower.stop()
