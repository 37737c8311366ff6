"""Notification fan-out: route -> group -> quiet hours/rate limit -> dedup -> deliver/retry -> record.

The entry point is :class:`NotificationService` (service.py documents the integration surface).
"""

from .exceptions import DeliveryError, InvalidEvent, NotifyError, PermanentError, RetryableError
from .retry import RetryPolicy
from .service import NotificationService

__all__ = ["NotificationService", "RetryPolicy", "NotifyError", "InvalidEvent", "DeliveryError",
           "RetryableError", "PermanentError"]
