"""Retry: bounded attempts with exponential backoff and jitter, generic over the adapter.

The loop knows one thing about a failure: ``DeliveryError.retryable``. Adapters decide that
(deliver.py), so the loop stays the same for every integration. Retries stop at whichever comes
first: ``attempts`` tries, a permanent error, or the ``deadline_s`` since the first try (a next
attempt that could not start before the deadline is not made); ``decide.after_failure`` says
which. Time and randomness are injected so tests run through many retries without sleeping.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Awaitable, Callable

from .decide import GIVE_UP, after_failure
from .exceptions import DeliveryError

__all__ = ["RetryPolicy", "RetryResult", "backoff_s", "retry"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5            # tries in all, the first included
    base_delay_s: float = 2.0    # the wait after the first failure, before jitter
    max_delay_s: float = 60.0    # no single wait is longer
    deadline_s: float = 600.0    # no attempt starts later than this after the first
    attempt_timeout_s: float = 30.0  # one try may take this long (passed to apprise)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.deadline_s < 0 or self.attempt_timeout_s <= 0:
            raise ValueError("delays and the deadline must be >= 0, the attempt timeout > 0")


@dataclass(frozen=True, slots=True)
class RetryResult:
    ok: bool
    attempts: int
    error: DeliveryError | None = None


def backoff_s(failures: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> float:
    """The wait after the ``failures``-th failure: ``base * 2**(failures-1)`` capped at ``max``, then
    "equal jitter" (half fixed, half random) so that many channels failing together do not retry
    in lockstep, yet no wait collapses to zero."""
    d = min(policy.max_delay_s, policy.base_delay_s * 2 ** (failures - 1))
    return d / 2 + rand() * d / 2


async def retry(attempt: Callable[[int], Awaitable[None]], policy: RetryPolicy, *,
                now: Callable[[], float], sleep: Callable[[float], Awaitable[None]],
                rand: Callable[[], float] = random.random,
                on_failure: Callable[[int, DeliveryError, bool], Awaitable[None]] | None = None) -> RetryResult:
    """Call ``attempt(n)`` (n = 1, 2, ...) until it returns. ``on_failure(n, error, final)`` is
    awaited after each failure; ``final`` tells whether another attempt will follow."""
    start = now()
    n = 0
    while True:
        n += 1
        try:
            await attempt(n)
            return RetryResult(True, n)
        except DeliveryError as e:
            delay = backoff_s(n, policy, rand)
            decision = after_failure(e.retryable, n, policy.attempts, now() + delay - start, policy.deadline_s)
            final = decision.action == GIVE_UP
            if on_failure is not None:
                await on_failure(n, e, final)
            if final:
                return RetryResult(False, n, e)
            await sleep(delay)
