"""faust's own Prometheus sensors in our registry, plus what the engine role reads from faust.

faust-streaming ships ``faust.sensors.prometheus``; its ``setup_prometheus_sensors`` also adds a
``/metrics`` page to faust's web server, which ratiowatch does not run (``web_enabled=False``).
:func:`install_faust_monitor` therefore builds the same ``PrometheusMonitor`` on
:class:`~ratiowatch.ops.metrics.Metrics`' registry and sets it as ``app.monitor``, with no page:
our ops server exposes it. Its metrics are prefixed ``faust_`` so they can never clash with ours
(with the app id as prefix, faust's ``ratiowatch_rebalances`` would collide with
``ratiowatch_rebalances_total``).

The monitor must be installed before the app starts: faust adds ``app.monitor`` to its sensors
when the app starts, and a monitor set later would never be called.

Note: ratiowatch's batch consumer (streams/app.py) hands fetched tick batches to the pipeline
directly, so faust's per-message sensors (``faust_messages_received_total`` ...) count only the
per-record topics (``events`` in the notifier); ticks are counted by ``ratiowatch_ticks_in_total``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import faust
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

from .metrics import Metrics

__all__ = ["RatiowatchMonitor", "install_faust_monitor", "FAUST_PREFIX"]

FAUST_PREFIX = "faust"


class RatiowatchMonitor(PrometheusMonitor):
    """faust's PrometheusMonitor that also keeps ``ratiowatch_rebalances_total``,
    ``ratiowatch_state_recovering`` and ``ratiowatch_state_recovery_seconds``, and answers the
    engine's liveness and readiness (:meth:`liveness`, :meth:`readiness`) and consumer lag
    (:meth:`consumer_lag`)."""

    def __init__(self, app: faust.App, metrics: Metrics, faust_metrics: FaustMetrics, *,
                 clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(metrics=faust_metrics, **kwargs)
        self.ratiowatch = metrics
        self._clock = clock
        self._app = app
        self._recovery_started: float | None = None
        self.assigned_once = False  # a first assignment (and its recovery) has completed

    # faust calls these from the consumer's rebalance listener and the recovery service:
    # start (partitions revoked) -> return (new assignment taken) -> end (state recovered, streams resumed).
    def on_rebalance_start(self, app: Any) -> dict:
        self.ratiowatch.rebalances.inc()
        return super().on_rebalance_start(app)

    def on_rebalance_return(self, app: Any, state: dict) -> None:
        super().on_rebalance_return(app, state)
        self._recovery_started = self._clock()
        self.ratiowatch.recovering.set(1)

    def on_rebalance_end(self, app: Any, state: dict) -> None:
        super().on_rebalance_end(app, state)
        if self._recovery_started is not None:
            self.ratiowatch.recovery_seconds.set(self._clock() - self._recovery_started)
            self._recovery_started = None
        self.ratiowatch.recovering.set(0)
        self.assigned_once = True

    # --- what the engine role registers --------------------------------------------------------

    def liveness(self) -> str | None:
        """A liveness check (``health.add_live_check("faust", monitor.liveness)``): a crashed
        worker processes nothing more and should be restarted."""
        if self._app.crashed:
            return f"faust worker crashed: {self._app.crash_reason!r}"
        return None

    def readiness(self) -> str | None:
        """A readiness check (``health.add_ready_check("engine", monitor.readiness)``)."""
        if self._recovery_started is not None:
            return "state recovery in progress"
        if self._app.rebalancing:
            return "rebalance in progress: partitions revoked, waiting for the new assignment"
        if not self.assigned_once:
            return "no partitions assigned yet"
        return None

    def consumer_lag(self) -> Iterable[tuple[str, int, int]]:
        """A lag source (``metrics.add_lag_source(app.conf.id, monitor.consumer_lag)``): for each
        partition this worker was assigned, its end offset minus its committed offset, as last
        seen by the consumer (faust tracks both; they are cleared at every rebalance, so a
        partition that moved to another worker is not reported here)."""
        ends, committed = dict(self.tp_end_offsets), dict(self.tp_committed_offsets)
        for tp, end in ends.items():
            done = committed.get(tp)
            if done is not None:
                yield tp.topic, tp.partition, end - done


def install_faust_monitor(app: faust.App, metrics: Metrics, *, prefix: str = FAUST_PREFIX) -> RatiowatchMonitor:
    """Make ``app.monitor`` a :class:`RatiowatchMonitor` recording into ``metrics.registry``.
    Call before the app starts. A second faust app in the same process needs its own ``prefix``
    (e.g. ``"faust_notify"``): the registry refuses a name twice."""
    if app.started:
        raise RuntimeError("install the monitor before the faust app starts: a running app keeps its old one")
    monitor = RatiowatchMonitor(app, metrics, FaustMetrics.create(metrics.registry, prefix),
                                loop=app.loop, beacon=app.beacon)
    app.monitor = monitor
    return monitor
