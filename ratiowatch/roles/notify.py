"""The ``notify`` role: consumes ``events`` in its own consumer group and fans each trigger event
out to its channels (notifiers/: routing, grouping, dedup, retries, dead letters, deliveries).

It follows the ``scenarios`` topic (roles/scenarios.py; with ``follow_scenarios``), so what it
routes changes live; an event evaluated under a scenario version it has not read yet waits for it.
It follows the ``silences`` topic (roles/silences.py) and reads it to its end before it consumes
``events``: a notification that a silence mutes when it would be sent is recorded as ``silenced``
on ``deliveries`` instead (the mute stage, notifiers/stages.py).

It has its own faust app (app id ``ratiowatch-notify``, so its own group and committed offsets),
and can be scaled: the group splits the ``events`` partitions between processes. It shares
nothing with the engine but the topics.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
from pathlib import Path
from dataclasses import replace
from typing import Any

import orjson

from ratiowatch.roles.notify_agent import install_notifier
from ratiowatch.model import Config, Scenario
from ratiowatch.notifiers.chart import history_from_folder
from ratiowatch.notifiers.retry import RetryPolicy
from ratiowatch.notifiers.service import NotificationService, describe_unsent
from ratiowatch.ops.faust_sensors import install_faust_monitor
from ratiowatch.ops.health import Health
from ratiowatch.ops.metrics import Metrics
from ratiowatch.roles.scenarios import ScenarioFollower
from ratiowatch.roles.silences import SilenceFollower
from ratiowatch.roles.startup_watch import StartupBounds, start_watched, watch_startup
from ratiowatch.streams.topics import DELIVERIES, EVENTS, NOTIFICATIONS_DLQ, SCENARIOS, SILENCES
from ratiowatch.streams.app import create_app
from ratiowatch.streams.kafka_settings import KafkaSecurity, faust_app_kwargs, load_kafka_security
from ratiowatch.streams.member_state import coordination_error, crash_reason, member_state
from ratiowatch.track_record import track_records_from_history

__all__ = ["NotifyRole", "NOTIFY_APP_ID"]

NOTIFY_APP_ID = "ratiowatch-notify"

log = logging.getLogger(__name__)


class NotifyRole:
    """``bootstrap``: the cluster; ``history_dir``: closes for the alert charts (without it, a
    chart is drawn from nothing and the message goes without one); ``datadir``: where the dedup
    record and the inbox live (a temporary folder with ``ephemeral``: an embedded broker's
    events die with the process, and so must the record of what was sent for them)."""

    def __init__(self, config: Config, *, bootstrap: str, partitions: int | None = None,
                 history_dir: str | None = None, datadir: str | None = None, ephemeral: bool = False,
                 app_id: str = NOTIFY_APP_ID, metrics: Metrics | None = None, health: Health | None = None,
                 app_settings: dict[str, Any] | None = None, retry: RetryPolicy | None = None,
                 follow_scenarios: bool = False) -> None:
        # Following the `scenarios` topic, the scenarios routed are the topic's, changed live; the
        # file gives the channels and settings (secrets never go on a topic).
        if follow_scenarios:
            config = replace(config, scenarios=())
        self.config = config
        self.history_dir = history_dir
        self.partitions = partitions or config.settings.partitions
        extra: dict[str, Any] = {}
        sec = KafkaSecurity()  # an embedded broker in this process speaks plaintext
        if not ephemeral:
            sec = load_kafka_security()
            extra = faust_app_kwargs(sec)
        self.app = create_app(f"kafka://{bootstrap}", partitions=self.partitions, app_id=app_id,
                              datadir=datadir, **extra, **(app_settings or {}))
        self.bootstrap = bootstrap
        self.startup = StartupBounds()  # how long start() waits for partitions of `events`
        self._stopped = False
        self.metrics = metrics if metrics is not None else Metrics()
        self.health = health if health is not None else Health()
        self.metrics.add_role("notify")
        self.app_id = app_id
        # Its own prefix: with `ratiowatch run` the engine's faust app shares this registry.
        monitor = install_faust_monitor(self.app, self.metrics, prefix="faust_notify")
        self.metrics.add_lag_source(app_id, monitor.consumer_lag)
        self.health.add_ready_check("notify", monitor.readiness)
        self.handled = 0  # events handed to the service

        topics = {name: self.app.topic(name, key_serializer="raw", value_serializer="raw")
                  for name in (DELIVERIES, NOTIFICATIONS_DLQ)}

        async def publish(topic: str, key: bytes | None, value: bytes) -> None:
            await topics[topic].send(key=key, value=value)
            if topic == DELIVERIES:  # every attempt and its outcome passes here (notifiers/records.py)
                rec = orjson.loads(value)
                self.metrics.notifications.labels(channel=rec["channel"], outcome=rec["outcome"]).inc()

        tz = config.settings.session_timezone
        history_for = history_from_folder(history_dir, tz, config.settings.signed_symbols) if history_dir else None
        folder = self._folder(bootstrap, ephemeral)
        # What each trigger did over the history, told with each firing: at start, never per event.
        records = track_records_from_history(config, history_dir) if history_dir and config.scenarios else None
        # Silences mute at send time (the mute stage, notifiers/stages.py); a bad record on `silences` is skipped
        # and the last good silences stay in force.
        self.silences = SilenceFollower(bootstrap=bootstrap, role="notify", sec=sec,
                                        on_bad_record=self._bad_silence)
        self.service = NotificationService(config, publish, history_for=history_for,
                                           store_path=str(folder / "notifications.sqlite"), retry=retry,
                                           track_records=records, muted=self.silences.muted)
        events = self.app.topic(EVENTS, key_serializer="raw", value_serializer="raw", partitions=self.partitions)

        async def handle(event: dict[str, Any]) -> None:
            if self.follower is not None and self._unknown_version(event):
                # The engine evaluated it under a scenario version this process has not read yet
                # (just applied): it is on the topic already, so catching up finds it.
                await self.follower.sync()
            await self.service.handle(event)
            self.handled += 1

        install_notifier(self.app, events, handle, pending=lambda: self.service.pending,
                         inbox_path=folder / "inbox.sqlite", on_bad_record=self._bad_record)
        self.bad_records = 0  # on events
        self.bad_silences = 0
        self.follower: ScenarioFollower | None = None
        if follow_scenarios:
            self.follower = ScenarioFollower(bootstrap=bootstrap, role="notify", sec=sec,
                                             on_scenarios=self._scenarios_in_force, on_bad_record=self._bad_scenario)
        self._tracks: dict[str, Any] = dict(records or {})

    # --- the scenarios topic ----------------------------------------------------------------------

    def _unknown_version(self, event: dict[str, Any]) -> bool:
        v = event.get("scenario_version") if isinstance(event, dict) else None
        sc = self.follower.by_id.get(event.get("scenario")) if isinstance(event, dict) and self.follower else None
        return v is not None and (sc is None or sc.version != v)

    def _scenarios_in_force(self, scenarios: tuple[Scenario, ...]) -> None:
        channels = self.config.channels
        routed = []
        for sc in scenarios:
            missing = [n for n in sc.notify if n not in channels]
            if missing:
                log.error("notify: scenario %s names channel(s) %s, which %s does not define: it is notified on "
                          "the others only (define them there, or apply the scenario without them)",
                          sc.id, ", ".join(missing), self.config.path)
                sc = replace(sc, notify=tuple(n for n in sc.notify if n in channels))
            routed.append(sc)
        old = {sc.id for sc in self.config.scenarios}
        self.config = replace(self.config, scenarios=tuple(routed))
        added = [sc for sc in routed if sc.id not in old]
        if added and self.history_dir is not None:
            # Track records of the new ones (a backtest: seconds) off the loop; the alerts of a
            # scenario go without its record until it is there.
            loop = asyncio.get_running_loop()
            sub = replace(self.config, scenarios=tuple(added))
            fut = loop.run_in_executor(None, track_records_from_history, sub, self.history_dir)
            fut.add_done_callback(self._tracks_ready)
        self.service.set_config(self.config, track_records=self._tracks)
        log.info("notify: %d scenarios in force from %s", len(routed), SCENARIOS)

    def _tracks_ready(self, fut: Any) -> None:
        if fut.cancelled() or fut.exception() is not None:
            log.warning("notify: no track records for the added scenarios: %r", None if fut.cancelled() else fut.exception())
            return
        self._tracks.update(fut.result())
        self.service.set_config(self.config, track_records=self._tracks)

    def _bad_scenario(self, why: str) -> None:
        self.metrics.bad_records.labels(role="notify", topic=SCENARIOS).inc()

    def _bad_record(self, why: str) -> None:
        self.bad_records += 1
        self.metrics.bad_records.labels(role="notify", topic=EVENTS).inc()

    def _bad_silence(self, why: str) -> None:
        self.bad_silences += 1
        self.metrics.bad_records.labels(role="notify", topic=SILENCES).inc()

    def _folder(self, bootstrap: str, ephemeral: bool) -> Path:
        """The dedup record and the inbox must live exactly as long as the events they account
        for: a folder per cluster (a restarted `ratiowatch broker` is a new cluster on a new port,
        with new events), and a temporary one for a broker inside this process."""
        if ephemeral:
            self._tmp = tempfile.TemporaryDirectory(prefix="ratiowatch-notify-")
            return Path(self._tmp.name)
        cluster = hashlib.sha256(bootstrap.encode()).hexdigest()[:12]
        folder = Path(self.app.conf.datadir) / f"notifications-{cluster}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    async def start(self) -> None:
        # Silences first, read to their end: nothing may be sent that a silence written before
        # this process started mutes.
        await self.silences.start()
        try:
            if self.follower is not None:
                await self.follower.start()  # the scenarios in force, before the first event
            await self.service.start()
        except BaseException:
            await self.silences.stop()
            if self.follower is not None:
                await self.follower.stop()
            raise
        try:
            await start_watched(self.app.start(), watch_startup(lambda: member_state(self.app), self.startup,
                                                                group=f"{self.app_id!r} at {self.bootstrap}"))
        except BaseException:
            # Stopped here, whoever started it: a faust app left running keeps its consumer thread
            # (not a daemon) alive, and the process would hang at exit instead of being restarted.
            await self.stop()
            raise

    def coordination_error(self) -> str | None:
        """Why this member stopped being able to work for good: its app crashed, or its group
        coordination stopped (see streams/member_state.py)."""
        return crash_reason(self.app) or coordination_error(self.app)

    async def drain(self, timeout: float) -> None:
        await self.service.drain(timeout=timeout)

    async def stop(self) -> None:
        if self._stopped:
            return  # a start that failed stopped it already
        self._stopped = True
        try:
            await self.app.stop()
        finally:
            await self.service.stop()
            self._report_unsent()
            await self.silences.stop()
            if self.follower is not None:
                await self.follower.stop()
            self.metrics.remove_lag_source(self.app_id)

    def _report_unsent(self) -> None:
        """At stop: what the channels had not sent, and where it resumes. The truth of the second
        part is roles/notify_agent.py's: an event's offset on ``events`` is committed while its notices
        may still be retrying, so the committed offset does not bring them back; the event is kept
        in the inbox beside the dedup record until every notice is settled, and a notify role
        started on that folder hands the inbox to the channels again."""
        text = describe_unsent(self.service.unsent)
        if not text:
            log.info("notify: stopped with no notification pending")
            return
        folder = Path(self.service.store_path).parent
        if getattr(self, "_tmp", None) is not None:
            where = ("they will not be sent: the embedded broker, its events and this role's inbox end with this "
                     "process (run against a broker, --broker kafka://HOST:PORT, to keep them)")
        else:
            where = (f"they resume from the inbox {folder / 'inbox.sqlite'}, not from the committed `events` offset "
                     "(already past them): a notify role started again with this data dir against this cluster "
                     "sends them (an event whose offset was not committed yet is also read again); the dedup "
                     f"record {folder / 'notifications.sqlite'} keeps what was delivered from going twice")
        log.warning("notify: stopping with %s. %s", text, where)
