"""``ratiowatch history fetch``: download daily series into ``SYMBOL.csv`` files (``date,close``)
for warm start and backtests.

Resumable: a file that exists is read for its last date, only later dates are fetched (FRED
``cosd``, Stooq ``d1``) and appended; a second run appends nothing. Validated before anything is
written: the new rows must parse, ascend strictly after the file's last date, and be positive
unless the symbol is signed (a spread such as T10Y2Y); a symbol that fails writes nothing and
says why. An existing file that is not a clean ``date,close`` file with ascending dates is an error
too (fix or remove it): appending to it would only hide the problem.
"""

from __future__ import annotations

import math
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from .poller import Series, fetch_text, parse_series, series_url

__all__ = ["FetchResult", "HistoryFileError", "last_date", "fetch_into"]


class HistoryFileError(Exception):
    """A history file or a download that cannot be used; the message names the file and the problem."""


class FetchResult(NamedTuple):
    symbol: str
    appended: int
    last: date | None


def last_date(path: Path) -> date | None:
    """The last date of an existing ``date,close`` file (None: no file, or a header only); checks
    the whole file ascends."""
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip()
        if header != "date,close":
            raise HistoryFileError(f"{path}: header must be 'date,close', got {header[:60]!r}")
        last = None
        for n, line in enumerate(f, start=2):
            line = line.strip()
            if not line:
                continue
            try:
                d = date.fromisoformat(line.split(",", 1)[0])
            except ValueError:
                raise HistoryFileError(f"{path} line {n}: {line[:40]!r} does not start with a YYYY-MM-DD date") from None
            if last is not None and d <= last:
                raise HistoryFileError(f"{path} line {n}: {d} is not after {last} (dates must ascend)")
            last = d
    return last


async def fetch_into(session: Any, base_url: str, s: Series, folder: Path, *, signed: frozenset[str] = frozenset(),
                     since: date | None = None) -> FetchResult:
    """Fetch ``s`` and append its new closes to ``folder/SYMBOL.csv``."""
    path = folder / f"{s.symbol}.csv"
    last = last_date(path)
    start = (last + timedelta(days=1)) if last else since
    text = await fetch_text(session, series_url(base_url, s, start))
    obs, bad = parse_series(s, text)
    if bad:
        raise HistoryFileError(f"{s.vendor} {s.remote}: {len(bad)} bad rows, first: {bad[0].detail}")
    new = [o for o in obs if (last is None or o.day > last) and (start is None or o.day >= start)]
    for o in new:
        if not math.isfinite(o.value) or (o.value <= 0 and s.symbol not in signed):
            hint = "" if s.symbol in signed else " (a series that may go negative needs --signed)"
            raise HistoryFileError(f"{s.vendor} {s.remote}: {o.day} has value {o.value!r}{hint}")
    if new:
        body = "".join(f"{o.day.isoformat()},{o.value!r}\n" for o in new)
        folder.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            if last is None and f.tell() == 0:
                body = "date,close\n" + body
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
    return FetchResult(s.symbol, len(new), new[-1].day if new else last)
