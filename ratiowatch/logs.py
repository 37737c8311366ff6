"""Known-harmless client records downgraded at their source, so that ERROR means an error.

The Kafka client libraries log a few records at ERROR level that, in ratiowatch, describe normal
operation: the client handles the condition itself and carries on. Each is matched exactly (its
logger, its message template and the error it names) and rewritten to a lower level; anything
else those loggers say is left as it is, at its own level. Nothing is silenced wholesale.

===========================================  ==============================================  =======
logger                                       record                                          becomes
===========================================  ==============================================  =======
``aiokafka.consumer.group_coordinator``      ``OffsetCommit failed for group G due to group   INFO
                                             error (RebalanceInProgressError), will rejoin``
                                             : a member's commit raced a rebalance (every
                                             join does this); aiokafka rejoins at once
``aiokafka.consumer.group_coordinator``      ``Unexpected error from SyncGroup:               INFO
                                             InvalidRequestError``: the embedded broker's
                                             answer to a late follower, which
                                             ``streams/faust_consumer.py``
                                             (``_rejoin_on_invalid_sync``) turns into a rejoin
                                             and reports with its own WARNING
``kafka.protocol.parser``                    ``Unable to decode N-byte buffer`` of an         WARNING
                                             *ApiVersions* response: kafka-python probes its
                                             newest version, cannot read the embedded
                                             broker's answer, and falls back. Only a client
                                             built without ``api_version`` (see
                                             ``streams/clients.py``) probes, hence a warning
``kafka.conn``                               ``Closing connection. KafkaProtocolError:        WARNING
                                             Unable to decode response`` while checking API
                                             versions: the same probe's connection, dropped
                                             and opened again
``kafka.conn``                               ``Closing connection. KafkaConnectionError:      INFO
                                             Socket EVENT_READ without in-flight-requests``:
                                             the broker closed an idle connection (e.g. at
                                             shutdown); the client reconnects when needed
===========================================  ==============================================  =======

:func:`install` puts the filters on those loggers; the command line (``ratiowatch/cli.py``)
calls it once logging is configured. A downgraded record is dropped when its logger is not
enabled for the new level (so INFO stays out of a run without ``-v``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

__all__ = ["Downgrade", "DOWNGRADES", "DowngradeFilter", "install", "uninstall"]


def _arg(record: logging.LogRecord, i: int) -> object:
    args = record.args if isinstance(record.args, tuple) else ()
    return args[i] if len(args) > i else None


def _name_of(obj: object) -> str:
    if isinstance(obj, str):
        return obj
    return getattr(obj, "__name__", None) or type(obj).__name__


@dataclass(frozen=True)
class Downgrade:
    logger: str
    template: str                               # record.msg, exactly as the library writes it
    matches: Callable[[logging.LogRecord], bool]  # the error it names is the harmless one
    level: int
    why: str


DOWNGRADES: tuple[Downgrade, ...] = (
    Downgrade("aiokafka.consumer.group_coordinator",
              "OffsetCommit failed for group %s due to group error (%s), will rejoin",
              lambda r: type(_arg(r, 1)).__name__ == "RebalanceInProgressError", logging.INFO,
              "a commit raced a rebalance; aiokafka rejoins the group"),
    Downgrade("aiokafka.consumer.group_coordinator", "Unexpected error from SyncGroup: %s",
              lambda r: type(_arg(r, 0)).__name__ == "InvalidRequestError", logging.INFO,
              "the embedded broker refused a late follower; ratiowatch rejoins (see its WARNING)"),
    Downgrade("kafka.protocol.parser",
              "Response %d [ResponseType: %s Request: %s]: Unable to decode %d-byte buffer: %r",
              lambda r: _name_of(_arg(r, 1)).startswith("ApiVersionsResponse"), logging.WARNING,
              "kafka-python falls back to an older ApiVersions; pin api_version (streams/clients.py)"),
    Downgrade("kafka.conn", "%s: Closing connection. %s",
              lambda r: ("<checking_api_versions_recv>" in str(_arg(r, 0))
                         and "KafkaProtocolError: Unable to decode response" in str(_arg(r, 1))), logging.WARNING,
              "the same probe: kafka-python drops the connection it could not read, and reconnects"),
    Downgrade("kafka.conn", "%s: Closing connection. %s",
              lambda r: "Socket EVENT_READ without in-flight-requests" in str(_arg(r, 1)), logging.INFO,
              "the broker closed an idle connection; kafka-python reconnects when needed"),
)


class DowngradeFilter(logging.Filter):
    """On one logger: rewrites the level of the records ``downgrades`` match; passes the rest."""

    def __init__(self, logger: str, downgrades: tuple[Downgrade, ...]) -> None:
        super().__init__()
        self.logger = logging.getLogger(logger)
        self.downgrades = downgrades

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        for d in self.downgrades:
            if record.msg == d.template and _safe(d.matches, record):
                record.levelno, record.levelname = d.level, logging.getLevelName(d.level)
                return self.logger.isEnabledFor(d.level)
        return True


def _safe(pred: Callable[[logging.LogRecord], bool], record: logging.LogRecord) -> bool:
    try:
        return bool(pred(record))
    except Exception:  # a library changed its arguments: leave its record alone
        return False


_installed: list[tuple[logging.Logger, DowngradeFilter]] = []


def install() -> None:
    """Put one :class:`DowngradeFilter` on each logger of :data:`DOWNGRADES` (idempotent)."""
    if _installed:
        return
    for name in dict.fromkeys(d.logger for d in DOWNGRADES):
        f = DowngradeFilter(name, tuple(d for d in DOWNGRADES if d.logger == name))
        logger = logging.getLogger(name)
        logger.addFilter(f)
        _installed.append((logger, f))


def uninstall() -> None:
    while _installed:
        logger, f = _installed.pop()
        logger.removeFilter(f)
