"""``ratiowatch chaos``: the real pipeline under faults, bad input and worker kills, checked
against the batch computation (docs/faults.md). Tooling, not the product: nothing outside
``chaos/`` and its command imports it.

- :mod:`.run`: the run, in three steps: set up (:mod:`.rig`), drive (:mod:`.drive`, with
  :mod:`.faults`), drain (:mod:`.drain`); then the verdict;
- :mod:`.options`: what the run is asked to do;
- :mod:`.plan`: what it sends and which faults it injects, decided before it starts (pure, seeded);
- :mod:`.peers`: the notification endpoint that fails on command and the garbage feed;
- :mod:`.reader`: the output topics read back as a downstream service would;
- :mod:`.supervisor`: the parent's handle on the worker process; :mod:`.worker`: that process;
- :mod:`.observed`: what the run recorded; :mod:`.verify`: the verdict on it (pure), with
  :mod:`.repeats` telling the engine's duplicated events from the embedded broker's copies of a
  retried produce batch;
- :mod:`.report`: the report printed without ``--json`` (pure).

Nothing is imported here, so that the worker process (``python -m ratiowatch.chaos.worker``)
loads none of the run's side.
"""

__all__: list[str] = []
