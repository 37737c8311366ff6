"""``ratiowatch bench --peers``: Bytewax and Quix Streams on the same embedded broker and the same
stream as the limit and the engine (one tick per record, keyed by symbol), doing the peers' job
(:mod:`ratiowatch.bench.peer_workers`), each as a ratio to the limit of the same run.

Each peer runs as ``python peer_workers.py PEER SPEC`` in a process of its own, with the bench's
interpreter or another one (``--peers-python``: Quix Streams 3.28.1 needs a confluent-kafka older
than ratiowatch's pin, so it lives in an environment of its own). A peer that the interpreter
cannot import is reported as not installed, not as a failure.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import tempfile
import threading
from typing import Any, Callable

import orjson

from ratiowatch.streams.broker import EmbeddedBroker

from .market import Record
from .phase import BenchError, run_phase

__all__ = ["PEERS", "installed", "run_peers"]

PEERS = ("bytewax", "quixstreams")
_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_workers.py")


def installed(python: str) -> dict[str, str | None]:
    """peer -> its version under ``python``, None when it is not installed there."""
    probe = ("import json, importlib.metadata as m, importlib.util as u\n"
             f"print(json.dumps({{p: (m.version(p) if u.find_spec(p) else None) for p in {list(PEERS)!r}}}))")
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {p: None for p in PEERS}
    return orjson.loads(out.strip().splitlines()[-1])


class _Progress:
    value = 0


class _PeerProcess:
    """A peer's process behind the interface :func:`ratiowatch.bench.phase.run_phase` expects of
    a spawned worker: the process (``is_alive``, ``exitcode``, ``join``, ``kill``), its pipe
    (``poll``, ``recv``: ("ready", info), ("result", dict), ("error", text)) and its progress
    (``.value``), read from the lines it prints."""

    def __init__(self, python: str, peer: str, spec_file: str) -> None:
        self.progress = _Progress()
        self._messages: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._peeked: tuple[str, Any] | None = None
        self._stderr: list[str] = []
        self.proc = subprocess.Popen([python, _SCRIPT, peer, spec_file], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, name=f"bench-peer-{peer}", daemon=True).start()
        threading.Thread(target=self._read_errors, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a peer's own print
            if not isinstance(msg, dict):
                continue
            if "progress" in msg:
                self.progress.value = msg["progress"]
            for kind in ("ready", "result", "error"):
                if kind in msg:
                    self._messages.put((kind, msg[kind]))

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr = (self._stderr + [line.rstrip()])[-20:]

    # the pipe
    def poll(self, timeout: float = 0.0) -> bool:
        if self._peeked is None:
            try:
                self._peeked = self._messages.get(timeout=timeout) if timeout > 0 else self._messages.get_nowait()
            except queue.Empty:
                return False
        return True

    def recv(self) -> tuple[str, Any]:
        if not self.poll(600.0):
            raise EOFError
        msg, self._peeked = self._peeked, None
        assert msg is not None
        if msg[0] == "error" and self._stderr:
            return ("error", f"{msg[1]} (stderr: {' | '.join(self._stderr[-3:])})")
        return msg

    # the process
    def is_alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def exitcode(self) -> int | None:
        return self.proc.poll()

    def join(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _spawner(python: str, spec_dir: str) -> Callable[[str, dict[str, Any]], tuple[Any, Any, Any]]:
    def spawn(kind: str, spec: dict[str, Any]) -> tuple[Any, Any, Any]:
        path = os.path.join(spec_dir, f"{kind}.json")
        with open(path, "wb") as f:
            f.write(orjson.dumps(spec))
        p = _PeerProcess(python, kind, path)
        return p, p, p.progress
    return spawn


def run_peers(records: list[Record], partitions: int, partner: dict[str, str], limit_ticks_per_s: float,
              python: str | None = None, log: Callable[[str], None] = lambda _: None,
              broker: Any = None) -> dict[str, Any]:
    """Each peer over ``records`` (one tick per record) on a topic of its own on ``broker`` (the
    limit's; None: a fresh embedded broker); peer -> its result with ``vs_limit``, or
    {"installed": False}."""
    python = python or sys.executable
    versions = installed(python)
    out: dict[str, Any] = {"python": python}
    ticks = sum(r[3] for r in records)
    with tempfile.TemporaryDirectory(prefix="rw-bench-peers-") as spec_dir, \
            (contextlib.nullcontext(broker) if broker is not None else EmbeddedBroker()) as broker:
        spawn = _spawner(python, spec_dir)
        for peer in PEERS:
            if versions.get(peer) is None:
                log(f"peers: {peer} is not installed for {python}: skipped")
                out[peer] = {"installed": False}
                continue
            topic = f"bench.peer.{peer}"
            broker.create_topic(topic, partitions)
            log(f"peers: {peer} {versions[peer]}, one tick per record")
            spec = {"bootstrap": broker.bootstrap, "topic": topic, "ticks": ticks, "partner": partner}
            try:
                r = run_phase(peer, f"peer {peer}", spec, broker.bootstrap, topic, records, partitions,
                              spawn=spawn, prefill=True)
            except BenchError as e:
                log(f"peers: {peer} failed: {e}")
                out[peer] = {"installed": True, "version": versions[peer], "error": str(e)}
                continue
            r["installed"] = True
            r["vs_limit"] = round(r["ticks_per_s"] / limit_ticks_per_s, 3) if r["ticks_per_s"] else None
            out[peer] = r
    return out
