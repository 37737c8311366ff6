"""What changes between two sets of scenarios, and what each change means for running state. Pure.

``scenarios apply`` prints it; a running engine acts on it (agents/pipeline.py):

- *added*: evaluated from now on, warm-started from history when there is some, else cold (its
  first evaluation never fires);
- *restarted*: its trigger, confirmations, ``require`` or windows changed, so the state built
  under the old rules means nothing under the new ones: it starts again;
- *kept*: only its title, description or routing changed: its state carries on;
- *removed*: no longer evaluated; its state is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .scenario import Scenario
from .spec import rules_version, version_of

__all__ = ["ScenarioChanges", "diff"]


@dataclass(frozen=True, slots=True)
class ScenarioChanges:
    added: tuple[Scenario, ...] = ()
    restarted: tuple[Scenario, ...] = ()
    kept: tuple[Scenario, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def changed(self) -> tuple[Scenario, ...]:
        return self.restarted + self.kept

    def __bool__(self) -> bool:
        return bool(self.added or self.restarted or self.kept or self.removed)

    def lines(self) -> list[str]:
        """One line per scenario that changes, for a person: ``+ id (version)``, ``~ id``, ``- id``."""
        out = [f"+ {s.id}  added  (version {_v(s)})" for s in self.added]
        out += [f"~ {s.id}  changed, its rules too: its state starts again  (version {_v(s)})" for s in self.restarted]
        out += [f"~ {s.id}  changed (title, description or routing): its state is kept  (version {_v(s)})"
                for s in self.kept]
        out += [f"- {sid}  removed" for sid in self.removed]
        return out

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.changed)} changed, {len(self.unchanged)} unchanged, "
                f"{len(self.removed)} removed")


def _v(s: Scenario) -> str:
    return s.version or version_of(s)


def diff(old: Mapping[str, Scenario], new: Mapping[str, Scenario]) -> ScenarioChanges:
    """From ``old`` to ``new`` (id -> scenario), by version; ids in ``new``'s order, then ``old``'s."""
    added, restarted, kept, unchanged = [], [], [], []
    for sid, s in new.items():
        before = old.get(sid)
        if before is None:
            added.append(s)
        elif _v(before) == _v(s):
            unchanged.append(sid)
        elif rules_version(before) != rules_version(s):
            restarted.append(s)
        else:
            kept.append(s)
    removed = tuple(sid for sid in old if sid not in new)
    return ScenarioChanges(tuple(added), tuple(restarted), tuple(kept), removed, tuple(unchanged))
