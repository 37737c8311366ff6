"""Exceptions of the notification fan-out.

    RatiowatchError                    (ratiowatch.errors)
    └── NotifyError                    root of the notifiers' own errors
        ├── InvalidEvent               an event lacks what routing needs: fix the producer
        └── DeliveryError              one delivery attempt failed (message already redacted)
            ├── RetryableError         worth another attempt: connection refused, timeout, 5xx, 429
            └── PermanentError         another attempt cannot help: 4xx, a URL apprise rejects

Adapters (deliver.py) decide which of the two a failure is; the retry loop (retry.py) only
looks at ``retryable``, so a new integration never needs a change in the loop.
"""

from __future__ import annotations

from ratiowatch.errors import RatiowatchError

__all__ = ["NotifyError", "InvalidEvent", "DeliveryError", "RetryableError", "PermanentError"]


class NotifyError(RatiowatchError):
    """Root of the notifiers' errors."""


class InvalidEvent(NotifyError):
    """An event handed to the notification service is not an event of schema v1 (a field that
    routing needs is missing or of the wrong type). Nothing was queued; the event is still on the
    ``events`` topic, so fix its producer and replay it."""


class DeliveryError(NotifyError):
    """One attempt to deliver a message failed. The text is safe to log: secrets are redacted."""

    retryable = True


class RetryableError(DeliveryError):
    """The channel may accept the message later (network down, timeout, server error, throttled):
    the retry loop tries again after a backoff, and dead-letters it after the last attempt."""

    retryable = True


class PermanentError(DeliveryError):
    """The channel refused the message in a way another attempt cannot fix (e.g. HTTP 400/401/404,
    a URL apprise does not understand): it is dead-lettered at once. Fix the channel, then run
    ``ratiowatch dlq retry``."""

    retryable = False
