"""Daily history from a folder of ``SYMBOL.csv`` files (``date,close``), read with polars.

Used by warm start (seed windows and armed flags before live ticks), by ``replay`` (history sent
as ticks through the streaming path) and by ``backtest`` (the vectorized batch path).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Iterable, Iterator

import polars as pl

from ratiowatch.errors import ConfigError
from ratiowatch.model.sessions import session_close_ts_ms

from .ticks import Tick

__all__ = ["available_symbols", "load_history", "daily_ticks"]


def available_symbols(folder: str | Path) -> set[str]:
    """Symbols that have a ``SYMBOL.csv`` in ``folder``."""
    p = Path(folder)
    if not p.is_dir():
        raise ConfigError(str(folder), "", "history folder not found")
    return {f.stem.upper() for f in p.glob("*.csv")}


def load_history(folder: str | Path, symbols: Iterable[str], signed: Iterable[str] = ()) -> pl.DataFrame:
    """Long frame ``symbol, date, close`` sorted by date then symbol. A file that is malformed
    fails with its name and the problem. ``signed``: symbols whose closes may be <= 0 (T10Y2Y)."""
    signed = {s.upper() for s in signed}
    frames = []
    for sym in sorted(set(symbols)):
        path = Path(folder) / f"{sym}.csv"
        if not path.exists():
            raise ConfigError(str(path), "", f"no history for symbol {sym}")
        try:
            df = pl.read_csv(path, schema_overrides={"date": pl.Utf8, "close": pl.Float64})
        except Exception as e:  # polars raises several error types for bad CSV
            raise ConfigError(str(path), "", f"cannot read as date,close CSV: {e}") from None
        if df.columns[:2] != ["date", "close"]:
            raise ConfigError(str(path), "header", f"must be 'date,close', got {','.join(df.columns)}")
        df = df.select(pl.lit(sym).alias("symbol"), pl.col("date").str.to_date("%Y-%m-%d", strict=False), "close")
        bad = df.filter(pl.col("date").is_null() | pl.col("close").is_null() | ~pl.col("close").is_finite()
                        | ((pl.col("close") <= 0) & (sym not in signed)))
        if bad.height:
            hint = "" if sym in signed else " (a series that may go negative belongs in settings.signed_symbols)"
            raise ConfigError(str(path), "", f"{bad.height} rows with a bad date or a non-positive close{hint}")
        frames.append(df)
    if not frames:
        return pl.DataFrame(schema={"symbol": pl.Utf8, "date": pl.Date, "close": pl.Float64})
    return pl.concat(frames).sort(["date", "symbol"])


def daily_ticks(history: pl.DataFrame, tz: str = "America/New_York",
                start: date | None = None, end: date | None = None) -> Iterator[tuple[date, list[Tick]]]:
    """Each date's closes as ticks stamped at that date's 16:00 in ``tz``, one group per date."""
    h = history
    if start is not None:
        h = h.filter(pl.col("date") >= start)
    if end is not None:
        h = h.filter(pl.col("date") <= end)
    for (d,), part in h.group_by("date", maintain_order=True):
        ts = session_close_ts_ms(d, tz)
        yield d, [Tick(s, c, ts) for s, c in zip(part["symbol"].to_list(), part["close"].to_list())]
