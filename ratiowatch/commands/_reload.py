"""``ratiowatch run`` follows its --config file: applied again on SIGHUP and whenever the file
changes on disk, with the diff printed. Scenarios only: the roles of this process take them from
the ``scenarios`` topic within seconds. Channels and settings are read at start; a change to them
is said, and needs a restart.

A file that does not load (bad YAML, an unknown key, a threshold that is not a number) is not
applied: the error is printed, naming the file, the key and the problem, and the scenarios in
force stay as they are.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from ratiowatch.config import load_config
from ratiowatch.errors import ConfigError
from ratiowatch.model import Config

__all__ = ["FileFollower", "POLL_S"]

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the file is looked at (a stat and, when it changed, a read)


class FileFollower:
    """``apply(config)`` publishes the scenarios of a freshly loaded file and prints the diff (it
    runs in a thread: kafka-python is blocking)."""

    def __init__(self, path: str, started_with: Config, apply: Callable[[Config], Any], *,
                 known_symbols: Iterable[str] | None = None, out: Any = None) -> None:
        self.path = Path(path)
        self.config = started_with
        self.apply = apply
        self.known = known_symbols
        self.out = out or sys.stdout
        self.applied = 0  # times the file was applied again
        self._digest = self._read_digest()
        self._hup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None  # gone or unreadable for a moment (an editor replacing it): looked at again

    def start(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hup.set)
        self._task = asyncio.create_task(self._watch(), name="config-file")

    async def _watch(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._hup.wait(), POLL_S)
                why = "SIGHUP"
            except asyncio.TimeoutError:
                why = "the file changed"
            self._hup.clear()
            digest = self._read_digest()
            if why != "SIGHUP" and (digest is None or digest == self._digest):
                continue
            self._digest = digest
            await self.reload(why)

    async def reload(self, why: str) -> bool:
        """Load the file and apply it; False (and the error printed) when it does not load."""
        self._say(f"ratiowatch: {self.path}: {why}: applying it again")
        try:
            config = load_config(self.path, known_symbols=self.known)
        except ConfigError as e:
            self._say(f"ratiowatch: not applied, the scenarios in force stay: {e}")
            return False
        if config.channels != self.config.channels or config.settings != self.config.settings:
            self._say("ratiowatch: channels or settings changed in the file: they take effect at the next start")
        await asyncio.get_running_loop().run_in_executor(None, self.apply, config)
        self.config = config
        self.applied += 1
        return True

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
