"""The config's symbols against what a tick source provides: named, and warned about at start."""

from __future__ import annotations

import logging
from typing import Iterable

from ratiowatch.model.config import Config

__all__ = ["unprovided_symbols", "warn_unprovided_symbols"]

log = logging.getLogger("ratiowatch.config")


def unprovided_symbols(config: Config, provided: Iterable[str]) -> dict[str, str]:
    """The config's symbols that ``provided`` (what a tick source has: a history folder's files, the
    simulated market's list, a feed's subscriptions) does not have: symbol -> the first place
    (``scenario ID.trigger.series`` or ``scenario ID.confirmations[j].series``) that names it."""
    have = {s.upper() for s in provided}
    out: dict[str, str] = {}
    for sc in config.scenarios:
        for j, r in enumerate(sc.rules):
            where = f"scenario {sc.id}." + ("trigger" if j == 0 else f"confirmations[{j - 1}]") + ".series"
            for leg in r.series.legs:
                if leg not in have and leg not in out:
                    out[leg] = where
    return out


def warn_unprovided_symbols(config: Config, provided: Iterable[str], source: str) -> list[str]:
    """Log (WARNING, at start) each config symbol that ``source`` (e.g. "the simulated market")
    does not provide, naming the file and the place; returns the messages."""
    have = sorted({s.upper() for s in provided})
    msgs = [f"{config.path}: {where}: symbol {sym} is not provided by {source} (it provides: {', '.join(have)})"
            for sym, where in unprovided_symbols(config, have).items()]
    for m in msgs:
        log.warning("%s", m)
    return msgs
