"""Silences, on Alertmanager's model: a time window during which a scenario's notifications are
not sent. Pure: time is always passed in.

A silence names scenario ids (or ``*``: every scenario), a start, an end, a comment and an author.
It lives on the compacted ``silences`` topic as JSON keyed by its id. It is never deleted:
expiring it writes it again with ``ends_at`` = now, as Alertmanager does, so expired silences
stay listable (and auditable) until someone tombstones the key by hand.

Notify and the web role follow the topic into a :class:`SilenceSet`; a scenario is muted at ``t``
when some silence matching it has ``starts_at <= t < ends_at``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import orjson

__all__ = ["ALL", "Silence", "SilenceError", "SilenceSet", "new_silence", "expire", "parse_duration",
           "parse_until", "encode", "decode", "state"]

ALL = "*"  # the matcher that matches every scenario, the ones added later included
_MAX_COMMENT = 1000
_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"^(-?)((?:\d+(?:\.\d+)?[wdhms])+)$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")


class SilenceError(ValueError):
    """Bad input for a silence (CLI exit 2, API 400), or a record on the topic that is not one."""


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[str, ...]  # scenario ids, or (ALL,)
    starts_at: datetime         # aware, UTC
    ends_at: datetime
    comment: str
    author: str
    created_at: datetime
    updated_at: datetime

    def matches(self, scenario: str) -> bool:
        return ALL in self.matchers or scenario in self.matchers

    def active(self, t: datetime) -> bool:
        return self.starts_at <= t < self.ends_at

    def as_json(self) -> dict[str, Any]:
        iso = _iso
        return {"id": self.id, "matchers": list(self.matchers), "starts_at": iso(self.starts_at),
                "ends_at": iso(self.ends_at), "comment": self.comment, "author": self.author,
                "created_at": iso(self.created_at), "updated_at": iso(self.updated_at)}


def state(s: Silence, now: datetime) -> str:
    """``pending`` (starts later), ``active`` or ``expired``, as amtool shows them."""
    return "pending" if now < s.starts_at else "active" if now < s.ends_at else "expired"


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_duration(text: str) -> timedelta:
    """``4h``, ``90m``, ``1d12h``, ``2w``. SilenceError for anything else and for a duration <= 0."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise SilenceError(f"--for {text!r}: expected a duration such as 30m, 4h, 1d12h or 2w")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(m.group(2)))
    if m.group(1) or seconds <= 0:
        raise SilenceError(f"--for {text!r}: a silence must last longer than zero")
    return timedelta(seconds=seconds)


