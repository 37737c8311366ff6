"""Prometheus metrics of every ratiowatch role, on one registry per :class:`Metrics` object.

Design: a process makes ONE :class:`Metrics` (it owns a private ``CollectorRegistry``, never the
global ``prometheus_client.REGISTRY``) and hands it to each role it hosts. ``ratiowatch run``
hosts all four roles in one process, so they share the object and ``/metrics`` shows them all;
a role command alone makes its own. Tests make a fresh one each and read exact values with
:meth:`Metrics.value`, isolated from anything else in the interpreter.

Names follow Prometheus conventions: ``ratiowatch_`` prefix, snake_case, ``_total`` counters,
``_seconds`` units, labels for dimensions (bounded sets: a reason code, an event kind, a
channel, an outcome), never one metric per value. faust's own sensors, when installed
(:mod:`ratiowatch.ops.faust_sensors`), go into the same registry under the ``faust_`` prefix.

Values that only exist at scrape time (consumer lag, readiness, live hub clients) come from
callables read by custom collectors when Prometheus scrapes, so a value from a partition this
process no longer owns cannot linger: if the callable stops reporting it, it is gone.
"""

from __future__ import annotations

import logging
import platform
from importlib import metadata
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ratiowatch.streams.live import LiveHub

    from .health import Health

__all__ = ["Metrics", "HealthCollector", "LiveHubCollector", "LagSource", "TICK_TO_EVENT_BUCKETS", "ROLES"]

log = logging.getLogger(__name__)

ROLES = ("engine", "notify", "web", "source")

# From a tick applied on the same host (~1 ms) to a worker catching up after a restart (~10 s).
TICK_TO_EVENT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# () -> [(topic, partition, lag in records), ...] for what this consumer owns right now.
LagSource = Callable[[], Iterable[tuple[str, int, int]]]


class Metrics:
    """Every ratiowatch metric of one process (see the module docstring). Roles update the
    public attributes directly, e.g. ``metrics.ticks_in.inc(len(batch))`` or
    ``metrics.dead_lettered.labels(reason="late").inc()``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # --- source ---
        self.source_ticks_sent = Counter(
            "ratiowatch_source_ticks_sent", "Ticks a source produced to the ticks topic.", registry=r)
        # --- engine ---
        self.ticks_in = Counter(
            "ratiowatch_ticks_in", "Ticks the engine read (routed or evaluated), before validation.", registry=r)
        self.ticks_applied = Counter(
            "ratiowatch_ticks_applied", "Ticks applied to scenario state.", registry=r)
        self.dead_lettered = Counter(
            "ratiowatch_ticks_dead_lettered", "Ticks sent to ticks.dlq, by reason code (late, bad_price...).",
            ["reason"], registry=r)
        self.events = Counter(
            "ratiowatch_events", "Crossing events emitted to the events topic, by kind (fired, rearmed).",
            ["kind"], registry=r)
        self.tick_to_event = Histogram(
            "ratiowatch_tick_to_event_seconds",
            "Wall time from a tick's arrival at the engine to the event it caused being emitted.",
            buckets=TICK_TO_EVENT_BUCKETS, registry=r)
        self.rebalances = Counter(
            "ratiowatch_rebalances", "Consumer group rebalances this process took part in.", registry=r)
        self.recovery_seconds = Gauge(
            "ratiowatch_state_recovery_seconds",
            "Duration of the last state recovery (changelog read back after an assignment).", registry=r)
        self.recovering = Gauge(
            "ratiowatch_state_recovering", "1 while state recovery is in progress, else 0.", registry=r)
        # --- notify ---
        self.notifications = Counter(
            "ratiowatch_notifications", "Notification attempts by channel and outcome (sent, failed, "
            "retried, suppressed, dead_lettered).", ["channel", "outcome"], registry=r)
        self.bad_records = Counter(
            "ratiowatch_bad_records", "Records a role could not use and skipped (logged with their offset), by "
            "role and topic.", ["role", "topic"], registry=r)
        # --- every role ---
        self.http_requests = Counter(
            "ratiowatch_http_requests", "Requests to the ops HTTP server by endpoint and status code.",
            ["endpoint", "code"], registry=r)
        self.role_info = Gauge(
            "ratiowatch_role_info", "1 for each role this process runs.", ["role"], registry=r)
        Info("ratiowatch_build", "Versions of ratiowatch and of what it runs on.", registry=r).info(_build_info())
        self._lag = _LagCollector()
        r.register(self._lag)

    # --- wiring ---------------------------------------------------------------------------------

    def add_role(self, role: str) -> None:
        """Declare that this process runs ``role`` (one of :data:`ROLES`)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        self.role_info.labels(role=role).set(1)

    def add_lag_source(self, group: str, source: LagSource) -> None:
        """Report ``ratiowatch_consumer_lag{group,topic,partition}`` from ``source()`` at each
        scrape. ``group`` (the consumer group id) keeps two roles of one process that read the
        same topic apart."""
        self._lag.add(group, source)

    def remove_lag_source(self, group: str) -> None:
        self._lag.remove(group)

    def watch(self, collector: Collector) -> None:
        """Register another scrape-time collector (e.g. a role's own)."""
        self.registry.register(collector)

    def watch_live(self, hub: LiveHub) -> None:
        """Export the web role's live hub counters (``ratiowatch_live_*``)."""
        self.registry.register(LiveHubCollector(hub))

    def watch_health(self, health: Health) -> None:
        """Export ``ratiowatch_ready{check}`` and ``ratiowatch_event_loop_lag_seconds``."""
        self.registry.register(HealthCollector(health))

    # --- reading ----------------------------------------------------------------------------------

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type; OpenMetrics when the scraper asks for it."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's current value (e.g. ``value("ratiowatch_ticks_in_total")``), or None."""
        return self.registry.get_sample_value(name, labels or {})


