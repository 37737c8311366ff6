"""What a vendor websocket protocol is: a small state machine per connection. Pure.

A protocol object is created for each connection (:data:`ProtocolFactory`). :meth:`~Protocol.start`
gives the frames to send right after connecting; :meth:`~Protocol.handle` takes one decoded JSON
message and answers with a :class:`Reply`: the candidate ticks (as :class:`~.feed_formats.Item`),
frames to send (the subscription once authenticated), and whether the connection must be dropped
and retried (``retry``) or the feed must stop (``fatal``: an authentication failure or a limit
that retrying cannot fix; retrying it would be a retry storm against the vendor).

Rejected input never changes a protocol's state: :meth:`~Protocol.state` is compared before and
after by the fuzz tests.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol as _Protocol

from ratiowatch.errors import RatiowatchError

__all__ = ["Reply", "Protocol", "ProtocolFactory", "FeedFatalError", "NOTHING"]


class FeedFatalError(RatiowatchError):
    """The vendor refused us in a way retrying cannot fix (authentication failed, a subscription or
    connection limit, a malformed subscription). The feed stops instead of reconnecting: check the
    keys in the environment (they are never printed) and the plan's entitlements."""


class Reply(NamedTuple):
    items: tuple = ()            # Items: candidate ticks or Rejected, see feed_formats.Item
    send: tuple[str, ...] = ()   # text frames to send now
    retry: str | None = None     # drop the connection and reconnect (with backoff): why
    fatal: str | None = None     # stop the feed: why (no secret in it)
    status: str | None = None    # a protocol milestone worth reporting (connected, authenticated, subscribed)


NOTHING = Reply()


class Protocol(_Protocol):
    name: str

    def start(self) -> list[str]: ...

    def handle(self, doc: Any) -> Reply: ...

    def state(self) -> tuple: ...


ProtocolFactory = Callable[[list[str]], Protocol]
