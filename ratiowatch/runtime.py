"""Wiring for one ratiowatch process: broker (embedded or external), faust app, agents, sources.

Commands (run, replay, bench, chaos) and tests build a :class:`Runtime` and run it inside their
own event loop; nothing here parses arguments.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import faust

from ratiowatch.agents.pipeline import Pipeline
from ratiowatch.config import Config
from ratiowatch.streams import topics as T
from ratiowatch.streams.app import create_app, ensure_topics, ensure_topics_exist
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.kafka_settings import faust_app_kwargs, kafka_python_kwargs, load_kafka_security

if TYPE_CHECKING:
    from ratiowatch.notifiers.service import NotificationService

__all__ = ["Runtime"]

log = logging.getLogger(__name__)


class Runtime:
    """One worker: ``broker_url`` None starts an embedded broker in this process."""

    def __init__(self, config: Config, *, broker_url: str | None = None, partitions: int | None = None,
                 app_id: str = T.APP_ID, datadir: str | None = None,
                 app_settings: dict[str, Any] | None = None, seed: dict[str, Any] | None = None) -> None:
        self.config = config
        self.partitions = partitions or config.settings.partitions
        self.embedded: EmbeddedBroker | None = None
        self.client_kwargs: dict[str, Any] = {}  # for plain kafka-python clients of this cluster
        self.notified = 0  # events handed to the notification service
        if broker_url is None:
            self.embedded = EmbeddedBroker()
            broker_url = self.embedded.url
        self.broker_url = broker_url
        self.bootstrap = broker_url.removeprefix("kafka://")
        self.app_id = app_id
        extra = dict(app_settings or {})
        security = None
        if self.embedded is not None:
            ensure_topics(self.embedded, self.partitions, app_id)
        else:
            # A real cluster may need TLS/SASL: from env only, never from the scenario file.
            security = load_kafka_security()
            self.client_kwargs = kafka_python_kwargs(security)
            ensure_topics_exist(self.bootstrap, self.partitions, app_id, **self.client_kwargs)
            extra = {**faust_app_kwargs(security), **extra}
        self.app: faust.App = create_app(broker_url, partitions=self.partitions, app_id=app_id, datadir=datadir,
                                         **extra)
        self.pipeline = Pipeline(self.app, config, shards=self.partitions, bootstrap=self.bootstrap,
                                 security=security, seed=seed)

    def notification_service(self, history_dir: str | None = None) -> "NotificationService":
        """The fan-out service for this worker, fed by the notifier agent on ``events`` and
        publishing its audit records through the app's producer. The chart comes from the history
        folder when given, else from the live state (the longest lookback's worth of closes)."""
        from ratiowatch.agents.notify import install_notifier
        from ratiowatch.notifiers.chart import history_from_folder
        from ratiowatch.notifiers.service import NotificationService

        topics = {name: self.app.topic(name, key_serializer="raw", value_serializer="raw")
                  for name in (T.DELIVERIES, T.NOTIFICATIONS_DLQ)}

        async def publish(topic: str, key: bytes | None, value: bytes) -> None:
            await topics[topic].send(key=key, value=value)

        tz = self.config.settings.session_timezone
        history_for = (history_from_folder(history_dir, tz, self.config.settings.signed_symbols) if history_dir
                       else self.pipeline.trigger_history)
        folder = self._notifier_dir()
        service = NotificationService(self.config, publish, history_for=history_for,
                                      store_path=str(folder / "notifications.sqlite"))

        async def handle(event: dict[str, Any]) -> None:
            await service.handle(event)
            self.notified += 1

        install_notifier(self.app, self.pipeline.events_topic, handle, pending=lambda: service.pending,
                         inbox_path=folder / "inbox.sqlite")
        return service

    def _notifier_dir(self) -> Path:
        """Where the dedup record and the inbox live. They must live exactly as long as the events
        they account for: a folder per cluster (a restarted `ratiowatch broker` is a new cluster on
        a new port, with new events), and a temporary one for a broker inside this process, which
        dies with it."""
        if self.embedded is not None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ratiowatch-")
            return Path(self._tmp.name)
        cluster = hashlib.sha256(self.bootstrap.encode()).hexdigest()[:12]
        folder = Path(self.app.conf.datadir) / f"notifications-{cluster}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    async def start(self) -> None:
        await self.app.start()
        # faust starts agents before partitions are assigned; wait until this worker owns its shards.
        await self.wait_assigned()

    async def wait_assigned(self, timeout: float = 60.0) -> None:
        """Until this worker owns shard partitions and has recovered their state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            consumer = self.app.consumer
            if consumer is not None and consumer.assignment() and not self.app.rebalancing \
                    and self.app.tables.recovery.completed.is_set():
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the worker got no partitions within {timeout:g}s: is {self.bootstrap} reachable?")

    async def stop(self) -> None:
        try:
            await self.app.stop()
        finally:
            if self.embedded is not None:
                self.embedded.stop()
                self.embedded = None

