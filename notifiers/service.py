"""The notification fan-out: events in, messages out to every channel a scenario names.

Integration surface (what the faust worker wires)::

    svc = NotificationService(
        config,                      # ratiowatch.model.Config (ratiowatch.config loads one)
        publish,                     # async (topic: str, key: bytes | None, value: bytes) -> None
        history_for=None,            # (event) -> (dates, values) | None: trigger series' session
                                     #   closes for the email chart (see chart.history_from_folder)
        store_path=None,             # SQLite dedup record; default ./ratiowatch-data/notifications.sqlite
        now=time.time,               # epoch seconds; every window, limit and record time uses it
        sleep=asyncio.sleep,         # every wait (group window, quiet hours, rate limit, backoff)
        retry=RetryPolicy(),         # attempts 5, backoff 2 s doubling to 60 s, deadline 600 s
        rand=random.random,          # jitter source
        out=None,                    # stream of the console channel (default sys.stdout)
        muted=None,                  # (scenario id, epoch s) -> id of a silence muting it, or None
    )
    await svc.start()                # opens the store, starts one worker task per channel
    svc.set_config(new_config)       # scenarios (and channels) to use from the next event on
    await svc.handle(event)          # routes and enqueues; returns at once; InvalidEvent if malformed
    await svc.drain(timeout)         # True once everything queued is delivered or dead-lettered
    fut = await svc.redeliver(rec)   # a notifications.dlq record, sent again (dlq retry)
    await svc.stop()                 # stops the workers (queued messages are not sent); returns
                                     #   what was not sent (unsent.Unsent), see describe_unsent

``publish`` writes to ``deliveries`` (key event_id: every attempt and outcome, records.py) and
``notifications.dlq`` (messages that exhausted their retries). A failing ``publish`` is logged and
does not stop delivery.

Per event: route (route.py) picks the channels; each channel's worker (worker.py) groups and
waits for quiet hours and the rate limit, then runs the channel's list of stages (pipeline.py:
dedup, mute, rate, render, chart, send with retries, dead letter, record). Channel URLs are
checked when the service is built (ConfigError naming the channel), and their secrets are
redacted from every log line, error and record.

Scenarios at run time: every event is routed with the config the service holds at that moment,
and :meth:`NotificationService.set_config` replaces it (e.g. from a topic of scenario records;
call it on the service's event loop). A message already grouped keeps the scenario it was
routed with.

Delivery is at least once and, through the dedup record, not twice per (event_id, channel). Events
still queued in memory when the process stops are not sent by this process: re-consume them from
``events`` (dedup keeps that safe), e.g. commit the events offset only after ``drain``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from typing import Any, Awaitable, Callable, TextIO

from ratiowatch.errors import ConfigError
from ratiowatch.model import Channel, Config

from .chart import Charts, HistoryFor
from .dedup import DeliveryLog
from .deliver import AppriseSender, ConsoleSender, Sender, check_url, medium_for, scheme_of
from .fanout import Fanout
from .gate import Gate
from .group import Batch
from .ledger import Ledger, Publish
from .lifecycle import ChannelLifecycle
from .pipeline import Shared, channel_stages
from .records import parse_dlq_record
from .redact import RedactingFilter, Redactor, redact_url
from .render import Message, render
from .retry import RetryPolicy
from .route import UNKNOWN_SCENARIO, Notice, check_event, decide_route
from .stage import Stage
from .stages import MutedFn
from .unsent import Unsent, describe_unsent
from .worker import ChannelWorker

# Loggers of libraries that see channel URLs: apprise logs the URL it loads (user name included),
# urllib3 logs each request line at DEBUG (secret path segments included). A filter on a logger
# only sees that logger's own records, so each is named.
_FOREIGN_LOGGERS = ("apprise", "urllib3.connectionpool")

__all__ = ["NotificationService", "Publish", "Unsent", "describe_unsent"]

log = logging.getLogger("ratiowatch.notifiers")


class NotificationService:
    def __init__(self, config: Config, publish: Publish, *, history_for: HistoryFor | None = None,
                 store_path: str | os.PathLike[str] | None = None, now: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, retry: RetryPolicy | None = None,
                 rand: Callable[[], float] = random.random, out: TextIO | None = None,
                 track_records: dict[str, Any] | None = None, muted: MutedFn | None = None) -> None:
        # Asked just before each message would be sent (stages.MuteStage): a muted one is recorded
        # as `silenced` on deliveries and never sent, also after the silence ends.
        self.muted = muted
        # scenario id -> what its trigger did over the history (ratiowatch.track_record), told
        # with each firing; computed at start and when scenarios change, never per event.
        self.track_records = track_records
        self.publish = publish
        self.history_for = history_for
        self.store_path = store_path
        self.now, self.sleep, self.rand = now, sleep, rand
        self.policy = retry or RetryPolicy()
        self.redactor = Redactor(())
        self._log_filter = RedactingFilter(self.redactor)
        self._console = ConsoleSender(out)
        self._apprise = AppriseSender(self.redactor)
        self._fanout = Fanout()
        self._ledger: Ledger | None = None
        self._shared: Shared | None = None
        self._log: DeliveryLog | None = None
        self.unsent: list[Unsent] = []  # what the last stop() left unsent
        self.config = config
        self._check_channels(config)

    # ------------------------------------------------------------------ configuration

    def set_config(self, config: Config, track_records: dict[str, Any] | None = None) -> None:
        """Route every later event with ``config``: its scenarios from now on, a channel it adds
        started, a channel whose settings changed used with them from its next message (what the
        channel holds stays queued). A channel it drops keeps sending what it holds. ConfigError
        (nothing changed) when a channel URL is not one apprise knows. ``track_records``, when
        given, replaces the track records told with each firing."""
        self._check_channels(config)
        old, self.config = self.config, config
        if track_records is not None:
            self.track_records = track_records
        if self._shared is None:
            return
        for ch in config.channels.values():
            if ch.name not in self._fanout:
                self._start_channel(ch)
            elif ch != old.channels.get(ch.name):
                w = self._fanout.workers[ch.name]
                gate = Gate(ch)
                w.reconfigure(ch, self._stages(ch, gate, w.lifecycle), gate)

    def _check_channels(self, config: Config) -> None:
        self.redactor.add(c.url for c in config.channels.values())
        apprise_log = logging.getLogger("apprise")
        apprise_log.addFilter(self._log_filter)  # apprise logs the URL it loads, user name included
        try:
            for ch in config.channels.values():
                if not check_url(ch.url):
                    raise ConfigError(config.path, f"channels.{ch.name}.url",
                                      f"apprise does not recognise {redact_url(ch.url)} "
                                      f"(scheme {scheme_of(ch.url)!r}); see https://github.com/caronc/apprise/wiki")
        finally:
            apprise_log.removeFilter(self._log_filter)

    def _sender(self, ch: Channel) -> Sender:
        return self._console if ch.url == "console" else self._apprise

    def _render_for(self, ch: Channel) -> Callable[[list[Notice]], Message]:
        medium = medium_for(ch)
        # apprise's slack:// escapes & < > itself; everything else gets finished mrkdwn
        escaped = scheme_of(ch.url) != "slack"
        return lambda ns: render(medium, ns, self.config.settings.session_timezone, slack_escaped=escaped,
                                 track_records=self.track_records)

    def _stages(self, ch: Channel, gate: Gate, lifecycle: ChannelLifecycle) -> list[Stage]:
        return channel_stages(ch, self._sender(ch), self._render_for(ch), gate, lifecycle, self._shared)

    def _start_channel(self, ch: Channel) -> None:
        gate, lifecycle = Gate(ch), ChannelLifecycle(self.sleep)
        self._fanout.start(ChannelWorker(ch, self._stages(ch, gate, lifecycle), gate=gate, lifecycle=lifecycle,
                                         ledger=self._ledger, window_for=_window, now=self.now))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._fanout:
            return
        self._log = await asyncio.to_thread(DeliveryLog, self.store_path)
        self._ledger = Ledger(self.publish, self.redactor, self.now)
        self._shared = Shared(self._log, self._ledger, Charts(self.history_for, self.redactor), self.policy,
                              self.now, self.rand, self.muted)
        for name in _FOREIGN_LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)
        for ch in self.config.channels.values():
            self._start_channel(ch)

    async def stop(self) -> list[Unsent]:
        """Stops the workers. An attempt under way may end first (for at most the attempt timeout,
        capped at 10 s): its outcome is then recorded, and no later attempt starts. Returns (and
        keeps in ``unsent``) every message not sent: mid-retry, held, grouping or queued."""
        if self._fanout:
            self.unsent = await self._fanout.stop(min(self.policy.attempt_timeout_s, 10.0) + 1.0)
        else:
            await self._fanout.stop(0)
        self._shared = None
        for name in _FOREIGN_LOGGERS:
            logging.getLogger(name).removeFilter(self._log_filter)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.unsent

    def unsent_now(self) -> list[Unsent]:
        """Every message the channels hold and have not sent, now."""
        return self._fanout.unsent()

    async def __aenter__(self) -> "NotificationService":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ input

    async def handle(self, event: dict[str, Any]) -> None:
        """Route ``event`` and queue it for its channels; returns without waiting for delivery.
        Raises InvalidEvent (nothing queued) when the event is not of schema v1."""
        self._check_started()
        decision = decide_route(event, self.config)
        if decision.route is None:
            if decision.reason == UNKNOWN_SCENARIO:
                log.warning("event %s names scenario %r, which this config does not have: not notified",
                            event["event_id"], event["scenario"])
            return
        for name in decision.route.channels:
            self._ledger.add(1)
            self._fanout.put(name, decision.route.notice)

    async def redeliver(self, record: bytes | dict[str, Any]) -> "asyncio.Future[str]":
        """Send a ``notifications.dlq`` record again, to its channel, without grouping or a second
        dead-lettering. The future resolves to delivered, skipped_duplicate or failed.
        ValueError when the record is not one of ours or names a channel the config lacks."""
        self._check_started()
        d = parse_dlq_record(record) if isinstance(record, (bytes, bytearray)) else record
        if d["channel"] not in self._fanout:
            raise ValueError(f"channel {d['channel']!r} is not in {self.config.path} "
                             f"(have: {', '.join(sorted(self._fanout.workers))})")
        notices = []
        for n in d["notices"]:
            ev = check_event(n["event"])
            try:
                sc = self.config.scenario(ev["scenario"])
            except KeyError:
                sc = None
            notices.append(Notice(ev, n["status"], sc))
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._ledger.add(len(notices))
        self._fanout.put(d["channel"], Batch(notices[0].scenario_id, notices, 0.0, fut))
        return fut

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued notice is delivered, skipped as a duplicate or dead-lettered
        (held ones included: a long group window or quiet hours make this wait). False on timeout."""
        self._check_started()
        try:
            await asyncio.wait_for(self._ledger.idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    @property
    def pending(self) -> int:
        """Notices (per channel) queued, held or being sent."""
        return self._ledger.pending if self._ledger is not None else 0

    def _check_started(self) -> None:
        if self._ledger is None or not self._fanout:
            raise RuntimeError("NotificationService: call start() first")


def _window(notice: Notice) -> float:
    return notice.scenario.group_window_s if notice.scenario is not None else 0.0
