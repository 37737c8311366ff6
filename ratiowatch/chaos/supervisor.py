"""The chaos run's handle on its worker process (:mod:`ratiowatch.chaos.worker`): started,
SIGKILLed and restarted on purpose, stopped cleanly at the end. An exit the run did not cause is
recorded (it fails the run) and the worker is started again, so the run goes on to show what
else it would have lost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

__all__ = ["WorkerProcess", "worker_argv"]


def worker_argv(broker_url: str, config: Path, datadir: Path) -> list[str]:
    """The command line of the worker: the module, run by this interpreter."""
    return [sys.executable, "-m", "ratiowatch.chaos.worker", "--broker", broker_url, "--config", str(config),
            "--datadir", str(datadir)]


class WorkerProcess:
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
