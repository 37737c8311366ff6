"""Where ticks come from, and so what the events made of them are: ``live`` market data,
``simulated`` (the built-in market simulator) or ``replay`` (history sent again: ``ratiowatch
replay``, a backtest).

A source says it in a record header (:data:`HEADER`) on every ``ticks`` record it writes; a
record without it is taken as the engine's own (a vendor adapter written elsewhere knows nothing
of ratiowatch). Each engine runs for one origin (``ratiowatch engine --origin``, default live)
and dead-letters a record that says another: simulated prices must never reach a trader as live
alerts. Every event and every status carries the engine's origin, and every place a person reads
one (console, page, email, Slack, push) says when it is not live.
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["LIVE", "SIMULATED", "REPLAY", "ORIGINS", "HEADER", "header", "origin_of"]

LIVE, SIMULATED, REPLAY = "live", "simulated", "replay"
ORIGINS = (LIVE, SIMULATED, REPLAY)
HEADER = "ratiowatch-origin"


def header(origin: str) -> list[tuple[str, bytes]]:
    """The Kafka record headers saying ``origin``."""
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, not {origin!r}")
    return [(HEADER, origin.encode())]


def origin_of(headers: Iterable[tuple[str, Any]] | None) -> str | None:
    """The origin a record's headers declare; None when they do not (or not legibly: the caller
    treats an unknown word as a mismatch, see agents/route.py)."""
    for k, v in headers or ():
        if k == HEADER:
            try:
                return bytes(v).decode()
            except (TypeError, UnicodeDecodeError):
                return "<undecodable>"
    return None
