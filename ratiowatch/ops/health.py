"""Health and readiness of one process, as plain values: no I/O, time injected.

- **Health** (``/healthz``): the process is working. Its asyncio loop turns: a heartbeat task
  (:meth:`Health.heartbeat`) stamps the time every ``interval_s``; if the last stamp is older than
  ``stall_after_s`` the loop is stuck or the heartbeat died, and the process should be restarted.
  (A loop blocked outright cannot answer at all: the health check then fails by its timeout.)
  Roles may add liveness checks of their own (e.g. "the faust worker crashed").
- **Readiness** (``/readyz``): the process does its job now. Ready once every registered check
  passes (a process with no checks is ready). A check is a callable returning ``None`` when it
  passes or the reason it does not ("no partitions assigned yet"); or a :class:`ReadyFlag` that a
  role flips itself when a one-off condition is met ("scenario-status read to its end").

Both answers name every check with its reason, so the 503 body says what is being waited for.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["Health", "Check", "CheckResult", "Verdict", "ReadyFlag"]

# () -> None when the check passes, else why it does not (one short sentence, for a human).
Check = Callable[[], "str | None"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checks: dict[str, CheckResult]

    def as_json(self) -> dict:
        return {"status": "ok" if self.ok else "failing",
                "checks": {name: {"ok": r.ok, "reason": r.reason} for name, r in self.checks.items()}}


class ReadyFlag:
    """A readiness check that a role flips: not ready with ``reason`` until :meth:`ready`."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason: str | None = reason

    def ready(self) -> None:
        self.reason = None

    def not_ready(self, reason: str) -> None:
        self.reason = reason

    def __call__(self) -> str | None:
        return self.reason


class Health:
    """Liveness and readiness checks of one process; see the module docstring.

    ``now`` is monotonic seconds, a parameter so tests can drive it."""

    def __init__(self, *, stall_after_s: float = 10.0, now: Callable[[], float] = time.monotonic) -> None:
        if stall_after_s <= 0:
            raise ValueError("stall_after_s must be > 0")
        self.stall_after_s = stall_after_s
        self._now = now
        self._last_beat = now()  # a process that just started is alive
        self.loop_lag_s = 0.0
        self._live: dict[str, Check] = {"heartbeat": self._heartbeat_check}
        self._ready: dict[str, Check] = {}

    # --- registration -----------------------------------------------------------------------------

    def add_live_check(self, name: str, check: Check) -> None:
        _add(self._live, name, check)

    def add_ready_check(self, name: str, check: Check) -> None:
        _add(self._ready, name, check)

    def ready_flag(self, name: str, reason: str) -> ReadyFlag:
        """Register and return a :class:`ReadyFlag` failing with ``reason`` until flipped."""
        flag = ReadyFlag(reason)
        self.add_ready_check(name, flag)
        return flag

    # --- heartbeat --------------------------------------------------------------------------------

    def beat(self) -> None:
        self._last_beat = self._now()

    async def heartbeat(self, interval_s: float = 1.0) -> None:
        """Stamp the time every ``interval_s`` until cancelled, recording how late each wake-up
        was (the loop lag: time spent in callbacks that did not yield)."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval_s
            await asyncio.sleep(interval_s)
            self.loop_lag_s = max(0.0, loop.time() - due)
            self.beat()

    def _heartbeat_check(self) -> str | None:
        age = self._now() - self._last_beat
        if age > self.stall_after_s:
            return f"event loop heartbeat is {age:.1f}s old (limit {self.stall_after_s:g}s)"
        return None

    # --- answers ----------------------------------------------------------------------------------

    def liveness(self) -> Verdict:
        return _run(self._live)

    def readiness(self) -> Verdict:
        """Every readiness check; a process that is not alive is not ready either."""
        return _run({**self._ready, "heartbeat": self._heartbeat_check})


def _add(checks: dict[str, Check], name: str, check: Check) -> None:
    if name in checks:
        raise ValueError(f"a check named {name!r} is already registered")
    checks[name] = check


def _run(checks: dict[str, Check]) -> Verdict:
    results: dict[str, CheckResult] = {}
    for name, check in checks.items():
        try:
            reason = check()
        except Exception as e:  # a broken check fails loudly in the answer, not the server
            reason = f"check raised {type(e).__name__}: {e}"
        results[name] = CheckResult(reason is None, reason)
    return Verdict(all(r.ok for r in results.values()), results)