def parse_until(text: str) -> datetime:
    """An ISO-8601 time with a UTC offset (``2026-12-03T09:30-05:00``, ``...Z``). Without an offset
    the time is refused rather than guessed: a trader's local time and the server's differ."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SilenceError(f"--until {text!r}: not an ISO-8601 time (e.g. 2026-12-03T09:30:00-05:00)") from None
    if t.tzinfo is None:
        raise SilenceError(f"--until {text!r}: give a UTC offset (e.g. {text.strip()}Z or {text.strip()}-05:00)")
    return t.astimezone(timezone.utc)


def new_silence(scenarios: Iterable[str], *, all_scenarios: bool = False, duration: str | None = None,
                until: str | datetime | None = None, comment: str, author: str, now: datetime,
                known: Iterable[str], silence_id: str | None = None) -> Silence:
    """A validated silence starting ``now``. SilenceError naming the problem: no or unknown
    scenario, both or neither of scenarios and ``all_scenarios``, both or neither of ``duration``
    and ``until``, a duration <= 0, an end not after now, an empty comment or author."""
    ids = list(dict.fromkeys(s.strip() for s in scenarios))
    if all_scenarios and ids:
        raise SilenceError("name scenarios or --all, not both")
    if not all_scenarios and not ids:
        raise SilenceError("name at least one scenario, or --all")
    known_set = set(known)
    unknown = [s for s in ids if s not in known_set]
    if unknown:
        raise SilenceError(f"unknown scenario {', '.join(map(repr, unknown))} "
                           f"(known: {', '.join(sorted(known_set)) or 'none'})")
    if (duration is None) == (until is None):
        raise SilenceError("give exactly one of --for DURATION or --until TIME")
    now = now.astimezone(timezone.utc)
    if duration is not None:
        ends = now + parse_duration(duration)
    else:
        ends = until.astimezone(timezone.utc) if isinstance(until, datetime) else parse_until(until)
        if ends <= now:
            raise SilenceError(f"--until {_iso(ends)} is not in the future (now {_iso(now)})")
    comment, author = comment.strip(), author.strip()
    if not comment:
        raise SilenceError("--comment is required: say why, for whoever finds the scenario muted")
    if len(comment) > _MAX_COMMENT:
        raise SilenceError(f"--comment is longer than {_MAX_COMMENT} characters")
    if not author:
        raise SilenceError("--author must not be empty")
    return Silence(silence_id or str(uuid.uuid4()), (ALL,) if all_scenarios else tuple(ids), now, ends,
                   comment, author, now, now)


def expire(s: Silence, now: datetime) -> Silence:
    """The silence ended at ``now`` (a pending one never starts). SilenceError if already expired."""
    now = now.astimezone(timezone.utc)
    if s.ends_at <= now:
        raise SilenceError(f"silence {s.id} already expired at {_iso(s.ends_at)}")
    return replace(s, starts_at=min(s.starts_at, now), ends_at=now, updated_at=now)


# ---------------------------------------------------------------------- the topic's records

def encode(s: Silence) -> tuple[bytes, bytes]:
    """(key, value) for the ``silences`` topic."""
    return s.id.encode(), orjson.dumps(s.as_json())


def _time(d: dict[str, Any], key: str) -> datetime:
    v = d.get(key)
    if not isinstance(v, str):
        raise SilenceError(f"{key!r} must be an ISO-8601 string")
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        raise SilenceError(f"{key!r}: {v!r} is not ISO-8601") from None
    if t.tzinfo is None:
        raise SilenceError(f"{key!r}: {v!r} has no UTC offset")
    return t.astimezone(timezone.utc)


def decode(key: bytes | None, value: bytes) -> Silence:
    """The silence of one record; SilenceError saying what is wrong (it was written by hand, or by
    something else than ratiowatch)."""
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise SilenceError(f"not JSON: {e}") from None
    if not isinstance(d, dict):
        raise SilenceError(f"a silence is a JSON object, got {type(d).__name__}")
    sid = d.get("id")
    if not isinstance(sid, str) or not sid:
        raise SilenceError("no 'id'")
    if key is not None and key.decode(errors="replace") != sid:
        raise SilenceError(f"key {key!r} is not the silence id {sid!r}")
    matchers = d.get("matchers")
    if not isinstance(matchers, list) or not matchers or not all(isinstance(m, str) and m for m in matchers):
        raise SilenceError("'matchers' must be a non-empty list of scenario ids (or '*')")
    for k in ("comment", "author"):
        if not isinstance(d.get(k), str):
            raise SilenceError(f"{k!r} must be a string")
    s = Silence(sid, tuple(matchers), _time(d, "starts_at"), _time(d, "ends_at"), d["comment"], d["author"],
                _time(d, "created_at"), _time(d, "updated_at") if "updated_at" in d else _time(d, "created_at"))
    if s.ends_at < s.starts_at:
        raise SilenceError("'ends_at' is before 'starts_at'")
    return s


class SilenceSet:
    """The silences read from the topic so far: the latest record per id wins (compaction's rule)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Silence] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> Silence | None:
        """Take one record. A tombstone (value None) removes its key. SilenceError for a malformed
        record, which changes nothing: the last good version of that silence stays in force."""
        if value is None:
            if key is not None:
                self._by_id.pop(key.decode(errors="replace"), None)
            return None
        s = decode(key, value)
        self._by_id[s.id] = s
        return s

    def put(self, s: Silence) -> None:
        self._by_id[s.id] = s

    def get(self, silence_id: str) -> Silence | None:
        return self._by_id.get(silence_id)

    def all(self) -> list[Silence]:
        """Newest first, the order ``silence list`` shows."""
        return sorted(self._by_id.values(), key=lambda s: (s.created_at, s.id), reverse=True)

    def muting(self, scenario: str, t: datetime) -> Silence | None:
        """The active silence matching ``scenario`` at ``t`` that ends last, or None."""
        found = [s for s in self._by_id.values() if s.matches(scenario) and s.active(t)]
        return max(found, key=lambda s: s.ends_at) if found else None

    def __len__(self) -> int:
        return len(self._by_id)
