"""Checkpoints: the order in which a worker makes its progress durable, in one place.

The order of one checkpoint (what makes a restart safe):
 1. faust chooses the offsets to commit: everything the route and evaluate stages have handled;
 2. :meth:`Checkpoint.write` waits for the producer to have every record sent so far (shard
    records, events) acknowledged, then writes each owned shard's changed scenario states and
    the shard's own state (applied source offsets, waiting ticks, partition progress) to the
    ``scenario-state`` changelog, once per scenario however many ticks touched it;
 3. faust flushes the producer: the shard records, events and state writes of 1-2 are on the
    broker (a write the producer gives up on stops the worker first, see agents/pipeline.py);
 4. faust commits the offsets chosen in 1.
So a committed offset is always covered by a written state. A worker killed before 4 re-reads from
its last commit, skips what its state had admitted and re-applies the rest; the events that
re-applying produces again were sent before the kill, and a shard taken over reads them back from
``events`` and does not send them twice (agents/pipeline.py, ``events_on_topic``).

When: the periodic commit runs every COMMIT_INTERVAL_S, stretched under load so that writing state
stays within WRITE_SHARE of the time (10,000 busy scenarios take ~0.5 s to write), up to
COMMIT_INTERVAL_MAX_S; commits on revocation and shutdown always run. A timer also writes state
when ticks were applied with no commit to carry them (a quiet feed's last ticks, released by the
idle timer), without touching the commit schedule: the two never share one clock, so neither can
starve the other.

The stored form: a scenario's state in two parts (``ScenarioState.live_dict`` under its id, and
``history_dict`` under ``<id>/history``, written only when past closes change), and each shard's
own state under ``~shard/<n>`` (``ShardState.to_dict``). The live part also names the rules
version it was built under: a shard loaded after its scenario's rules changed (while no worker had
it) starts that scenario again. A removed scenario's parts are deleted with tombstones, written by
the shard's next write ahead of its other records.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from typing import Any, Awaitable, Callable

import orjson

from .engine import ScenarioState
from .evaluate import ShardState
from ratiowatch.model.sessions import iso_utc

__all__ = ["Checkpoint", "SHARD_KEY_PREFIX", "HISTORY_SUFFIX"]

log = logging.getLogger(__name__)

SHARD_KEY_PREFIX = "~shard/"  # table key of a shard's own state; '~' sorts after scenario ids
HISTORY_SUFFIX = "/history"   # table key of a scenario's past closes (ids cannot contain '/')
RULES_KEY = "rules"           # in a scenario's live part: the rules version it was built under
REWRITE_AFTER_BYTES = 2 * 1024 * 1024
COMMIT_INTERVAL_S = 1.0
WRITE_SHARE = 0.1
COMMIT_INTERVAL_MAX_S = 30.0

# put(partition, key, value) writes one changelog record (value None: a tombstone) and returns its
# size in bytes.
Put = Callable[[int, bytes, bytes | None], Awaitable[int]]


class Checkpoint:
    """Loads shard state from the table and writes it back, in the order above."""

    def __init__(self, table: Any, put: Put, flush: Callable[[], Awaitable[None]], *, counters: Counter[str],
                 seed: dict[str, ScenarioState] | None = None, shard_of: Callable[[str], int] | None = None) -> None:
        self.table = table
        self.put = put
        self.flush = flush
        self.counters = counters
        self.seed = seed or {}  # warm-start states, for scenarios the table has no state for
        self.restarted: list[str] = []  # scenarios whose stored state was dropped at load (rules changed)
        # scenario id -> its shard; with it, a shard's load deletes the states of removed scenarios
        self.shard_of = shard_of
        self._committed_at = time.monotonic()
        self._written_at = time.monotonic()
        self._write_took = 0.0

    # --- loading --------------------------------------------------------------------------------

    def load(self, sh: ShardState) -> None:
        """Fill a shard taken over from the table (recovered from the changelog by faust)."""
        saved = self._get(f"{SHARD_KEY_PREFIX}{sh.n}".encode())
        if saved:
            sh.restore(saved)
            log.info("shard %d resumes at event time %s, after ticks offsets %s", sh.n,
                     iso_utc(sh.gate.frontier) if sh.gate.frontier >= 0 else "none", sh.applied or "none")
        else:
            log.info("shard %d starts with no stored state", sh.n)
        for sid, e in sh.engine.engines.items():
            live = self._get(sid.encode())
            if live and live.get(RULES_KEY, e.rules_version) != e.rules_version:
                # Its rules changed while no worker had this shard: that state means nothing now.
                log.info("scenario %s: its rules changed since its state was written: it starts again", sid)
                self.forget(sh, sid)  # both parts: the old past closes must not join a new state
                self.restarted.append(sid)
                live = None
            if live:
                history = self._get((sid + HISTORY_SUFFIX).encode())
                sh.states[sid] = st = ScenarioState.from_parts(live, history, e.keep)
                # Their copies are somewhere in the changelog: count them as written at its
                # start, so they are re-written before the broker's retention can drop them.
                sh.last_written[(sid, False)] = 0
                if not st.history_changed:
                    sh.last_written[(sid, True)] = 0
                else:
                    sh.dirty.add(sid)
            elif sid in self.seed:
                seed = self.seed[sid]
                sh.states[sid] = st = ScenarioState.from_parts(seed.live_dict(), seed.history_dict(), e.keep)
                st.history_changed = True  # both parts written with the next checkpoint: the past
                sh.dirty.add(sid)          # closes are what a restart must find
        if self.shard_of is not None:
            for sid in self.orphans(sh, self.shard_of):
                log.info("scenario %s was removed: its stored state is deleted", sid)
                self.forget(sh, sid)

    def orphans(self, sh: ShardState, shard_of: Callable[[str], int]) -> list[str]:
        """Scenario ids with a state in the table for this shard and no engine: removed while no
        worker had the shard (deleted with :meth:`forget`)."""
        ids = set()
        for key in list(self.table.data.keys()):
            k = bytes(key).decode("utf-8", "replace")
            if k.startswith(SHARD_KEY_PREFIX):
                continue
            sid = k.removesuffix(HISTORY_SUFFIX)
            if sid not in sh.engine.engines and shard_of(sid) == sh.n:
                ids.add(sid)
        return sorted(ids)

    def forget(self, sh: ShardState, sid: str) -> None:
        """Drop a scenario's state (removed, or restarted under new rules). Its stored parts are
        deleted, with tombstones on the changelog, by the shard's next write."""
        sh.states.pop(sid, None)
        sh.dirty.discard(sid)
        for history in (False, True):
            sh.last_written.pop((sid, history), None)
            self.table.data.pop((sid + HISTORY_SUFFIX if history else sid).encode(), None)
        sh.deleted.add(sid)
        sh.meta_dirty = True

    def _get(self, key: bytes) -> dict[str, Any] | None:
        raw = self.table.get(key)
        return orjson.loads(raw) if raw else None

    # --- when -----------------------------------------------------------------------------------

    def commit_due(self) -> bool:
        """Whether the periodic commit should run now (see the module docstring)."""
        wait = min(COMMIT_INTERVAL_MAX_S, max(COMMIT_INTERVAL_S, self._write_took / WRITE_SHARE))
        return time.monotonic() - self._committed_at >= wait * 0.95  # the commit timer ticks each second

    def write_due(self) -> bool:
        """Whether the timer should write state with no commit to carry it."""
        return time.monotonic() - max(self._written_at, self._committed_at) >= COMMIT_INTERVAL_S

    # --- step 2 ---------------------------------------------------------------------------------

    async def before_commit(self, shards: Callable[[], list[ShardState]]) -> None:
        """Step 2, run by the consumer between choosing offsets and committing them."""
        self._committed_at = time.monotonic()
        await self.write(shards())

    async def write(self, shards: list[ShardState], owned: Callable[[int], bool] = lambda n: True) -> bool:
        """Write every given shard's changed state; returns whether anything was written. Every
        shard's lock is taken first (in shard order; nothing else holds two), so one flush covers
        the events of all of them. A flush waits until everything sent before it is acknowledged,
        the previous shards' state writes included: one per shard held each commit (and the ticks
        arriving meanwhile) ~20 ms longer with 1,000 scenarios."""
        started = time.monotonic()
        wrote = False
        async with contextlib.AsyncExitStack() as held:
            for sh in sorted(shards, key=lambda s: s.n):
                await held.enter_async_context(sh.lock)
            mine = [sh for sh in shards if owned(sh.n)]  # not revoked while we waited: the new owner has it
            if any(self._changed(sh) for sh in mine):
                await self.flush()
            for sh in mine:
                wrote = await self.write_shard(sh, flushed=True) or wrote
        self._written_at = time.monotonic()
        self._write_took = self._written_at - started
        return wrote

    @staticmethod
    def _changed(sh: ShardState) -> bool:
        """Whether write_shard has anything to write for ``sh`` (see there)."""
        return bool(sh.dirty or sh.meta_dirty
                    or any(sh.written - at > REWRITE_AFTER_BYTES for at in sh.last_written.values()))

    async def write_shard(self, sh: ShardState, flushed: bool = False) -> bool:
        """The shard's changed scenarios (the live part; the history part when it changed) and its
        own state. The caller holds the shard's lock."""
        # The embedded broker keeps only the newest 5 MB of a partition and cannot compact, so a
        # state written long ago would vanish from the changelog: re-write any part whose last
        # copy is older than half that window.
        stale = [k for k, at in sh.last_written.items() if sh.written - at > REWRITE_AFTER_BYTES]
        if not (sh.dirty or sh.meta_dirty or stale):
            return False
        # The events of the ticks this state counts as applied must be on the broker before the
        # state is: a state written ahead of a lost event would skip its ticks after a restart,
        # and the event would never be sent. A lost write stops the worker in this flush, before
        # any state that covers it (_StopOnLostWrite, agents/pipeline.py). The lock the caller
        # holds keeps new events of this shard from slipping in between (``write`` flushes once for
        # all the shards whose locks it holds: ``flushed``).
        if not flushed:
            await self.flush()
        deleted, sh.deleted = sh.deleted, set()
        for sid in deleted:
            for key in (sid, sid + HISTORY_SUFFIX):
                # A scenario restarted under new rules is written again below (dirty), after these.
                sh.written += await self.put(sh.n, key.encode(), None)
            self.counters["state_deletes"] += 1
        dirty, sh.dirty = sh.dirty, set()
        for sid in dirty:
            st = sh.states[sid]
            if st.history_changed:
                await self._put_part(sh, sid, True, st.history_dict())
                st.history_changed = False
            await self._put_part(sh, sid, False, self._live(sh, sid, st))
        for sid, history in stale:
            if sid not in dirty and sid in sh.states:
                st = sh.states[sid]
                await self._put_part(sh, sid, history, st.history_dict() if history else self._live(sh, sid, st))
        sh.written += await self._put(sh.n, f"{SHARD_KEY_PREFIX}{sh.n}".encode(), sh.to_dict())
        sh.meta_dirty = False
        return True

    @staticmethod
    def _live(sh: ShardState, sid: str, st: ScenarioState) -> dict[str, Any]:
        return {**st.live_dict(), RULES_KEY: sh.engine.engines[sid].rules_version}

    async def _put_part(self, sh: ShardState, sid: str, history: bool, value: dict[str, Any]) -> None:
        key = (sid + HISTORY_SUFFIX) if history else sid
        sh.written += await self._put(sh.n, key.encode(), value)
        sh.last_written[(sid, history)] = sh.written

    async def _put(self, partition: int, key: bytes, value: dict[str, Any]) -> int:
        self.counters["state_writes"] += 1
        return await self.put(partition, key, orjson.dumps(value))
