"""The chaos run: the real pipeline under faults, bad input and restarts, checked against the batch
computation.

This process owns the embedded broker (so it can take it down, slow it and make it answer with
errors), the notification endpoint and the garbage feed; the worker is a separate process
(:mod:`ratiowatch.chaos_worker`) connected with ``--broker``, so it can be SIGKILLed and restarted.
The run:

1. picks the newest dates of the real history that fit the duration at ``pace`` dates per second,
   adds the clock and pulse series (chaos_plan), and computes the expected events with the batch
   backtest over exactly those ticks;
2. sends one batch record per date to ``ticks`` (idempotent producer, each send acknowledged
   before the next, so the topic holds the dates in order), with bad records, bad items inside
   good batches and late ticks mixed in, and bad messages through the websocket feed;
3. injects the scheduled faults (chaos_plan.fault_schedule), one after another;
4. heals everything, waits until the outputs are complete (or ``drain_timeout_s`` passes), stops
   the worker cleanly, and compares what it read from the topics and what its endpoint answered
   with the expectation (chaos_verify).

The exit code of ``ratiowatch chaos`` is 0 only when nothing was lost, missing or duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

import orjson
import polars as pl
import yaml

from ratiowatch.streams.origin import REPLAY

from . import chaos_plan as P
from .chaos_peers import GarbageFeed, HookEndpoint
from .chaos_verify import FaultRecord, Observed, expected_pairs, passed, verify

__all__ = ["ChaosOptions", "run_chaos", "default_history", "format_report"]

log = logging.getLogger(__name__)

TICKS_KEY = b"chaos"   # one key: every date record on one partition, in order


def default_history() -> Path:
    """The shared history beside the repository (``../shared/data/history``), or $RATIOWATCH_HISTORY."""
    env = os.environ.get("RATIOWATCH_HISTORY")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "history"


@dataclass
class ChaosOptions:
    duration_s: float = 300.0
    seed: int = 1
    data: str | None = None             # history folder (default: default_history())
    config: str | None = None           # base scenarios (default: the shipped ones)
    pace: float = 12.0                  # dates sent per second (fewer when the history is short); the
                                        # worker does ~30/s here, so it can catch up after each fault
    partitions: int | None = None
    kinds: tuple[str, ...] = P.FAULT_KINDS
    drain_timeout_s: float | None = None  # default: max(120 s, half the duration)
    workdir: str | None = None          # kept when given; a temporary folder otherwise
    garbage_every: int = 12             # about one bad ticks record per this many dates
    feed_interval_s: float = 0.25       # one bad feed message per interval


class _Worker:
    """The worker process: started, killed, restarted; its output goes to ``log_path``."""

    def __init__(self, argv: list[str], log_path: Path, say: Callable[[str], None]) -> None:
        self.argv, self.log_path, self.say = argv, log_path, say
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.unplanned: list[str] = []
        self.starts = 0
        self._planned_exit = False
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        self.ready.clear()
        self._planned_exit = False
        self.starts += 1
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # cwd: not the repository, whose ratiowatch/ folder would shadow the installed package.
        self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.STDOUT, env=env,
                                                         cwd=self.log_path.parent, start_new_session=True)
        self._tasks.append(asyncio.create_task(self._pump(self.proc, self.starts)))

    async def _pump(self, proc: asyncio.subprocess.Process, n: int) -> None:
        with open(self.log_path, "ab") as out:
            out.write(f"----- worker start {n} (pid {proc.pid}) -----\n".encode())
            assert proc.stdout is not None
            async for line in proc.stdout:
                out.write(line)
                out.flush()
                if line.strip() == b"ready":
                    self.ready.set()
        code = await proc.wait()
        if not self._planned_exit and proc is self.proc:
            self.unplanned.append(f"worker exited with code {code} (start {n}); see {self.log_path}")
            self.say(f"worker exited on its own with code {code}: restarting")
            await asyncio.sleep(1.0)
            if proc is self.proc and not self._planned_exit:
                await self.start()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self._planned_exit = True
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self, timeout: float = 60.0) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self._planned_exit = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.say(f"worker did not stop within {timeout:g}s of SIGTERM: killing it")
                self.proc.send_signal(signal.SIGKILL)
                await self.proc.wait()
        for t in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 5)


async def _read_topics(bootstrap: str, sinks: dict[str, list[tuple[float, bytes]]], stop: asyncio.Event,
                       rereads: Counter[str], places: dict[str, list[tuple[int, int, int]]]) -> None:
    """Read ``sinks``' topics from the beginning as a downstream service would (no group, manual
    assignment), recording when each record arrived."""
    from aiokafka import TopicPartition

    from ratiowatch.streams.clients import aio_consumer

    consumer = aio_consumer(bootstrap, client_id="chaos-reader")
    await consumer.start()
    try:
        tps = []
        for topic in sinks:
            parts = consumer.partitions_for_topic(topic)
            while not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic)
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # A record handed over twice at the same offset is the reader's, not the topic's: count it
        # apart (``rereads``), as a downstream service tracking its position would skip it. Two
        # copies at different offsets are on the topic, and count as duplicates.
        next_offset: dict[Any, int] = {}
        while not stop.is_set():
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            except Exception as e:  # the broker may be down: keep trying, as a consumer would
                log.debug("reader: %s", e)
                await asyncio.sleep(0.2)
                continue
            now = time.monotonic()
            for tp, records in batch.items():
                sink = sinks[tp.topic]
                first = next_offset.get(tp, -1)
                for r in records:
                    if r.offset < first:
                        rereads[tp.topic] += 1
                        continue
                    sink.append((now, r.value))
                    if tp.topic in places:
                        places[tp.topic].append((tp.partition, r.offset, r.timestamp))
                next_offset[tp] = max(first, records[-1].offset + 1)
    finally:
        await consumer.stop()


def _window(history: pl.DataFrame, n: int) -> list[date]:
    dates = sorted(history["date"].unique().to_list())
    return dates[-n:]


async def run_chaos(opts: ChaosOptions, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run it; returns the report (chaos_verify.verify plus a ``run`` section)."""
    from ratiowatch.agents.sessions import session_close_ts_ms
    from ratiowatch.backtest import run_backtest
    from ratiowatch.config import default_config_path, load_config
    from ratiowatch.streams.clients import aio_producer
    from ratiowatch.streams import topics as T
    from ratiowatch.streams.app import ensure_topics
    from ratiowatch.streams.broker import EmbeddedBroker
    from ratiowatch.streams.feed import FeedClient
    from ratiowatch.streams.history import load_history

    t_begin = time.monotonic()
    say = say or (lambda m: print(f"[chaos {time.monotonic() - t_begin:7.1f}s] {m}", file=sys.stderr, flush=True))
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
    dates = _window(real, n_dates)
    history = pl.concat([real.filter(pl.col("date").is_in(dates)), P.synthetic_history(dates, rng)]).sort(["date", "symbol"])

    broker = EmbeddedBroker()
    hook = HookEndpoint()
    feed = GarbageFeed()
    await hook.start()
    await feed.start()
    cfg_path = work / "chaos.yaml"
    cfg_path.write_text(yaml.safe_dump(P.chaos_config_doc(base_raw, hook.url, opts.partitions), sort_keys=False))
    cfg = load_config(cfg_path)
    partitions = cfg.settings.partitions
    ensure_topics(broker, partitions)
    tz = cfg.settings.session_timezone
    # The workers run for replayed ticks (chaos_worker.py): history sent again, faults and all.
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

    async def send(topic: str, value: bytes, key: bytes = TICKS_KEY) -> tuple[int, int, float]:
        # Resent until acknowledged: the broker may be down or failing requests on purpose.
        while True:
            try:
                md = await producer.send_and_wait(topic, value, key=key)
                return md.partition, md.offset, time.monotonic()
            except Exception as e:
                say(f"send to {topic} failed ({type(e).__name__}: {e}); retrying")
                await asyncio.sleep(0.5)

    stop_readers = asyncio.Event()
    rereads: Counter[str] = Counter()
    reader = asyncio.create_task(_read_topics(broker.bootstrap, {T.EVENTS: obs.events, T.TICKS_DLQ: obs.ticks_dlq,
                                                                 T.NOTIFICATIONS_DLQ: obs.notifications_dlq},
                                              stop_readers, rereads, {T.EVENTS: obs.event_places}))
    worker = _Worker([sys.executable, "-m", "ratiowatch.chaos_worker", "--broker", broker.url, "--config",
                      str(cfg_path), "--datadir", str(work / "worker")], work / "worker.log", say)

    async def feed_dlq(record: bytes) -> None:
        await send(T.TICKS_DLQ, record, key=b"feed")

    async def feed_ticks(ticks: list[Any]) -> None:  # the feed sends garbage only; a tick would be a bug
        raise AssertionError(f"the garbage feed produced valid ticks: {ticks}")

    def feed_status(st: dict[str, Any]) -> None:
        if st["state"] == "connected":
            obs.feed_connected.append(time.monotonic())

    client = FeedClient(feed.url, fmt="plain", symbols=sorted(cfg.symbols), publish_ticks=feed_ticks,
                        publish_dlq=feed_dlq, known_symbols=cfg.symbols, silence_s=3600, backoff=(0.2, 2.0),
                        on_status=feed_status)
    counter = iter(range(1, 10**9))
    feed_idle = asyncio.Event()
    feed_idle.set()

    async def run_feed(until: float) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(opts.feed_interval_s)
            if not feed.connected:
                continue
            before = client.messages
            g = P.feed_garbage(rng, next(counter), session_close_ts_ms(dates[0], tz), rng.choice(bad_symbols))
            feed_idle.clear()
            try:
                if await feed.send(g.payload):
                    # Wait until the client has handled it (dead letters published): a drop
                    # comes only between messages, so every message sent is a message received.
                    while client.messages == before:
                        await asyncio.sleep(0.01)
                    obs.feed_garbage.append(g)
            finally:
                feed_idle.set()

    async def run_sender(t0: float) -> None:
        by_date = {d: part for (d,), part in history.group_by("date", maintain_order=True)}
        for k, d in enumerate(dates):
            await asyncio.sleep(max(0.0, t0 + k / pace - time.monotonic()))
            ts = session_close_ts_ms(d, tz)
            part = by_date[d]
            items: list[dict[str, Any]] = [{"symbol": s, "price": c, "ts_ms": ts}
                                           for s, c in zip(part["symbol"].to_list(), part["close"].to_list())]
            if rng.random() < opts.garbage_every ** -1:
                g = P.ticks_garbage(rng, next(counter), ts, rng.choice(bad_symbols))
                p, o, _ = await send(T.TICKS, g.payload)
                obs.route_garbage.append((p, o, g))
            if k >= 40 and rng.random() < 1 / 50:
                late = P.late_tick(rng, next(counter), session_close_ts_ms(dates[k - 25], tz))
                await send(T.TICKS, orjson.dumps(late))
                # 25 dates behind the ticks before it on its partition: the route stage dead-letters
                # it once, in partition order (a shard would dead-letter its own copy of a tick
                # only late against its frontier, see README "Late ticks").
                obs.late.append(((late["symbol"], late["price"], late["ts_ms"]), 1))
            mixed = None
            if rng.random() < 1 / 30:
                item, mixed = P.mixed_item(next(counter), ts, rng.choice(bad_symbols))
                items.insert(rng.randrange(len(items) + 1), item)
            p, o, at = await send(T.TICKS, orjson.dumps(items))
            obs.valid_records.add((p, o))
            obs.valid_ticks.extend((i["symbol"], i["price"], i["ts_ms"]) for i in items if "id" not in i)
            obs.date_acks.append((at, ts))
            if mixed is not None:
                obs.route_garbage.append((p, o, mixed))
            if (k + 1) % 500 == 0:
                say(f"sent {k + 1}/{len(dates)} dates")

    async def inject(f: P.Fault) -> None:
        start = time.monotonic()
        info = ""
        if f.kind == "broker_down":
            broker.set_broker_down(1)
            await asyncio.sleep(f.duration_s)
            broker.set_broker_up(1)
        elif f.kind == "broker_slow":
            broker.set_rtt(1, f.params["rtt_ms"])
            await asyncio.sleep(f.duration_s)
            broker.set_rtt(1, 0)
            info = f"rtt {f.params['rtt_ms']} ms"
        elif f.kind in P.FAULT_ERRORS:
            broker.push_request_errors(f.params["api"], *f.params["errors"])
            info = f"{f.params['api']}: {', '.join(f.params['errors'])}"
        elif f.kind == "worker_kill":
            await worker.kill()
            await asyncio.sleep(f.duration_s)
            await worker.start()
        elif f.kind.startswith("endpoint_"):
            hook.set_mode({"endpoint_500": "fail500", "endpoint_stall": "stall", "endpoint_drop": "drop"}[f.kind])
            await asyncio.sleep(f.duration_s)
            hook.set_mode("ok")
        elif f.kind == "feed_drop":
            await feed_idle.wait()
            if not await feed.drop():
                info = "no connection to drop"
        obs.faults.append(FaultRecord(f.kind, start, time.monotonic(), info))
        say(f"fault {f.kind} ({f.duration_s:g}s{'; ' + info if info else ''})")

    async def run_faults(t0: float, schedule: list[P.Fault]) -> None:
        for f in schedule:
            await asyncio.sleep(max(0.0, t0 + f.at_s - time.monotonic()))
            await inject(f)

    feed_task = asyncio.create_task(client.run())
    report: dict[str, Any] = {}
    try:
        await worker.start()
        await asyncio.wait_for(worker.ready.wait(), 120)
        say("worker ready; sending")
        t0 = time.monotonic()
        schedule = P.fault_schedule(rng, opts.duration_s, kinds=opts.kinds)
        feeder = asyncio.create_task(run_feed(t0 + opts.duration_s))
        await asyncio.gather(run_sender(t0), run_faults(t0, schedule), feeder)
        # Heal whatever a fault may have left behind, then let the pipeline finish.
        broker.set_broker_up(1)
        broker.set_rtt(1, 0)
        for api in broker.API_KEYS:
            broker.clear_request_errors(api)
        hook.set_mode("ok")
        if worker.proc is None or worker.proc.returncode is not None:
            await worker.start()
        say(f"sending done in {time.monotonic() - t0:.1f}s; draining")
        await _drain(obs, hook, opts.drain_timeout_s or max(120.0, opts.duration_s / 2), say)
        await worker.stop()
        await asyncio.sleep(1.0)  # a last read of what the clean stop wrote
    finally:
        feed_task.cancel()
        await asyncio.gather(feed_task, return_exceptions=True)
        await worker.stop()
        stop_readers.set()
        await asyncio.gather(reader, return_exceptions=True)
        await producer.stop()
        await feed.stop()
        await hook.stop()
        broker.stop()
    obs.receipts = list(hook.receipts)
    obs.worker_exits = list(worker.unplanned)
    if tmp is None:  # a kept work dir also keeps what was observed, for a closer look
        import pickle

        (work / "observed.pickle").write_bytes(pickle.dumps(obs))
    report = verify(obs)
    report["run"] = {"duration_s": opts.duration_s, "seed": opts.seed, "dates": len(dates),
                     "first_date": str(dates[0]), "last_date": str(dates[-1]), "pace_dates_per_s": round(pace, 2),
                     "worker_starts": worker.starts, "endpoint_answers": dict(hook.answered),
                     "reader_rereads": dict(rereads),
                     "seconds": round(time.monotonic() - t_begin, 1),
                     "workdir": str(work) if tmp is None else None}
    report["passed"] = passed(report)
    if tmp is not None:
        tmp.cleanup()
    return report


