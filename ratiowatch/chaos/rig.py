"""Setting up a chaos run, and taking it down: everything the run drives, in one :class:`Rig`.

:func:`set_up` picks the newest dates of the real history that fit the duration at ``pace`` dates
per second, adds the clock and pulse series (:mod:`.plan`), and computes the expected events with
the batch backtest over exactly those ticks. It starts, all in this process, the embedded broker
(so the run can take it down, slow it and make it answer with errors), the notification endpoint
and the garbage feed (:mod:`.peers`), the producer of ``ticks``, the reader of the output topics
(:mod:`.reader`) and the real feed client connected to the garbage feed. The worker is only
prepared (:mod:`.supervisor`): :func:`ratiowatch.chaos.drive.drive` starts it.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date
from itertools import count
from pathlib import Path
from typing import Any, Callable, Iterator

import polars as pl
import yaml

from ratiowatch.backtest import run_backtest
from ratiowatch.config import default_config_path, load_config
from ratiowatch.model import Config
from ratiowatch.streams import topics
from ratiowatch.streams.app import ensure_topics
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.clients import aio_producer
from ratiowatch.streams.feed import FeedClient
from ratiowatch.streams.history import load_history
from ratiowatch.streams.origin import REPLAY

from .observed import Observed
from .options import ChaosOptions, default_history
from .peers import GarbageFeed, HookEndpoint
from .plan import config_doc, synthetic_history
from .reader import read_topics
from .supervisor import WorkerProcess, worker_argv

__all__ = ["TICKS_KEY", "Rig", "set_up", "send_acked"]

TICKS_KEY = b"chaos"   # one key: every date record on one partition, in order


async def send_acked(producer: Any, say: Callable[[str], None], topic: str, value: bytes,
                     key: bytes = TICKS_KEY) -> tuple[int, int, float]:
    """Send one record; (partition, offset, monotonic time of the acknowledgement)."""
    # Resent until acknowledged: the broker may be down or failing requests on purpose.
    while True:
        try:
            md = await producer.send_and_wait(topic, value, key=key)
            return md.partition, md.offset, time.monotonic()
        except Exception as e:
            say(f"send to {topic} failed ({type(e).__name__}: {e}); retrying")
            await asyncio.sleep(0.5)


@dataclass
class Rig:
    """A chaos run's parts and the values they share. ``counter`` numbers the bad inputs (their
    marker), ``feed_idle`` is clear while a bad feed message is on its way to the client."""

    opts: ChaosOptions
    say: Callable[[str], None]
    rng: random.Random
    work: Path
    tmp: tempfile.TemporaryDirectory[str] | None   # None when the work dir is kept (--workdir)
    dates: list[date]
    pace: float                                    # dates per second
    history: pl.DataFrame                          # the ticks sent: real dates plus clock and pulse
    cfg: Config
    obs: Observed
    bad_symbols: list[str]                         # symbols the bad inputs name: used, not witnessed
    broker: EmbeddedBroker
    hook: HookEndpoint
    feed: GarbageFeed
    producer: Any
    reader: asyncio.Task[None]
    stop_readers: asyncio.Event
    rereads: Counter[str]
    worker: WorkerProcess
    client: FeedClient
    feed_task: asyncio.Task[Any]
    counter: Iterator[int]
    feed_idle: asyncio.Event

    @property
    def tz(self) -> str:
        return self.cfg.settings.session_timezone

    async def send(self, topic: str, value: bytes, key: bytes = TICKS_KEY) -> tuple[int, int, float]:
        return await send_acked(self.producer, self.say, topic, value, key)

    async def close(self) -> None:
        """Stop everything :func:`set_up` started, the worker included."""
        self.feed_task.cancel()
        await asyncio.gather(self.feed_task, return_exceptions=True)
        await self.worker.stop()
        self.stop_readers.set()
        await asyncio.gather(self.reader, return_exceptions=True)
        await self.producer.stop()
        await self.feed.stop()
        await self.hook.stop()
        self.broker.stop()


def newest_dates(history: pl.DataFrame, n: int) -> list[date]:
    dates = sorted(history["date"].unique().to_list())
    return dates[-n:]


async def set_up(opts: ChaosOptions, say: Callable[[str], None]) -> Rig:
    """Everything the run needs, started but the worker; ``say`` reports progress."""
    rng = random.Random(opts.seed)
    tmp = None
    if opts.workdir:
        work = Path(opts.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ratiowatch-chaos-")
        work = Path(tmp.name)

    base_path = opts.config or default_config_path()
    base_raw = yaml.safe_load(Path(base_path).read_text(encoding="utf-8"))
    base_cfg = load_config(base_path)
    data = opts.data or str(default_history())
    real = load_history(data, base_cfg.symbols, base_cfg.settings.signed_symbols)
    all_dates = real["date"].n_unique()
    n_dates = min(all_dates, max(50, int(opts.pace * opts.duration_s)))
    pace = n_dates / opts.duration_s
    dates = newest_dates(real, n_dates)
    history = pl.concat([real.filter(pl.col("date").is_in(dates)), synthetic_history(dates, rng)]).sort(["date", "symbol"])

    broker = EmbeddedBroker()
    hook = HookEndpoint()
    feed = GarbageFeed()
    await hook.start()
    await feed.start()
    cfg_path = work / "chaos.yaml"
    cfg_path.write_text(yaml.safe_dump(config_doc(base_raw, hook.url, opts.partitions), sort_keys=False))
    cfg = load_config(cfg_path)
    ensure_topics(broker, cfg.settings.partitions)
    # The workers run for replayed ticks (chaos/worker.py): history sent again, faults and all.
    expected = await asyncio.to_thread(lambda: run_backtest(cfg, history).as_published(REPLAY))
    say(f"{len(dates)} dates {dates[0]}..{dates[-1]} at {pace:.1f}/s, {history.height} ticks, "
        f"{len(expected)} events expected; broker {broker.bootstrap}; work dir {work}")

    obs = Observed(expected_events=expected,
                   notify={s.id: (s.notify, s.notify_resolved) for s in cfg.scenarios},
                   valid_ticks=[], date_acks=[], valid_records=set(), route_garbage=[], late=[], feed_garbage=[])
    bad_symbols = sorted(s for s in base_cfg.symbols if s not in cfg.settings.signed_symbols)

    producer = aio_producer(broker.bootstrap, client_id="chaos-source", idempotent=True,
                            request_timeout_ms=120_000, linger_ms=0)
    await producer.start()

    stop_readers = asyncio.Event()
    rereads: Counter[str] = Counter()
    reader = asyncio.create_task(read_topics(broker.bootstrap, {topics.EVENTS: obs.events,
                                                                topics.TICKS_DLQ: obs.ticks_dlq,
                                                                topics.NOTIFICATIONS_DLQ: obs.notifications_dlq},
                                             stop_readers, rereads, {topics.EVENTS: obs.event_places}))
    worker = WorkerProcess(worker_argv(broker.url, cfg_path, work / "worker"), work / "worker.log", say)

    async def feed_dlq(record: bytes) -> None:
        await send_acked(producer, say, topics.TICKS_DLQ, record, key=b"feed")

    async def feed_ticks(ticks: list[Any]) -> None:  # the feed sends garbage only; a tick would be a bug
        raise AssertionError(f"the garbage feed produced valid ticks: {ticks}")

    def feed_status(st: dict[str, Any]) -> None:
        if st["state"] == "connected":
            obs.feed_connected.append(time.monotonic())

    client = FeedClient(feed.url, fmt="plain", symbols=sorted(cfg.symbols), publish_ticks=feed_ticks,
                        publish_dlq=feed_dlq, known_symbols=cfg.symbols, silence_s=3600, backoff=(0.2, 2.0),
                        on_status=feed_status)
    feed_idle = asyncio.Event()
    feed_idle.set()
    feed_task = asyncio.create_task(client.run())
    return Rig(opts=opts, say=say, rng=rng, work=work, tmp=tmp, dates=dates, pace=pace, history=history, cfg=cfg,
               obs=obs, bad_symbols=bad_symbols, broker=broker, hook=hook, feed=feed, producer=producer,
               reader=reader, stop_readers=stop_readers, rereads=rereads, worker=worker, client=client,
               feed_task=feed_task, counter=count(1), feed_idle=feed_idle)
