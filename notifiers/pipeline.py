"""What a channel does with a message, in order: the list of its stages, as data.

    route (service.handle, route.py)          which channels; the notice goes to each one's inbox
    -- per channel, in the channel's own task (worker.py) --
    group (group.py)                          one message per scenario and group window
    hold (gate.py)                            until quiet hours end and the rate limit has a slot
    1. dedup      DedupStage                  leave out what this channel already got
    2. mute       MuteStage                   silenced now? then never sent   (with silences only)
    3. rate       RateStage                   the message takes its rate-limit slot
    4. render     RenderStage                 the text for the channel's medium
    5. chart      ChartStage                  the chart, for email and json webhooks
    6. send       RetryStage                  attempts with backoff, each failure recorded
    7. give up    DeadLetterStage             all failed: notifications.dlq (not for a re-delivery)
    8. record     SetDeliveredStage           delivered: the dedup record, then `deliveries`

This is Alertmanager's receiver pipeline (``createReceiverStage`` in ``notify/notify.go``: wait,
dedup, retry, set-notifies per integration, after the mute stages): the order is the same, and
the dedup record is written only after success. A new behaviour is a new stage in this list, not
an ``if`` in an old stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ratiowatch.model import Channel

from .chart import Charts
from .dedup import DeliveryLog
from .deliver import Sender
from .gate import Gate
from .ledger import Ledger
from .lifecycle import ChannelLifecycle
from .render import Message
from .retry import RetryPolicy
from .route import Notice
from .stage import Stage
from .stages import (ChartStage, DeadLetterStage, DedupStage, MutedFn, MuteStage, RateStage, RenderStage,
                     RetryStage, SetDeliveredStage)

__all__ = ["Shared", "channel_stages"]


@dataclass(frozen=True, slots=True)
class Shared:
    """What every channel's stages use: the dedup record, the ledger, charts, policy and clock."""

    delivery_log: DeliveryLog
    ledger: Ledger
    charts: Charts
    policy: RetryPolicy
    now: Callable[[], float]
    rand: Callable[[], float]
    muted: MutedFn | None = None


def channel_stages(channel: Channel, sender: Sender, render: Callable[[list[Notice]], Message], gate: Gate,
                   lifecycle: ChannelLifecycle, shared: Shared) -> list[Stage]:
    """The stages of ``channel``, in the order of the module docstring."""
    name, s = channel.name, shared
    return [
        DedupStage(name, s.delivery_log, s.ledger),
        *([MuteStage(name, s.muted, s.ledger)] if s.muted is not None else []),
        RateStage(gate),
        RenderStage(render),
        ChartStage(s.charts),
        RetryStage(channel, sender, s.policy, s.ledger, lifecycle, s.now, s.rand),
        DeadLetterStage(name, s.ledger),
        SetDeliveredStage(name, s.delivery_log, s.ledger),
    ]
