"""``ratiowatch bench``: the engine against the bare-consumer limit and the faust idiom, on the
embedded broker (docs/performance.md). Tooling, not the product: nothing outside ``bench/`` and
its command imports it.

- :mod:`.run`: every phase in order, gathered into one result (``run_bench``, ``DEFAULTS``);
- :mod:`.phase`: one phase from the bench's own process: spawn, feed, check the count;
- :mod:`.workers`: what runs in a phase's fresh process (limit, baseline, engine);
- :mod:`.feed`: the producer that keeps ahead of the worker, and the reader that times events;
- :mod:`.market`: the generated scenarios, history and tick stream (pure, seeded);
- :mod:`.event_time`: the same ticks keyed by source and by symbol, compared (pure);
- :mod:`.report`: the table printed without ``--json`` (pure).

Nothing is imported here, so that a phase's spawned process, importing :mod:`.workers`, does not
load the parent's side into the worker whose memory is measured.
"""

__all__: list[str] = []
