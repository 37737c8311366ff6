"""Notification fan-out: route -> per channel: group -> hold (quiet hours, rate limit) -> stages.

A channel's stages are a list (pipeline.py: dedup, mute, rate, render, chart, send/retry, dead
letter, record), each with the one signature of stage.py, and the decisions they take are pure
functions that give a reason (decide.py). The entry point is :class:`NotificationService`
(service.py documents the integration surface).
"""

from .exceptions import DeliveryError, InvalidEvent, NotifyError, PermanentError, RetryableError
from .retry import RetryPolicy
from .service import NotificationService

__all__ = ["NotificationService", "RetryPolicy", "NotifyError", "InvalidEvent", "DeliveryError",
           "RetryableError", "PermanentError"]
