"""A cluster of role processes for tests that change it while it runs: each role (engine, notify,
web) a ``ratiowatch`` command in its own process with its ops server on a free port, ticks sent
day by day from the real history, the topics read back, and an SMTP server (aiosmtpd) in a
thread of the test process, so a test may block on its own waits while mail is received.

Nothing here restarts a role: a role that exits fails the wait that sees it (``Role.running``)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson
import polars as pl
from kafka import KafkaProducer

from peers import SmtpPeer
from ratiowatch.model.sessions import session_close_ts_ms
from ratiowatch.streams.topics import TICKS
from ratiowatch.streams.clients import kafka_python_kwargs_for
from ratiowatch.streams.history import daily_ticks
from ratiowatch.streams.readback import read_topic

__all__ = ["RW", "Role", "until", "ThreadedSmtp", "TickSender", "records", "last_ts"]

RW = [str(Path(sys.executable).with_name("ratiowatch"))]


class Role:
    """A role command in its own process, with its ops server on a free port (read from the first
    line it prints)."""

    def __init__(self, name: str, args: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.name, self.args = name, args
        self.log = workdir / f"{name}.log"
        self.proc = subprocess.Popen(RW + args + ["--http", "127.0.0.1:0"], stdout=subprocess.PIPE,
                                     stderr=open(self.log, "a"), text=True, env=env, cwd=workdir)
        self.pid = self.proc.pid
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            line = self.proc.stdout.readline()
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            assert m, f"{self.name}: {line!r} {self.log.read_text()[-2000:]}"
            self._port = int(m.group(1))
        return self._port

    def running(self) -> bool:
        """True while it runs; fails, with its log, once it has exited."""
        code = self.proc.poll()
        assert code is None, f"{self.name} exited with {code}: {self.log.read_text()[-3000:]}"
        return True

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except urllib.error.URLError:
            return 0, b""

    def metric(self, name: str) -> float:
        body = self.get("/metrics")[1].decode()
        m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", body, re.M)
        return float(m.group(1)) if m else 0.0

    def statuses(self) -> dict[str, dict[str, Any]]:
        """The web role's /status, by scenario id."""
        self.running()
        code, body = self.get("/status")
        return {s["scenario"]: s for s in json.loads(body)["scenarios"]} if code == 200 else {}

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


def until(cond: Callable[[], Any], what: str | Callable[[], str], timeout: float) -> float:
    """Wait for ``cond()``; returns the seconds it took, fails saying ``what`` (or what the callable
    says was last seen) after ``timeout``."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"not reached within {timeout:g}s: {what() if callable(what) else what}"
        time.sleep(0.1)
    return time.monotonic() - t0


class ThreadedSmtp(SmtpPeer):
    """tests/peers.py's SMTP server with a login, served by an event loop on its own thread."""

    def start_thread(self) -> int:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="smtp-peer", daemon=True)
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self.start(), self.loop).result(timeout=10)

    def stop_thread(self) -> None:
        asyncio.run_coroutine_threadsafe(self.stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in list(self.messages)]


class TickSender:
    """The history's closes as ticks on ``ticks``, one record a tick keyed by symbol (as
    tests/test_event_time_broker.py's send_backlog), a range of dates at a time."""

    def __init__(self, bootstrap: str, history: pl.DataFrame, tz: str) -> None:
        self.history, self.tz = history, tz
        # gzip: a backlog of a few hundred thousand ticks stays well inside the embedded broker's
        # 5 MB a partition.
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, compression_type="gzip",
                                      batch_size=256 * 1024, **kafka_python_kwargs_for())
        self.sent = 0

    def send(self, start: date, end: date) -> int:
        n = 0
        for _, ticks in daily_ticks(self.history, self.tz, start, end):
            for t in ticks:
                self.producer.send(TICKS, key=t.symbol.encode(),
                                   value=orjson.dumps({"symbol": t.symbol, "price": t.price, "ts_ms": t.ts_ms}))
            n += len(ticks)
        self.producer.flush()
        self.sent += n
        return n

    def close(self) -> None:
        self.producer.close()


def records(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) on ``topic`` now, in partition then offset order."""
    return [(k, v) for k, v, _p, _o in read_topic(bootstrap, topic)]


def last_ts(history: pl.DataFrame, symbols: Iterable[str], end: date, tz: str) -> int:
    """The session close of the last date up to ``end`` on which one of ``symbols`` has a close:
    the event time of a scenario on those symbols once the ticks up to ``end`` are applied."""
    d = history.filter(pl.col("symbol").is_in(list(symbols)) & (pl.col("date") <= end))["date"].max()
    return session_close_ts_ms(d, tz)

