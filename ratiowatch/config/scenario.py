"""One scenario, from the file or from a record of the ``scenarios`` topic, held to the same rules."""

from __future__ import annotations

from typing import Any, Iterable

import orjson

from ratiowatch.errors import ConfigError
from ratiowatch.model.config import Channel
from ratiowatch.model.scenario import Rule, Scenario
from ratiowatch.model.spec import RECORD_SCHEMA, with_version

from .keys import ID_RE, Keys
from .rules import RULE_KEYS, parse_require, parse_rule, rule_warnings

__all__ = ["parse_scenario", "parse_scenario_record"]


def parse_scenario(s: Any, file: str, where: str, *, channels: dict[str, Channel] | None,
                   known_symbols: Iterable[str] | None = None) -> tuple[Scenario, list[str]]:
    """One scenario, validated with the file's rules (the same messages wherever it comes from: a
    file, or a record on the ``scenarios`` topic). ``channels``: the names ``notify`` may use;
    None skips that check (an engine has no channels; the notify role checks its own). Returns
    the scenario, with its version (ratiowatch/model/spec.py), and its sanity warnings."""
    sid = s.get("id") if isinstance(s, dict) else None
    where = where + (f" (id {sid})" if isinstance(sid, str) else "")
    k = Keys(file, where, s, {"id", "title", "description", "trigger", "confirmations", "windows",
                               "notify", "notify_resolved", "group_window_s", "require"})
    sid = k.string("id")
    if not ID_RE.match(sid):
        raise k.err("id", f"{sid!r} must be lowercase letters, digits, '-', '_' or '.' (at most 64)")
    where = f"scenario {sid}"
    k = Keys(file, where, s, set(k.raw))  # re-key the location by id for the messages below
    if s.get("trigger") is None:
        raise k.err("trigger", "is required: the rule that fires the scenario (series and above/below)")
    trigger = parse_rule(Keys(file, f"{where}.trigger", s.get("trigger"), RULE_KEYS), "trigger")
    warnings = [f"{file}: {w}" for w in rule_warnings(f"{where}.trigger", trigger)]
    confs: list[Rule] = []
    labels: set[str] = set()
    craw = s.get("confirmations") or []
    if not isinstance(craw, list):
        raise k.err("confirmations", "must be a list")
    for j, c in enumerate(craw):
        ck = Keys(file, f"{where}.confirmations[{j}]", c, RULE_KEYS | {"label"})
        label = ck.string("label")
        if label in labels or label == "trigger":
            raise ck.err("label", f"{label!r} is used twice in this scenario (or is the reserved 'trigger')")
        labels.add(label)
        confs.append(parse_rule(ck, label))
        warnings += [f"{file}: {w}" for w in rule_warnings(ck.where, confs[-1])]
    require = parse_require(k, len(confs))
    wraw = s.get("windows", [21, 63, 126, 252])
    if not isinstance(wraw, list) or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in wraw):
        raise k.err("windows", f"must be a list of whole numbers >= 1, got {wraw!r}")
    notify = s.get("notify", ["console"])
    if not isinstance(notify, list) or not all(isinstance(n, str) for n in notify):
        raise k.err("notify", f"must be a list of channel names, got {notify!r}")
    if channels is not None:
        for n in notify:
            if n not in channels:
                raise k.err("notify", f"names channel {n!r}, which is not defined under 'channels' "
                            f"(defined: {', '.join(sorted(channels))})")
    sc = Scenario(
        id=sid,
        title=k.string("title", sid),
        description=k.string("description", ""),
        trigger=trigger,
        confirmations=tuple(confs),
        windows=tuple(sorted(set(wraw))),
        notify=tuple(notify),
        notify_resolved=k.boolean("notify_resolved", False),
        group_window_s=k.number("group_window_s", 0.0, minimum=0),
        require=require,
    )
    if known_symbols is not None:
        known = {x.upper() for x in known_symbols}
        for r in sc.rules:
            missing = [leg for leg in r.series.legs if leg not in known]
            if missing:
                rw = "trigger" if r.name == "trigger" else f"confirmation {r.name!r}"
                raise ConfigError(file, f"{where}.{rw}.series",
                                  f"{r.series.name} names symbol {missing[0]} with no data "
                                  f"(have: {', '.join(sorted(known))})")
    return with_version(sc), warnings


def parse_scenario_record(key: bytes | None, value: bytes | None, where: str) -> Scenario | None:
    """A record of the ``scenarios`` topic (ratiowatch/model/spec.py): the scenario it holds, or
    None for a tombstone (the scenario was removed). Checked with the file's rules, so a record
    written there by hand is held to the same standard; raises ConfigError naming ``where``."""
    if key is None:
        raise ConfigError(where, "key", "is missing: it must be the scenario id")
    sid = key.decode("utf-8", "replace")
    if value is None:
        return None
    try:
        rec = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise ConfigError(where, "", f"not JSON: {e}") from None
    if not isinstance(rec, dict) or rec.get("schema") != RECORD_SCHEMA or not isinstance(rec.get("scenario"), dict):
        raise ConfigError(where, "", f"not a scenario record: it must be an object with schema {RECORD_SCHEMA} "
                          "and 'scenario' (write it with `ratiowatch scenarios apply`)")
    sc, _ = parse_scenario(rec["scenario"], where, "scenario", channels=None)
    if sc.id != sid:
        raise ConfigError(where, "key", f"is {sid!r} but the scenario's id is {sc.id!r}")
    return sc