async def _drain(obs: Observed, hook: HookEndpoint, timeout: float, say: Callable[[str], None]) -> None:
    """Until every expected event, dead letter and notification is out, or ``timeout``."""
    expected_ids = {e["event_id"] for e in obs.expected_events}
    pairs = {eid for eid, _ in expected_pairs(obs)}
    n_dlq = (sum(len(g.reasons) for _, _, g in obs.route_garbage) + sum(c for _, c in obs.late)
             + sum(len(g.reasons) for g in obs.feed_garbage))
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    read = 0
    while True:
        for _, raw in obs.events[read:]:
            seen.add(orjson.loads(raw)["event_id"])
        read = len(obs.events)
        settled = {eid for _, ids in hook.receipts for eid in ids}
        settled |= {eid for _, r in obs.notifications_dlq for eid in orjson.loads(r).get("event_ids", [])}
        todo = {"events": len(expected_ids - seen), "dead letters": max(0, n_dlq - len(obs.ticks_dlq)),
                "notifications": len(pairs - settled)}
        if not any(todo.values()):
            await asyncio.sleep(3.0)  # stragglers: a repeat would show up now
            return
        if time.monotonic() > deadline:
            say(f"drain: gave up after {timeout:g}s; still missing " + ", ".join(f"{v} {k}" for k, v in todo.items()))
            return
        await asyncio.sleep(0.5)


