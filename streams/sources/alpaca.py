"""Alpaca market data stream v2 (stocks), JSON. Pure.

Follows https://docs.alpaca.markets/docs/streaming-market-data (connection, authentication,
subscription, errors) and https://docs.alpaca.markets/docs/real-time-stock-pricing-data (the trade
message). Every server message is a JSON array of objects told apart by ``T``:

1. connect -> ``[{"T":"success","msg":"connected"}]``; we send
   ``{"action":"auth","key":KEY,"secret":SECRET}`` (keys from ``APCA_API_KEY_ID`` /
   ``APCA_API_SECRET_KEY``, never printed);
2. ``[{"T":"success","msg":"authenticated"}]``; we send
   ``{"action":"subscribe","trades":[SYMBOLS]}``;
3. ``[{"T":"subscription","trades":[...],"quotes":[],"bars":[],...}]`` acknowledges: symbols the
   vendor left out are reported (status ``subscribed`` with ``missing``);
4. trades ``{"T":"t","S":"IWM","i":96921,"x":"D","p":210.5,"s":100,"t":"2026-01-05T15:51:44.208Z",
   "c":["@"],"z":"C"}`` become ticks ``(S, p, t)``. Quotes (``q``), bars (``b``, ``d``, ``u``),
   trading statuses (``s``), LULD (``l``), corrections (``c``) and cancels (``x``) are not prices
   we apply: ignored.
5. ``{"T":"error","code":N,"msg":...}``: 401 not authenticated, 402 auth failed, 403 already
   authenticated, 404 auth timeout, 405 symbol limit exceeded, 406 connection limit exceeded,
   409 insufficient subscription, 400/410 invalid syntax or subscribe action are fatal (retrying
   cannot fix them and would hammer the vendor); 407 slow client and 500 internal error drop the
   connection and reconnect with backoff.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..feed_formats import Item
from ..ticks import Rejected
from .base import NOTHING, Reply

__all__ = ["AlpacaProtocol", "FATAL_CODES", "RETRY_CODES"]

FATAL_CODES = frozenset({400, 401, 402, 403, 404, 405, 406, 409, 410})
RETRY_CODES = frozenset({407, 500})
_IGNORED = frozenset({"q", "b", "d", "u", "s", "l", "c", "x", "n"})


class AlpacaProtocol:
    """One connection's handshake state: ``new`` -> ``connected`` -> ``authenticated`` -> ``subscribed``."""

    name = "alpaca"

    def __init__(self, symbols: list[str], *, key: str, secret: str) -> None:
        self.symbols = list(symbols)
        self._key, self._secret = key, secret
        self.phase = "new"
        self.acked: tuple[str, ...] = ()

    def __repr__(self) -> str:  # the keys must never reach a log line
        return f"AlpacaProtocol(phase={self.phase!r}, symbols={len(self.symbols)})"

    def state(self) -> tuple:
        return (self.phase, self.acked)

    def start(self) -> list[str]:
        return []  # the docs: wait for the welcome message, then authenticate

    def _auth(self) -> str:
        return orjson.dumps({"action": "auth", "key": self._key, "secret": self._secret}).decode()

    def _subscribe(self) -> str:
        return orjson.dumps({"action": "subscribe", "trades": self.symbols}).decode()

    def handle(self, doc: Any) -> Reply:
        objs = doc if isinstance(doc, list) else [doc]
        if not objs:
            return Reply(items=(Item(doc, Rejected("empty_batch", "an empty array carries no message (alpaca)", doc)),))
        items: list[Item] = []
        send: list[str] = []
        status = None
        for obj in objs:
            if not isinstance(obj, dict):
                items.append(Item(obj, Rejected("not_object", f"an alpaca message must be a JSON object, got {type(obj).__name__}", obj)))
                continue
            kind = obj.get("T")
            if kind == "t":
                items.append(self._trade(obj))
            elif isinstance(kind, str) and kind in _IGNORED:
                continue
            elif kind == "success":
                msg = obj.get("msg")
                if msg == "connected" and self.phase == "new":
                    self.phase, status = "connected", "connected"
                    send.append(self._auth())
                elif msg == "authenticated" and self.phase == "connected":
                    self.phase, status = "authenticated", "authenticated"
                    send.append(self._subscribe())
                elif msg in ("connected", "authenticated"):
                    continue  # a repeat: nothing to do
                else:
                    items.append(Item(obj, Rejected("bad_message", f"unknown alpaca success message {str(msg)[:60]!r}", obj)))
            elif kind == "subscription":
                trades = obj.get("trades")
                if not isinstance(trades, list) or not all(isinstance(s, str) for s in trades):
                    items.append(Item(obj, Rejected("bad_message", "an alpaca subscription ack needs 'trades' as a list of symbols", obj)))
                    continue
                self.phase, self.acked, status = "subscribed", tuple(trades), "subscribed"
            elif kind == "error":
                code, msg = obj.get("code"), str(obj.get("msg", ""))[:200]
                if isinstance(code, bool) or not isinstance(code, int):
                    items.append(Item(obj, Rejected("bad_message", "an alpaca error needs an integer 'code'", obj)))
                    continue
                text = f"alpaca error {code}: {msg}"
                if code in RETRY_CODES:
                    return Reply(items=tuple(items), send=tuple(send), retry=text, status=status)
                return Reply(items=tuple(items), send=tuple(send), fatal=text, status=status)
            elif kind is None:
                items.append(Item(obj, Rejected("missing_field", "missing 'T' (the alpaca message type)", obj)))
            else:
                items.append(Item(obj, Rejected("bad_message", f"unknown alpaca message type {str(kind)[:20]!r}", obj)))
        if not items and not send and status is None:
            return NOTHING
        return Reply(items=tuple(items), send=tuple(send), status=status)

    @staticmethod
    def _trade(obj: dict) -> Item:
        for f in ("S", "p", "t"):
            if f not in obj:
                return Item(obj, Rejected("missing_field", f"missing {f!r} in an alpaca trade", obj))
        return Item(obj, {"symbol": obj["S"], "price": obj["p"], "ts": obj["t"]})

    def missing(self) -> list[str]:
        """Symbols we asked for that the subscription ack did not list."""
        acked = set(self.acked)
        return [s for s in self.symbols if s not in acked and "*" not in acked]
