"""Where a faust app stands as a member of its consumer group, read from faust and aiokafka.

A role's start and its watchdogs (ratiowatch/roles/startup_watch.py) decide on these plain values;
only this module reads the clients' internals (listed in streams/faust_consumer.py, OVERRIDDEN,
which pins the versions they were read from).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faust.exceptions import ConsumerNotStarted

__all__ = ["crash_reason", "MemberState", "member_state", "coordination_error"]


@dataclass(frozen=True, slots=True)
class MemberState:
    """``assigned``: the member owns partitions; ``recovered``: the rebalance that gave them is
    over, their tables' state recovery included (also for an app without tables); ``coordination_error``: why the client's group coordination stopped for
    good, None while it runs."""

    assigned: bool
    recovered: bool
    coordination_error: str | None = None


def member_state(app: Any) -> MemberState:
    try:
        assigned = bool(app.consumer.assignment())
    except ConsumerNotStarted:  # faust starts its consumer thread a moment after App.start begins
        assigned = False
    # faust counts the recovery after an assignment as part of the rebalance.
    recovered = app.tables.recovery.completed.is_set() and not app.rebalancing
    return MemberState(assigned=assigned, recovered=recovered, coordination_error=coordination_error(app))


def crash_reason(app: Any) -> str | None:
    """Why the faust app crashed, or None. A timer or an agent that raises crashes the app: mode
    logs it and marks the app crashed, and the rest of the process goes on as if nothing had
    happened, evaluating nothing. The role must stop so that its restart policy brings it back."""
    crashed = getattr(app, "_crashed", None)
    if crashed is not None and crashed.is_set():
        return f"the worker crashed: {getattr(app, 'crash_reason', None)!r}"
    return None


def coordination_error(app: Any) -> str | None:
    """Why aiokafka's group coordination stopped, or None while it runs (or has not started).

    aiokafka runs the group protocol (join, sync, heartbeats) in one task. An answer it does not
    expect (e.g. SyncGroup answered UNKNOWN_SERVER_ERROR) ends that task with an exception, and an
    authorization error parks the coordination until the application reads it. Either way the
    member never gets partitions again, while its process looks alive: the role must hear of it.
    """
    thread = getattr(app.consumer, "_thread", None) if app.consumer is not None else None
    inner = getattr(thread, "_consumer", None)
    coordinator = getattr(inner, "_coordinator", None)
    task = getattr(coordinator, "_coordination_task", None)
    if task is None:
        return None  # no group (NoGroupCoordinator), or not started yet
    if task.done() and not task.cancelled():
        exc = task.exception()
        if exc is not None:
            return f"{type(exc).__name__}: {exc}"
    pending = getattr(coordinator, "_pending_exception", None)
    if pending is not None:
        return f"{type(pending).__name__}: {pending}"
    return None