def format_report(r: dict[str, Any]) -> str:
    t, e, n, rec = r["ticks"], r["events"], r["notifications"], r["recovery_s"]
    lines = [
        f"chaos run: {r['run']['dates']} dates {r['run']['first_date']}..{r['run']['last_date']}, seed {r['run']['seed']}, "
        f"{r['run']['seconds']}s, worker started {r['run']['worker_starts']}x",
        f"ticks:         sent {t['sent']} ({t['valid']} valid, {t['invalid']} bad), applied {t['applied']}, "
        f"dead-lettered {t['dead_lettered']}, lost {t['lost']}  (dlq repeats {t['dlq_duplicates']}, "
        f"wrong reason {t['dlq_wrong_reason']}, unwitnessed {t['unwitnessed']})",
        f"events:        expected {e['expected']}, emitted {e['emitted']}, duplicated {e['duplicated']}, "
        f"missing {e['missing']}, unexpected {e['unexpected']}",
        f"notifications: expected {n['expected']}, delivered {n['delivered']}, duplicated {n['duplicated']}, "
        f"dead-lettered {n['dead_lettered']}, lost {n['lost']}",
        f"               events out while the endpoint failed: {e['during_endpoint_faults']}",
        "faults:        " + ", ".join(f"{k} {v}" for k, v in sorted(r["faults"].items())),
        f"recovery:      max {rec['max']}s, median {rec['median']}s"
        + (f", {rec['never']} never recovered" if rec["never"] else "")
        + "; by kind " + ", ".join(f"{k} {v:g}s" for k, v in sorted(rec["max_by_kind"].items())),
    ]
    if e["examples_missing"]:
        lines.append("missing e.g.:  " + "; ".join(e["examples_missing"]))
    if e["examples_duplicated"]:
        lines.append("repeated e.g.: " + ", ".join(e["examples_duplicated"]))
    if r["worker_exits_unplanned"]:
        lines += ["unplanned worker exits:"] + [f"  {x}" for x in r["worker_exits_unplanned"]]
    lines.append("PASS: nothing lost, missing or duplicated" if r["passed"] else "FAIL")
    return "\n".join(lines)
