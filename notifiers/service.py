"""The notification fan-out: events in, messages out to every channel a scenario names.

Integration surface (what the faust worker wires)::

    svc = NotificationService(
        config,                      # ratiowatch.config.Config
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
    await svc.handle(event)          # routes and enqueues; returns at once; InvalidEvent if malformed
    await svc.drain(timeout)         # True once everything queued is delivered or dead-lettered
    fut = await svc.redeliver(rec)   # a notifications.dlq record, sent again (dlq retry)
    await svc.stop()                 # stops the workers (queued messages are not sent); returns
                                     #   what was not sent (worker.Unsent), see describe_unsent

``publish`` writes to ``deliveries`` (key event_id: every attempt and outcome, records.py) and
``notifications.dlq`` (messages that exhausted their retries). A failing ``publish`` is logged and
does not stop delivery.

Per event: route (route.py) picks the channels; each channel's worker (worker.py) groups, waits
for quiet hours and the rate limit, skips what was already delivered, renders, sends with
retries, and records. Channel URLs are checked when the service is built (ConfigError naming the
channel), and their secrets are redacted from every log line, error and record.

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

from ratiowatch.model import Config
from ratiowatch.errors import ConfigError
from ratiowatch.streams.topics import DELIVERIES, NOTIFICATIONS_DLQ

from .chart import HistoryFor, chart_png
from .dedup import DeliveryLog
from .deliver import AppriseSender, ConsoleSender, check_url, medium_for, scheme_of
from .group import Batch
from .records import delivery_record, dlq_record, parse_dlq_record
from .redact import RedactingFilter, Redactor, redact_url
from .render import render
from .retry import RetryPolicy
from .route import FIRING, Notice, check_event, route
from .worker import ChannelWorker, Unsent

# Loggers of libraries that see channel URLs: apprise logs the URL it loads (user name included),
# urllib3 logs each request line at DEBUG (secret path segments included). A filter on a logger
# only sees that logger's own records, so each is named.
_FOREIGN_LOGGERS = ("apprise", "urllib3.connectionpool")

__all__ = ["NotificationService", "Publish", "Unsent", "describe_unsent"]

log = logging.getLogger("ratiowatch.notifiers")

Publish = Callable[[str, "bytes | None", bytes], Awaitable[None]]

_CHART_CACHE = 32  # charts kept per service: two email channels of one event draw it once


class NotificationService:
    def __init__(self, config: Config, publish: Publish, *, history_for: HistoryFor | None = None,
                 store_path: str | os.PathLike[str] | None = None, now: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, retry: RetryPolicy | None = None,
                 rand: Callable[[], float] = random.random, out: TextIO | None = None,
                 track_records: dict[str, Any] | None = None,
                 muted: Callable[[str, float], str | None] | None = None) -> None:
        self.config = config
        # Asked just before each message would be sent (worker.py): a muted one is recorded as
        # `silenced` on deliveries and never sent, also after the silence ends.
        self.muted = muted
        # scenario id -> what its trigger did over the history (ratiowatch.track_record), told
        # with each firing; computed at start and when scenarios change, never per event.
        self.track_records = track_records
        self.publish = publish
        self.history_for = history_for
        self.store_path = store_path
        self.now, self.sleep, self.rand = now, sleep, rand
        self.policy = retry or RetryPolicy()
        self.redactor = Redactor(c.url for c in config.channels.values())
        self._log_filter = RedactingFilter(self.redactor)
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
        self._console = ConsoleSender(out)
        self._apprise = AppriseSender(self.redactor)
        self._workers: dict[str, ChannelWorker] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._log: DeliveryLog | None = None
        self._pending = 0
        self._idle: asyncio.Event | None = None
        self._charts: dict[str, bytes | None] = {}
        self.unsent: list[Unsent] = []  # what the last stop() left unsent

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._tasks:
            return
        self._log = await asyncio.to_thread(DeliveryLog, self.store_path)
        self._idle = asyncio.Event()
        self._idle.set()
        for name in _FOREIGN_LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)
        tz = self.config.settings.session_timezone
        for ch in self.config.channels.values():
            medium = medium_for(ch)
            # apprise's slack:// escapes & < > itself; everything else gets finished mrkdwn
            escaped = scheme_of(ch.url) != "slack"
            w = ChannelWorker(
                ch, sender=self._console if ch.url == "console" else self._apprise, delivery_log=self._log,
                render=lambda ns, m=medium, e=escaped: render(m, ns, tz, slack_escaped=e,
                                                              track_records=self.track_records),
                chart_for=self._chart_for, record=self._record, dead_letter=self._dead_letter,
                settle=self._settle, window_for=_window, policy=self.policy, now=self.now, sleep=self.sleep,
                rand=self.rand, muted=self.muted)
            self._workers[ch.name] = w
            task = asyncio.create_task(w.run(), name=f"notify-{ch.name}")
            task.add_done_callback(_report_crash)
            self._tasks.append(task)

    async def stop(self) -> list[Unsent]:
        """Stops the workers. An attempt under way may end first (for at most the attempt timeout,
        capped at 10 s): its outcome is then recorded, and no later attempt starts. Returns (and
        keeps in ``unsent``) every message not sent: mid-retry, held, grouping or queued."""
        if self._tasks:
            for w in self._workers.values():
                w.stopping = True
            waits = [asyncio.ensure_future(w.at_rest()) for w in self._workers.values()]
            _done, late = await asyncio.wait(waits, timeout=min(self.policy.attempt_timeout_s, 10.0) + 1.0)
            for t in late:
                t.cancel()
            self.unsent = self.unsent_now()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._workers.clear()
        for name in _FOREIGN_LOGGERS:
            logging.getLogger(name).removeFilter(self._log_filter)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.unsent

    def unsent_now(self) -> list[Unsent]:
        """Every message the channels hold and have not sent, now."""
        return [u for w in self._workers.values() for u in w.unsent()]

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
        r = route(event, self.config)
        if r is None:
            if event["rule"] == "trigger" and event["scenario"] not in {s.id for s in self.config.scenarios}:
                log.warning("event %s names scenario %r, which this config does not have: not notified",
                            event["event_id"], event["scenario"])
            return
        for name in r.channels:
            self._add_pending(1)
            self._workers[name].put(r.notice)

    async def redeliver(self, record: bytes | dict[str, Any]) -> "asyncio.Future[str]":
        """Send a ``notifications.dlq`` record again, to its channel, without grouping or a second
        dead-lettering. The future resolves to delivered, skipped_duplicate or failed.
        ValueError when the record is not one of ours or names a channel the config lacks."""
        self._check_started()
        d = parse_dlq_record(record) if isinstance(record, (bytes, bytearray)) else record
        worker = self._workers.get(d["channel"])
        if worker is None:
            raise ValueError(f"channel {d['channel']!r} is not in {self.config.path} "
                             f"(have: {', '.join(sorted(self._workers))})")
        notices = []
        for n in d["notices"]:
            ev = check_event(n["event"])
            try:
                sc = self.config.scenario(ev["scenario"])
            except KeyError:
                sc = None
            notices.append(Notice(ev, n["status"], sc))
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._add_pending(len(notices))
        worker.put(Batch(notices[0].scenario_id, notices, 0.0, fut))
        return fut

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued notice is delivered, skipped as a duplicate or dead-lettered
        (held ones included: a long group window or quiet hours make this wait). False on timeout."""
        self._check_started()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    @property
    def pending(self) -> int:
        """Notices (per channel) queued, held or being sent."""
        return self._pending

    # ------------------------------------------------------------------ helpers for the workers

    def _check_started(self) -> None:
        if self._idle is None or not self._tasks:
            raise RuntimeError("NotificationService: call start() first")

    def _add_pending(self, n: int) -> None:
        self._pending += n
        self._idle.clear()

    def _settle(self, n: int) -> None:
        self._pending -= n
        if self._pending <= 0:
            self._pending = 0
            self._idle.set()

    async def _record(self, event_id: str, scenario: str, channel: str, attempt: int, outcome: str,
                      error: str | None, silence: str | None = None) -> None:
        value = delivery_record(event_id, scenario, channel, attempt, outcome,
                                None if error is None else self.redactor.text(error), int(self.now() * 1000),
                                silence)
        try:
            await self.publish(DELIVERIES, event_id.encode(), value)
        except Exception as e:
            log.error("could not write to %s (%s: %s): %s", DELIVERIES, type(e).__name__,
                      self.redactor.text(e), value.decode())

    async def _dead_letter(self, channel: str, notices: list[Notice], error: str, attempts: int) -> bool:
        value = dlq_record(channel, notices, self.redactor.text(error), attempts, int(self.now() * 1000))
        try:
            await self.publish(NOTIFICATIONS_DLQ, notices[0].event_id.encode(), value)
            return True
        except Exception as e:
            # The last place the message exists is this log line: keep it whole.
            log.critical("could not write to %s (%s: %s); lost notification: %s", NOTIFICATIONS_DLQ,
                         type(e).__name__, self.redactor.text(e), value.decode())
            return False

    async def _chart_for(self, notices: list[Notice]) -> bytes | None:
        """The chart of the newest firing notice (or the newest one), or None when there is no
        history: the message then goes without it."""
        if self.history_for is None:
            return None
        firing = [n for n in notices if n.status == FIRING]
        n = (firing or notices)[-1]
        if n.event_id in self._charts:
            return self._charts[n.event_id]
        png = None
        try:
            hist = await asyncio.to_thread(self.history_for, n.event)
            if hist is not None and len(hist[0]) > 0:
                png = await asyncio.to_thread(chart_png, n, hist[0], hist[1])
        except Exception as e:
            log.warning("no chart for %s: %s: %s", n.event_id, type(e).__name__, self.redactor.text(e))
        if len(self._charts) >= _CHART_CACHE:
            self._charts.pop(next(iter(self._charts)))
        self._charts[n.event_id] = png
        return png


