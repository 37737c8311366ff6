"""Daily series as CSV: FRED's ``fredgraph.csv`` and Stooq's daily download, parsed; and what a
poller sends of them. Pure.

- FRED, https://fred.stlouisfed.org/graph/fredgraph.csv?id=DGS10 (the "Download CSV" link of a
  series page, documented with FRED's graph API: https://fred.stlouisfed.org/docs/api/fred/):
  header ``observation_date,DGS10`` (older exports: ``DATE,DGS10``), one ``YYYY-MM-DD,value`` row
  a day, ``.`` (or an empty field) for a day without a value (a bond-market holiday): skipped,
  it is no price and no error.
- Stooq, https://stooq.com/q/d/l/?s=spy.us&i=d: header ``Date,Open,High,Low,Close,Volume``; the
  body ``No data`` for an unknown symbol. The close is the observation.

A row that does not parse, repeats a date or goes back in time is rejected with a reason (it goes
to ``ticks.dlq``); the good rows next to it are kept.

**Policy for what a poll sends** (:class:`SeriesTracker`): an observation is sent once; an
unchanged one is never sent again. A *revised* value (same date, new value) of the newest date
sent is sent again (the engine applies it as a correction of the leg's latest price); a revision
of an older date is counted and logged, not sent: the engine does not rewrite the past, and old
revisions would only be dead-lettered as late.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import date
from typing import NamedTuple

from ..ticks import Rejected

__all__ = ["Obs", "parse_fred_csv", "parse_stooq_csv", "SeriesTracker", "Changes"]

_MISSING = (".", "", "NaN", "#N/A")


class Obs(NamedTuple):
    day: date
    value: float


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def _rows(text: str, date_col: tuple[str, ...], value_col: str | None, what: str
          ) -> tuple[list[Obs], list[Rejected]]:
    good: list[Obs] = []
    bad: list[Rejected] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as e:
        return [], [Rejected("bad_csv", f"{what}: not CSV: {e}", text[:2000])]
    if not header:
        return [], [Rejected("bad_csv", f"{what}: empty response", text[:2000])]
    cols = [h.strip().lstrip("\ufeff") for h in header]
    if cols[0] not in date_col:
        return [], [Rejected("bad_csv", f"{what}: header must start with {' or '.join(date_col)}, got {','.join(cols)[:120]!r}", text[:2000])]
    vi = 1 if value_col is None else (cols.index(value_col) if value_col in cols else -1)
    if vi < 0 or vi >= len(cols):
        return [], [Rejected("bad_csv", f"{what}: no {value_col or 'value'} column in {','.join(cols)[:120]!r}", text[:2000])]
    last: date | None = None
    rows = enumerate(reader, start=2)
    while True:
        try:
            n, row = next(rows)
        except StopIteration:
            break
        except csv.Error as e:  # the rest of the body cannot be read as CSV: say so, keep what came before
            bad.append(Rejected("bad_csv", f"{what}: not CSV at line {reader.line_num}: {e}", text[:2000]))
            break
        if not row or all(not c.strip() for c in row):
            continue
        raw = ",".join(row)
        d = _date(row[0])
        if d is None:
            bad.append(Rejected("bad_row", f"{what} line {n}: {row[0][:40]!r} is not a YYYY-MM-DD date", raw))
            continue
        if len(row) <= vi:
            bad.append(Rejected("bad_row", f"{what} line {n}: no value column", raw))
            continue
        cell = row[vi].strip()
        if cell in _MISSING:
            continue
        try:
            v = float(cell)
        except ValueError:
            bad.append(Rejected("bad_row", f"{what} line {n}: {cell[:40]!r} is not a number", raw))
            continue
        if not math.isfinite(v):
            bad.append(Rejected("bad_row", f"{what} line {n}: {cell[:40]!r} is not a finite number", raw))
            continue
        if last is not None and d <= last:
            bad.append(Rejected("bad_row", f"{what} line {n}: {d} is not after {last} (dates must ascend)", raw))
            continue
        last = d
        good.append(Obs(d, v))
    return good, bad


def parse_fred_csv(text: str, series: str) -> tuple[list[Obs], list[Rejected]]:
    """``fredgraph.csv`` of one series: its observations (missing days left out) and bad rows."""
    good, bad = _rows(text, ("observation_date", "DATE", "date"), None, f"FRED {series}")
    return good, bad


def parse_stooq_csv(text: str, stooq_id: str) -> tuple[list[Obs], list[Rejected]]:
    """Stooq's daily CSV: the closes, and bad rows (``No data`` is one rejection)."""
    if text.strip().lower().startswith("no data"):
        return [], [Rejected("no_data", f"Stooq has no data for {stooq_id!r}", text[:200])]
    return _rows(text, ("Date",), "Close", f"Stooq {stooq_id}")


class Changes(NamedTuple):
    send: list[Obs]        # new observations, and a revision of the newest one sent
    revised: list[Obs]     # revisions among ``send``
    ignored: list[Obs]     # revisions of older dates: logged, not sent


class SeriesTracker:
    """What one series has sent. :meth:`changes` is pure; :meth:`commit` records what was published
    (call it only after publishing succeeded, so a failed publish is sent again next poll)."""

    def __init__(self, since: date | None = None) -> None:
        self.since = since
        self.sent: dict[date, float] = {}
        self.newest: date | None = None

    def changes(self, obs: list[Obs]) -> Changes:
        send, revised, ignored = [], [], []
        for o in obs:
            if self.since is not None and o.day < self.since:
                continue
            prev = self.sent.get(o.day)
            if prev is None:
                if self.newest is None or o.day > self.newest:
                    send.append(o)
                continue  # a new date older than the newest sent: a backfilled gap, the past is not rewritten
            if prev != o.value:
                if o.day == self.newest:
                    send.append(o)
                    revised.append(o)
                else:
                    ignored.append(o)
        return Changes(send, revised, ignored)

    def commit(self, changes: Changes) -> None:
        """Record a published :class:`Changes` (the ignored revisions too: each is logged once)."""
        for o in (*changes.send, *changes.ignored):
            self.sent[o.day] = o.value
            if self.newest is None or o.day > self.newest:
                self.newest = o.day
        if len(self.sent) > 64:  # only the newest dates can change what is sent
            for d in sorted(self.sent)[:-32]:
                del self.sent[d]
