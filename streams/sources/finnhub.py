"""Finnhub websocket trades. Pure.

Follows https://finnhub.io/docs/api/websocket-trades: connect to ``wss://ws.finnhub.io?token=KEY``
(the key from ``FINNHUB_API_KEY``, added to the URL by the source role and never printed: the
source label drops the query), then send ``{"type":"subscribe","symbol":"AAPL"}`` once per symbol.
The server sends

- ``{"type":"trade","data":[{"s":"AAPL","p":129.58,"t":1672348887666,"v":1,"c":["1"]}, ...]}``:
  each item becomes a tick ``(s, p, t)`` (``t`` is epoch milliseconds);
- ``{"type":"ping"}``: a heartbeat, it only proves the connection alive;
- ``{"type":"error","msg":"..."}``: Finnhub reports a refused subscription (e.g. too many
  symbols for the plan) this way: fatal, retrying cannot fix it.

Finnhub sends no subscription acknowledgement. A wrong key is refused at the handshake (HTTP
401/403), which the feed client turns into a fatal error.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..feed_formats import Item
from ..ticks import Rejected
from .base import NOTHING, Reply

__all__ = ["FinnhubProtocol"]


class FinnhubProtocol:
    name = "finnhub"

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = list(symbols)

    def state(self) -> tuple:
        return ()  # stateless: no acknowledgement to wait for

    def start(self) -> list[str]:
        return [orjson.dumps({"type": "subscribe", "symbol": s}).decode() for s in self.symbols]

    def handle(self, doc: Any) -> Reply:
        if not isinstance(doc, dict):
            return Reply(items=(Item(doc, Rejected("not_object", f"a finnhub message must be a JSON object, got {type(doc).__name__}", doc)),))
        kind = doc.get("type")
        if kind == "ping":
            return NOTHING
        if kind == "error":
            return Reply(fatal=f"finnhub error: {str(doc.get('msg', ''))[:200]}")
        if kind != "trade":
            if kind is None:
                return Reply(items=(Item(doc, Rejected("missing_field", "missing 'type' (the finnhub message type)", doc)),))
            return Reply(items=(Item(doc, Rejected("bad_message", f"unknown finnhub message type {str(kind)[:20]!r}", doc)),))
        data = doc.get("data")
        if not isinstance(data, list) or not data:
            return Reply(items=(Item(doc, Rejected("missing_field", "a finnhub trade message needs a non-empty 'data' array", doc)),))
        items = []
        for obj in data:
            if not isinstance(obj, dict):
                items.append(Item(obj, Rejected("not_object", f"a finnhub trade must be a JSON object, got {type(obj).__name__}", obj)))
                continue
            missing = [f for f in ("s", "p", "t") if f not in obj]
            if missing:
                items.append(Item(obj, Rejected("missing_field", f"missing {missing[0]!r} in a finnhub trade", obj)))
                continue
            t = obj["t"]
            # Finnhub's t is always epoch milliseconds: say so (ts_ms), or a small value would be read as seconds.
            tick = {"symbol": obj["s"], "price": obj["p"], "ts_ms": t} if type(t) is int else {"symbol": obj["s"], "price": obj["p"], "ts": t}
            items.append(Item(obj, tick))
        return Reply(items=tuple(items))
