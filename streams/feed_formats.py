"""Vendor message formats: how one decoded websocket message becomes candidate tick objects. Pure.

A format is one function ``doc -> list[Item]``: each :class:`Item` pairs the vendor's own item
(what goes to ``ticks.dlq`` if it is rejected, so the record shows what the vendor sent) with
either a tick object ``{"symbol", "price", "ts"}`` for :func:`ratiowatch.streams.ticks.parse_tick_obj`
to validate, or a :class:`~ratiowatch.streams.ticks.Rejected` when the item does not have the
format's shape. Items the format knows to be no prices (status, heartbeat, quote events...) are
left out: they are neither ticks nor errors.

Adding a vendor is writing one function and registering it in :data:`FORMATS`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .ticks import Rejected

__all__ = ["Item", "Format", "FORMATS", "plain", "polygon", "get_format"]


class Item(NamedTuple):
    raw: Any                    # the vendor's item as received (decoded JSON)
    tick: Any                   # what parse_tick_obj validates (`plain` passes non-objects through for it
                                # to reject), or a Rejected: why the item has the wrong shape


Format = Callable[[Any], list[Item]]


def _as_list(doc: Any, fmt: str) -> list[Any] | Rejected:
    """A message is one item or an array of items; an empty array carries nothing usable."""
    if isinstance(doc, list):
        if not doc:
            return Rejected("empty_batch", f"an empty array carries no tick ({fmt})", doc)
        return doc
    return [doc]


def plain(doc: Any) -> list[Item]:
    """Our own tick shape: ``{"symbol", "price", "ts"}`` or an array of them."""
    items = _as_list(doc, "plain")
    if isinstance(items, Rejected):
        return [Item(doc, items)]
    # parse_tick_obj checks the shape itself (not_object, missing_field, ...).
    return [Item(obj, obj) for obj in items]


# Polygon-style field names of a trade event, mapped to ours.
_POLYGON_TRADE = {"sym": "symbol", "p": "price", "t": "ts"}


def polygon(doc: Any) -> list[Item]:
    """Polygon-style events: ``[{"ev": "T", "sym": "IWM", "p": 277.6, "t": 1766000000000}, ...]``.
    Trades (``ev == "T"``) become ticks; other events (``status``, quotes, aggregates) are ignored."""
    items = _as_list(doc, "polygon")
    if isinstance(items, Rejected):
        return [Item(doc, items)]
    out: list[Item] = []
    for obj in items:
        if not isinstance(obj, dict):
            out.append(Item(obj, Rejected("not_object", f"a polygon event must be a JSON object, got {type(obj).__name__}", obj)))
            continue
        ev = obj.get("ev")
        if ev is None:
            out.append(Item(obj, Rejected("missing_field", "missing 'ev' (the polygon event type)", obj)))
            continue
        if ev != "T":
            continue
        missing = [k for k in _POLYGON_TRADE if k not in obj]
        if missing:
            out.append(Item(obj, Rejected("missing_field", f"missing {missing[0]!r} in a polygon trade", obj)))
            continue
        out.append(Item(obj, {ours: obj[theirs] for theirs, ours in _POLYGON_TRADE.items()}))
    return out


FORMATS: dict[str, Format] = {"plain": plain, "polygon": polygon}


def get_format(name: str) -> Format:
    """The format called ``name``. Raises KeyError naming the valid choices."""
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown feed format {name!r} (choose one of: {', '.join(sorted(FORMATS))})") from None
