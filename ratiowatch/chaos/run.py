"""The chaos run: the real pipeline under faults, bad input and restarts, checked against the batch
computation. Three steps, each a module of its own:

1. set up (:mod:`.rig`): the history window and the expected events, the embedded broker, the
   notification endpoint, the garbage feed, the producer and the reader, in this process;
2. drive (:mod:`.drive`, :mod:`.faults`): start the worker (a separate process,
   :mod:`.worker`, so it can be SIGKILLed and restarted), send the dates with bad input mixed in
   and inject the scheduled faults, one after another;
3. drain (:mod:`.drain`): heal everything, wait until the outputs are complete (or
   ``drain_timeout_s`` passes), and stop the worker cleanly.

Then what was read from the topics and what the endpoint answered are compared with the
expectation (:mod:`.verify`). The exit code of ``ratiowatch chaos`` is 0 only when nothing was
lost, missing or duplicated.
"""

from __future__ import annotations

import pickle
import sys
import time
from typing import Any, Callable

from .drain import drain
from .drive import drive
from .options import ChaosOptions
from .rig import Rig, set_up
from .verify import failures, passed, verify

__all__ = ["run_chaos"]


async def run_chaos(opts: ChaosOptions, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run it; returns the report (:func:`~ratiowatch.chaos.verify.verify` plus a ``run`` section)."""
    began = time.monotonic()
    say = say or (lambda m: print(f"[chaos {time.monotonic() - began:7.1f}s] {m}", file=sys.stderr, flush=True))
    rig = await set_up(opts, say)
    try:
        sending_began = await drive(rig)
        await drain(rig, sending_began)
    finally:
        await rig.close()
    return _report(rig, began)


def _report(rig: Rig, began: float) -> dict[str, Any]:
    obs, dates = rig.obs, rig.dates
    obs.receipts = list(rig.hook.receipts)
    obs.worker_exits = list(rig.worker.unplanned)
    if rig.tmp is None:  # a kept work dir also keeps what was observed, for a closer look
        (rig.work / "observed.pickle").write_bytes(pickle.dumps(obs))
    report = verify(obs)
    report["run"] = {"duration_s": rig.opts.duration_s, "seed": rig.opts.seed, "dates": len(dates),
                     "first_date": str(dates[0]), "last_date": str(dates[-1]), "pace_dates_per_s": round(rig.pace, 2),
                     "worker_starts": rig.worker.starts, "endpoint_answers": dict(rig.hook.answered),
                     "reader_rereads": dict(rig.rereads),
                     "seconds": round(time.monotonic() - began, 1),
                     "workdir": str(rig.work) if rig.tmp is None else None}
    report["passed"] = passed(report)
    report["failed_on"] = failures(report)
    if rig.tmp is not None:
        rig.tmp.cleanup()
    return report