class _LagCollector(Collector):
    """``ratiowatch_consumer_lag``, asked of each registered source at scrape time."""

    def __init__(self) -> None:
        self._sources: dict[str, LagSource] = {}
        self.errors: dict[str, int] = {}

    def add(self, group: str, source: LagSource) -> None:
        if group in self._sources:
            raise ValueError(f"a lag source for group {group!r} is already registered")
        self._sources[group] = source

    def remove(self, group: str) -> None:
        self._sources.pop(group, None)

    def describe(self) -> list:
        # Declared up front so a registry refuses a clashing name at registration, not at scrape.
        return [GaugeMetricFamily("ratiowatch_consumer_lag", ""),
                CounterMetricFamily("ratiowatch_collector_errors", "")]

    def collect(self) -> Iterator:
        lag = GaugeMetricFamily(
            "ratiowatch_consumer_lag",
            "Records between the committed offset and the end of each partition this process consumes.",
            labels=["group", "topic", "partition"])
        for group, source in list(self._sources.items()):
            try:
                rows = list(source())
            except Exception:
                # One broken source must not blank the whole scrape; the error is counted and logged.
                log.exception("consumer lag source %r failed", group)
                self.errors[group] = self.errors.get(group, 0) + 1
                continue
            for topic, partition, n in rows:
                lag.add_metric([group, topic, str(partition)], max(0, n))
        yield lag
        errors = CounterMetricFamily(
            "ratiowatch_collector_errors", "Scrape-time collectors that raised (their values are missing).",
            labels=["collector"])
        for group, n in self.errors.items():
            errors.add_metric([f"consumer_lag:{group}"], n)
        yield errors


class HealthCollector(Collector):
    """Readiness per check and event loop lag, read from a :class:`Health` at scrape time."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def describe(self) -> list:
        return [GaugeMetricFamily("ratiowatch_ready", ""), GaugeMetricFamily("ratiowatch_event_loop_lag_seconds", "")]

    def collect(self) -> Iterator:
        ready = GaugeMetricFamily("ratiowatch_ready", "1 when a readiness check passes, else 0.", labels=["check"])
        for name, result in self.health.readiness().checks.items():
            ready.add_metric([name], 1.0 if result.ok else 0.0)
        yield ready
        yield GaugeMetricFamily("ratiowatch_event_loop_lag_seconds",
                                "How late the last heartbeat woke up (asyncio loop lag).",
                                value=self.health.loop_lag_s)


class LiveHubCollector(Collector):
    """The live hub's own counters (``LiveHub.stats``), read at scrape time."""

    # stats key -> (metric, help); counters unless the key is a current level
    _COUNTERS = {
        "connections": ("ratiowatch_live_connections", "Websocket connections accepted for the handshake."),
        "unauthorized": ("ratiowatch_live_unauthorized", "Requests and websockets refused for a bad or missing token."),
        "bad_origin": ("ratiowatch_live_bad_origin", "Requests refused because a page of another origin sent them."),
        "rate_limited": ("ratiowatch_live_rate_limited", "Client messages over the per-client rate limit."),
        "events": ("ratiowatch_live_events", "Events published to the live stream."),
        "events_dropped": ("ratiowatch_live_events_dropped", "Events dropped for slow clients (each was told)."),
    }

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub

    def describe(self) -> list:
        return [GaugeMetricFamily("ratiowatch_live_clients", "")] + [
            CounterMetricFamily(name, "") for name, _ in self._COUNTERS.values()]

    def collect(self) -> Iterator:
        stats = self.hub.stats
        yield GaugeMetricFamily("ratiowatch_live_clients", "Websocket clients connected now.", value=stats["clients"])
        for key, (name, doc) in self._COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=stats[key])


def _build_info() -> dict[str, str]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {"version": version("ratiowatch"), "faust": version("faust-streaming"),
            "python": platform.python_version()}