_STATES = {"held": "held by quiet hours or the rate limit", "grouping": "in an open group window", "queued": "queued"}


def describe_unsent(unsent: list[Unsent]) -> str:
    """One line for a stop: how many notifications (event x channel) were not sent, and per
    channel and scenario, in what state (mid-retry: after how many failed attempts, and the last
    error). "" when nothing was pending."""
    if not unsent:
        return ""

    def attempts(n: int) -> str:
        return f"{n} failed attempt{'s' * (n != 1)}"

    total = sum(len(u.event_ids) for u in unsent)
    retrying = sum(len(u.event_ids) for u in unsent if u.failed_attempts)
    parts = []
    for u in unsent:
        if u.state == "retrying":
            state = f"retrying after {attempts(u.failed_attempts)}; last: {u.last_error}"
        elif u.state == "sending":
            state = f"attempt {u.failed_attempts + 1} under way at the stop, which may still reach the channel"
            if u.failed_attempts:
                state += f"; last failure: {u.last_error}"
        else:
            state = _STATES.get(u.state, u.state)
        n = len(u.event_ids)
        parts.append(f"{u.channel}: {u.scenario_id} ({n} event{'s' * (n != 1)}, {state}"
                     + ("; a dlq re-delivery)" if u.redelivery else ")"))
    return f"{total} notification{'s' * (total != 1)} not sent ({retrying} mid-retry): " + "; ".join(parts)


def _report_crash(task: "asyncio.Task[None]") -> None:
    # A worker handles its own errors per message; ending any other way is a bug worth shouting about.
    if not task.cancelled() and task.exception() is not None:
        log.critical("notification worker %s stopped: %r", task.get_name(), task.exception())


def _window(notice: Notice) -> float:
    return notice.scenario.group_window_s if notice.scenario is not None else 0.0

