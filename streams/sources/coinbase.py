"""Coinbase Exchange websocket feed, ``ticker`` and ``heartbeat`` channels. Pure.

Follows https://docs.cdp.coinbase.com/exchange/websocket-feed/overview (subscribe, the
``subscriptions`` reply, ``error`` messages) and
https://docs.cdp.coinbase.com/exchange/websocket-feed/channels (ticker, heartbeat):

- we send ``{"type":"subscribe","product_ids":[...],"channels":["ticker","heartbeat"]}``;
- ``{"type":"subscriptions","channels":[{"name":"ticker","product_ids":[...]}, ...]}`` acknowledges;
- ``{"type":"ticker","product_id":"ETH-USD","price":"3012.55","time":"2026-01-05T12:00:00.123456Z",
  "sequence":..., "trade_id":..., ...}``: ``price`` is a decimal string; becomes a tick;
- ``{"type":"heartbeat","product_id":...,"sequence":...,"last_trade_id":...,"time":...}``: keeps
  the connection proven alive (the feed's silence timer);
- ``{"type":"error","message":"Failed to subscribe","reason":"..."}``: fatal (a bad product or an
  authentication failure; retrying would repeat it).

The ticker channel is public: no key. Symbols: product ``BASE-USD`` is symbol ``BASE`` (``ETH``,
``BTC``, so ``ETH/BTC`` is a ratio of two legs); any other quote currency keeps it after a dot
(``ETH-BTC`` is ``ETH.BTC``; the dash would read as a spread in a scenario).
Crypto trades 24/7: see :mod:`.calendar` for what a session is.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..feed_formats import Item
from ..ticks import Rejected
from .base import NOTHING, Reply

__all__ = ["CoinbaseProtocol", "product_for", "symbol_for"]


def product_for(symbol: str) -> str:
    base, dot, quote = symbol.upper().partition(".")
    return f"{base}-{quote}" if dot else f"{base}-USD"


def symbol_for(product: str) -> str:
    base, _, quote = product.upper().partition("-")
    return base if quote in ("USD", "") else f"{base}.{quote}"


class CoinbaseProtocol:
    name = "coinbase"

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = list(symbols)
        self.products = [product_for(s) for s in self.symbols]
        self.acked: tuple[str, ...] = ()

    def state(self) -> tuple:
        return (self.acked,)

    def start(self) -> list[str]:
        return [orjson.dumps({"type": "subscribe", "product_ids": self.products,
                              "channels": ["ticker", "heartbeat"]}).decode()]

    def handle(self, doc: Any) -> Reply:
        if not isinstance(doc, dict):
            return Reply(items=(Item(doc, Rejected("not_object", f"a coinbase message must be a JSON object, got {type(doc).__name__}", doc)),))
        kind = doc.get("type")
        if kind == "ticker":
            return Reply(items=(self._ticker(doc),))
        if kind == "heartbeat":
            return NOTHING
        if kind == "subscriptions":
            chans = doc.get("channels")
            if not isinstance(chans, list):
                return Reply(items=(Item(doc, Rejected("bad_message", "a coinbase subscriptions reply needs 'channels' as a list", doc)),))
            acked: set[str] = set()
            for c in chans:
                if isinstance(c, dict) and c.get("name") == "ticker" and isinstance(c.get("product_ids"), list):
                    acked.update(p for p in c["product_ids"] if isinstance(p, str))
            self.acked = tuple(sorted(acked))
            return Reply(status="subscribed")
        if kind == "error":
            return Reply(fatal=f"coinbase error: {str(doc.get('message', ''))[:100]}: {str(doc.get('reason', ''))[:200]}")
        if kind is None:
            return Reply(items=(Item(doc, Rejected("missing_field", "missing 'type' (the coinbase message type)", doc)),))
        return NOTHING  # other channels' messages (status, last_match): not prices we apply

    @staticmethod
    def _ticker(doc: dict) -> Item:
        for f in ("product_id", "price", "time"):
            if f not in doc:
                return Item(doc, Rejected("missing_field", f"missing {f!r} in a coinbase ticker", doc))
        pid, price = doc["product_id"], doc["price"]
        if not isinstance(pid, str) or not pid:
            return Item(doc, Rejected("bad_symbol", "product_id must be a non-empty string", doc))
        if isinstance(price, str):
            try:
                price = float(price)
            except ValueError:
                return Item(doc, Rejected("bad_price", f"price {price[:40]!r} is not a decimal number", doc))
        return Item(doc, {"symbol": symbol_for(pid), "price": price, "ts": doc["time"]})

    def missing(self) -> list[str]:
        return [p for p in self.products if p not in self.acked]
