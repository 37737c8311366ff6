"""The one interface of a channel's pipeline: a stage takes a batch and the time, and returns the
batch to go on with.

Taken from Alertmanager (``notify/notify.go``):

- **One signature for every stage** (``Stage.Exec(ctx, alerts) -> (ctx, alerts, err)``). Ours is
  ``async run(batch, now) -> batch``: the :class:`~.group.Batch` is both the alerts and the
  context, since its later fields (message, chart, attempts, error, outcome) are what
  Alertmanager's stages pass on through ``ctx``.
- **A list of stages run in order** (``MultiStage``), stopping as soon as one ends the message.
  Alertmanager stops on an empty alert list; we stop when a stage sets ``outcome``, because an
  ended message still has to be settled and reported (skipped, silenced, delivered, dead-lettered).
- **Fan-out per channel** (``FanoutStage``): each channel runs its list in its own task
  (fanout.py), so a slow channel never holds up another.
- **Time passed in** (``WithNow``): each stage gets ``now`` from the worker's injected clock, read
  when the stage starts, so tests drive time. Only the retry stage, which spans several
  attempts, reads that same clock between them.

Not taken: Alertmanager's ``err`` return. A failing stage raises; :func:`run_stages` names the
stage and the batch it had (:class:`StageFailed`), and the worker dead-letters that batch.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

from .group import Batch

__all__ = ["Stage", "StageFailed", "run_stages"]


class Stage(Protocol):
    async def run(self, batch: Batch, now: float) -> Batch:
        """The batch to hand to the next stage; with ``outcome`` set, the message ends here."""


class StageFailed(Exception):
    """A stage raised (a bug, a broken disk): ``batch`` is what it was given."""

    def __init__(self, stage: Stage, batch: Batch) -> None:
        super().__init__(f"{type(stage).__name__} failed")
        self.stage, self.batch = stage, batch


async def run_stages(stages: Sequence[Stage], batch: Batch, now: Callable[[], float]) -> Batch:
    """Run ``stages`` in order on ``batch`` until one sets its outcome; the last batch returned.
    StageFailed (from the stage's exception) when one raises."""
    for stage in stages:
        if batch.outcome is not None:
            break
        try:
            batch = await stage.run(batch, now())
        except Exception as e:
            raise StageFailed(stage, batch) from e
    return batch
