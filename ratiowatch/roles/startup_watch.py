"""Bounds on a group member's start, and a watch for a member its group coordination left behind.

A role (engine, notify) that joins a consumer group is not started until it owns partitions and
has recovered their state. Either may never happen: the group cannot be formed (a coordinator that
keeps failing, every partition held by other members), the client's group coordination stopped on
an answer it does not recover from, or the changelog cannot be read to its end. A role must then
exit non-zero at once, saying which, so that its restart policy brings it back; it must never sit
alive and idle. :func:`startup_verdict` decides on plain values (pure); :func:`watch_startup` and
:func:`watch_coordination` are the thin timers around it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable

from ratiowatch.streams.member_state import MemberState

__all__ = ["StartupBounds", "StartupFailed", "Verdict", "WAIT", "READY", "startup_verdict", "watch_startup",
           "start_watched", "watch_coordination", "ASSIGN_TIMEOUT_S", "RECOVERY_TIMEOUT_S"]

ASSIGN_TIMEOUT_S = 60.0  # well past a rebalance (the group's session timeout, 15 s by default)
RECOVERY_TIMEOUT_S = 120.0  # the changelog of a full-size state reads in a few seconds here
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class StartupBounds:
    """``assign_s``: from the start until the member owns partitions; ``recover_s``: from then
    until their state is recovered."""

    assign_s: float = ASSIGN_TIMEOUT_S
    recover_s: float = RECOVERY_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class Verdict:
    ready: bool = False
    failure: str | None = None  # set: give up, with this message


WAIT = Verdict()
READY = Verdict(ready=True)


class StartupFailed(RuntimeError):
    """The member could not get its partitions or recover their state within its bounds."""


def startup_verdict(state: MemberState, *, waited_s: float, assigned_for_s: float | None,
                    bounds: StartupBounds, group: str) -> Verdict:
    """Whether a starting member is ready, should go on waiting, or must give up (and why).
    ``waited_s``: since the start; ``assigned_for_s``: since it first owned partitions (None: never)."""
    if state.coordination_error is not None:
        return Verdict(failure=f"no partitions assigned after {waited_s:.1f} s: the group coordination of {group} "
                               f"stopped on an answer the client does not recover from "
                               f"({state.coordination_error}); this member would never get partitions")
    if state.assigned and state.recovered:
        return READY
    if not state.assigned:
        if waited_s >= bounds.assign_s:
            return Verdict(failure=f"no partitions assigned after {bounds.assign_s:g} s: the group {group} did not "
                                   "give this member any (its coordinator failing, or other members holding them all)")
        return WAIT
    if assigned_for_s is not None and assigned_for_s >= bounds.recover_s:
        return Verdict(failure=f"table recovery did not finish within {bounds.recover_s:g} s: the member of {group} "
                               "owns partitions but could not read their changelog to its end")
    return WAIT


async def watch_startup(probe: Callable[[], MemberState], bounds: StartupBounds, *, group: str) -> None:
    """Return once ``probe()`` says ready; raise StartupFailed as soon as the verdict says so."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    assigned_at: float | None = None
    while True:
        state = probe()
        now = loop.time()
        if state.assigned and assigned_at is None:
            assigned_at = now
        verdict = startup_verdict(state, waited_s=now - started, bounds=bounds, group=group,
                                  assigned_for_s=None if assigned_at is None else now - assigned_at)
        if verdict.ready:
            return
        if verdict.failure is not None:
            raise StartupFailed(verdict.failure)
        await asyncio.sleep(POLL_S)


async def start_watched(start: Awaitable[None], watch: Awaitable[None]) -> None:
    """Run a client's ``start`` and the ``watch`` on it side by side: faust's App.start does not
    return before the group has formed, so a watch that waited for it would never get to judge.
    Returns once both are done; the first to fail cancels the other and its error is raised."""
    starting, watching = asyncio.ensure_future(start), asyncio.ensure_future(watch)
    try:
        done, _ = await asyncio.wait({starting, watching}, return_when=asyncio.FIRST_EXCEPTION)
        for task in (watching, starting):  # the watch's verdict says more than what it interrupted
            if task in done and not task.cancelled() and task.exception() is not None:
                raise task.exception()
    finally:
        for task in (starting, watching):
            task.cancel()
        await asyncio.gather(starting, watching, return_exceptions=True)


async def watch_coordination(error: Callable[[], str | None], *, group: str, every_s: float = 1.0) -> str:
    """For a running member: returns (why) once it cannot work on: its app crashed, or its group
    coordination stopped for good (it then owns nothing and never will again). The caller exits
    so that it is restarted."""
    while True:
        why = error()
        if why is not None:
            if why.startswith("the worker crashed"):
                return f"{group}: {why}"
            return f"the group coordination of {group} stopped on an answer the client does not recover from ({why})"
        await asyncio.sleep(every_s)
