"""The scenario file: loading and strict validation into the model (ratiowatch/model/).

Unknown keys are errors, defaults are filled before validation, and cross-references are checked
(a scenario that notifies a channel nobody defined fails at load). Every error names the file,
the place (scenario id, key) and the problem, and the CLI turns it into exit code 2.
"""

from __future__ import annotations

import logging
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import yaml

from ratiowatch.errors import ConfigError
from ratiowatch.model import metric as _metric
from ratiowatch.model.config import CHANNEL_FORMATS, Channel, Config, Settings
from ratiowatch.model.scenario import Rule, Scenario
from ratiowatch.model.series import parse_series
from ratiowatch.model.spec import RECORD_SCHEMA, with_version

__all__ = [
    "load_config", "parse_config", "parse_scenario", "parse_scenario_record", "default_config_path", "interpolate_env",
    "interpolate_url", "unprovided_symbols", "warn_unprovided_symbols",
]

log = logging.getLogger("ratiowatch.config")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


_DEFAULTS = Settings()  # class attributes of a slots dataclass are descriptors, not the defaults


def default_config_path() -> str:
    """The scenario file shipped with the product (configs/scenarios.yaml)."""
    return str(resources.files("ratiowatch.configs").joinpath("scenarios.yaml"))


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(text: str, env: dict[str, str] | None = None) -> str:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) with the environment's value, as is. Raises
    KeyError naming the variable when it is unset and has no default. Channel URLs use
    :func:`interpolate_url`, which percent-encodes where the URL needs it."""
    env = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _ENV_RE.sub(sub, text)


def _url_parts_to_encode(template: str) -> list[bool]:
    """For each ``${...}`` in a URL template: whether its value lands in the userinfo, the path or
    the query (percent-encode it) rather than the scheme or the host and port (as is).

    Decided on the template's own characters, with the substitutions masked out, so a value can
    never move the boundaries: ``mailto://u:${PASS}@host`` encodes PASS; ``${SLACK_URL}`` (no
    ``://`` of its own), ``${SCHEME}://...`` and ``smtp://u:p@${HOST}:${PORT}`` do not.
    """
    spans = [m.span() for m in _ENV_RE.finditer(template)]
    masked = list(template)
    for a, b in spans:
        masked[a:b] = "\0" * (b - a)
    text = "".join(masked)
    sep = text.find("://")
    if sep < 0:
        return [False] * len(spans)
    start = sep + 3
    ends = [i for i in (text.find("/", start), text.find("?", start)) if i >= 0]
    auth_end = min(ends) if ends else len(text)
    at = text.rfind("@", start, auth_end)  # the userinfo ends at the authority's last '@'
    out = []
    for a, _b in spans:
        if a < start:
            out.append(False)  # scheme (or a whole-URL variable before a literal '://')
        elif a < auth_end:
            out.append(at >= 0 and a < at)  # userinfo: encode; host and port: as is
        else:
            out.append(True)  # path and query
    return out


def interpolate_url(template: str, env: dict[str, str] | None = None) -> tuple[str, tuple[str, ...]]:
    """A channel URL with its ``${VAR}`` (or ``${VAR:-default}``) filled in: ``(url, unset)``.

    A value substituted into the userinfo, a path segment or the query is percent-encoded (every
    reserved character, ``quote(value, safe='')``), so a password with ``@ : / ? # %`` stays a
    password: apprise decodes it back. A variable that is the whole URL, the scheme, the host or
    the port is used as is. ``unset`` names the variables that are not set and have no default
    (the URL is then incomplete and must not be used).
    """
    env = os.environ if env is None else env
    encode = iter(_url_parts_to_encode(template))
    unset: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        enc = next(encode)
        if name in env:
            value = env[name]
        elif default is not None:
            value = default
        else:
            if name not in unset:
                unset.append(name)
            return m.group(0)
        return quote(value, safe="") if enc else value

    return _ENV_RE.sub(sub, template), tuple(unset)


def load_config(path: str | os.PathLike[str] | None = None, *, env: dict[str, str] | None = None,
                known_symbols: Iterable[str] | None = None, require_channels: bool = True,
                check_channels: str = "always") -> Config:
    """Load and validate a scenario file (default: the shipped one).

    ``known_symbols``: when given (e.g. the symbols a history folder has data for), a series that
    names any other symbol is an error.

    ``require_channels``: whether every channel's ${ENV} must be set (a command that notifies).
    With False (backtest, replay without --notify, config show), a channel whose URL needs an
    unset variable loads disabled, with ``Channel.unset`` naming the variables.

    ``check_channels``: "always" (a scenario may notify only a channel the file defines), or
    "if_defined" (a file without a ``channels:`` section may name any: ``scenarios apply``, whose
    channels are the notify role's).

    Sanity warnings (:attr:`Config.warnings`) are logged at WARNING on logger ``ratiowatch.config``.
    """
    path = str(path) if path is not None else default_config_path()
    p = Path(path)
    if not p.exists():
        raise ConfigError(path, "", "file not found")
    if not p.is_file():
        raise ConfigError(path, "", "not a file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(path, where, f"not valid YAML: {getattr(e, 'problem', e)}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(path, "", "nested too deeply to be a scenario file") from None
    cfg = parse_config(raw, path, env=env, known_symbols=known_symbols, require_channels=require_channels,
                       check_channels=check_channels)
    for w in cfg.warnings:
        log.warning("%s", w)
    return cfg


class _Keys:
    """Strict reading of one mapping: every key must be read or it is an error."""

    def __init__(self, file: str, where: str, raw: Any, allowed: set[str]) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(file, where, f"must be a mapping, got {type(raw).__name__}")
        unknown = sorted(str(k) for k in raw if k not in allowed)
        if unknown:
            raise ConfigError(file, where, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
        self.file, self.where, self.raw = file, where, raw

    def err(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, f"{self.where}.{key}" if self.where else key, problem)

    def number(self, key: str, default: Any = ..., *, minimum: float | None = None) -> Any:
        if key not in self.raw or self.raw[key] is None:
            if default is ...:
                raise self.err(key, "is required")
            return default
        v = self.raw[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.err(key, f"must be a finite number, got {v!r}")
        if minimum is not None and v < minimum:
            raise self.err(key, f"must be >= {minimum:g}, got {v!r}")
        return float(v)

    def integer(self, key: str, default: Any = ..., *, minimum: int = 1) -> Any:
        if key not in self.raw or self.raw[key] is None:
            if default is ...:
                raise self.err(key, "is required")
            return default
        v = self.raw[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(key, f"must be a whole number, got {v!r}")
        if v < minimum:
            raise self.err(key, f"must be >= {minimum}, got {v}")
        return v

    def string(self, key: str, default: Any = ...) -> Any:
        if key not in self.raw or self.raw[key] is None:
            if default is ...:
                raise self.err(key, "is required")
            return default
        v = self.raw[key]
        if not isinstance(v, str) or not v.strip():
            raise self.err(key, f"must be a non-empty string, got {v!r}")
        return v

    def boolean(self, key: str, default: bool) -> bool:
        v = self.raw.get(key, default)
        if not isinstance(v, bool):
            raise self.err(key, f"must be true or false, got {v!r}")
        return v


_RULE_KEYS = {"series", "above", "below", "rearm", *_metric.TRANSFORMS}


def _parse_transform(k: _Keys) -> tuple[str, int | None]:
    """The rule's one transform: (name, sessions); ("value", None) without any."""
    given = [t for t in _metric.TRANSFORMS if k.raw.get(t) is not None]
    if len(given) > 1:
        raise ConfigError(k.file, k.where, f"has both {given[0]!r} and {given[1]!r}: a rule takes at most one "
                          f"transform ({', '.join(_metric.TRANSFORMS)}); write two rules")
    if not given:
        return "value", None
    t = given[0]
    if t == "streak":
        if k.raw[t] is not True:
            raise k.err(t, f"must be true (the metric counts sessions up or down in a row), got {k.raw[t]!r}")
        return t, None
    return t, k.integer(t, minimum=1)


def _parse_rule(k: _Keys, name: str) -> Rule:
    try:
        series = parse_series(k.string("series"))
    except ValueError as e:
        raise k.err("series", str(e)) from None
    transform, sessions = _parse_transform(k)
    lookback = sessions if transform == "lookback" else None
    has_above, has_below = k.raw.get("above") is not None, k.raw.get("below") is not None
    if has_above and has_below:
        raise ConfigError(k.file, k.where, "has both 'above' and 'below': a rule fires in one direction; "
                          "write two rules for a band")
    if not (has_above or has_below):
        raise ConfigError(k.file, k.where, "needs a threshold: 'above: X' or 'below: X'")
    direction = "up" if has_above else "down"
    threshold = k.number("above" if has_above else "below")
    rearm = k.number("rearm", threshold)
    if direction == "up" and rearm > threshold:
        raise k.err("rearm", f"must be <= the threshold {threshold:g} for an 'above' rule, got {rearm:g}")
    if direction == "down" and rearm < threshold:
        raise k.err("rearm", f"must be >= the threshold {threshold:g} for a 'below' rule, got {rearm:g}")
    return Rule(name, series, lookback, direction, threshold, rearm, transform, sessions)


def _parse_require(k: _Keys, confirmations: int) -> int | None:
    v = k.raw.get("require")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise k.err("require", f"must be a whole number of confirmations, got {v!r}")
    if confirmations == 0:
        raise k.err("require", "needs confirmations: it counts how many of them must be met for the trigger to fire")
    if not 1 <= v <= confirmations:
        raise k.err("require", f"must be between 1 and {confirmations} (the number of confirmations), got {v}")
    return v


def _parse_settings(file: str, raw: Any) -> Settings:
    if raw is None:
        return Settings()
    k = _Keys(file, "settings", raw, {"session_timezone", "allowed_lateness_s", "grace_ms", "partitions",
                                      "signed_symbols"})
    signed = raw.get("signed_symbols") or []
    if not isinstance(signed, list) or not all(isinstance(s, str) and s.strip() for s in signed):
        raise k.err("signed_symbols", f"must be a list of symbols, got {signed!r}")
    tz = k.string("session_timezone", _DEFAULTS.session_timezone)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise k.err("session_timezone", f"unknown time zone {tz!r} (e.g. America/New_York, UTC)") from None
    return Settings(
        session_timezone=tz,
        allowed_lateness_s=k.number("allowed_lateness_s", _DEFAULTS.allowed_lateness_s, minimum=0),
        grace_ms=k.number("grace_ms", _DEFAULTS.grace_ms, minimum=0),
        partitions=k.integer("partitions", _DEFAULTS.partitions, minimum=1),
        signed_symbols=frozenset(s.strip().upper() for s in signed),
    )


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _parse_channel(file: str, name: str, raw: Any, env: dict[str, str] | None, require: bool = True) -> Channel:
    where = f"channels.{name}"
    if isinstance(raw, str):
        raw = {"url": raw}
    k = _Keys(file, where, raw, {"url", "rate_limit_per_min", "quiet_hours", "timezone", "format"})
    url_t = k.string("url")
    url, unset = interpolate_url(url_t, env)
    if unset and require:
        v = unset[0]
        raise k.err("url", f"environment variable {v} is not set (set it, or write ${{{v}:-default}})")
    if unset:
        url = ""  # disabled: the command does not notify, and an incomplete URL is never used
    elif url != "console" and "://" not in url:
        raise k.err("url", "must be an apprise URL (scheme://...) or 'console'")
    rate = k.integer("rate_limit_per_min", None, minimum=1)
    quiet = None
    if raw.get("quiet_hours") is not None:
        q = raw["quiet_hours"]
        parts = q.split("-") if isinstance(q, str) else []
        if len(parts) != 2 or not all(_HHMM.match(p.strip()) for p in parts):
            raise k.err("quiet_hours", f"must look like '22:00-07:00', got {q!r}")
        quiet = (parts[0].strip(), parts[1].strip())
        if quiet[0] == quiet[1]:
            raise k.err("quiet_hours", f"start and end are both {quiet[0]}: give a window like '22:00-07:00'")
    tz = k.string("timezone", "America/New_York")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise k.err("timezone", f"unknown time zone {tz!r}") from None
    fmt = k.string("format", "auto")
    if fmt not in CHANNEL_FORMATS:
        raise k.err("format", f"must be one of {', '.join(CHANNEL_FORMATS)}, got {fmt!r}")
    return Channel(name, url, rate, quiet, tz, fmt, unset, url_t)


def _rule_warnings(where: str, r: Rule) -> list[str]:
    """A relative change (ratio or level, lookback/ma/high/low) of 100% or more is almost always a
    percentage written as a whole number: ``above: 8`` reads as +800%, not +8%."""
    if r.series.kind == "spread" or r.transform not in _metric.WINDOWED:
        return []
    key = "above" if r.direction == "up" else "below"
    out = []
    for k, v in ((key, r.threshold), ("rearm", r.rearm)):
        if abs(v) >= 1.0 and (k != "rearm" or v != r.threshold):
            out.append(f"{where}.{k}: {v:g} reads as a change of {v * 100:+.0f}% ({r.describe()}); "
                       f"relative changes are fractions: {v / 100:+g} is {v:+g}%")
    return out


def parse_config(raw: Any, file: str = "<config>", *, env: dict[str, str] | None = None,
                 known_symbols: Iterable[str] | None = None, require_channels: bool = True,
                 check_channels: str = "always") -> Config:
    """Validate an already-parsed YAML document. See :func:`load_config`."""
    if raw is None:
        raise ConfigError(file, "", "file is empty: it needs a 'scenarios:' list")
    if not isinstance(raw, dict):
        raise ConfigError(file, "top level", f"must be a mapping with 'scenarios:' (and optional 'channels:', "
                          f"'settings:'), got {type(raw).__name__}")
    top = _Keys(file, "", raw, {"scenarios", "channels", "settings"})
    settings = _parse_settings(file, raw.get("settings"))

    channels: dict[str, Channel] = {"console": Channel("console", "console")}
    raw_channels = raw.get("channels") or {}
    if not isinstance(raw_channels, dict):
        raise top.err("channels", "must be a mapping of name: apprise URL")
    for name, spec in raw_channels.items():
        if not isinstance(name, str) or not _ID_RE.match(name):
            raise top.err("channels", f"channel name {name!r} must be lowercase letters, digits, '-', '_' or '.'")
        channels[name] = _parse_channel(file, name, spec, env, require_channels)

    scen_raw = raw.get("scenarios")
    if not isinstance(scen_raw, list) or not scen_raw:
        raise top.err("scenarios", "must be a non-empty list of scenarios")
    scenarios: list[Scenario] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for i, s in enumerate(scen_raw):
        named = channels if check_channels == "always" or "channels" in raw else None
        sc, warned = parse_scenario(s, file, f"scenarios[{i}]", channels=named, known_symbols=known_symbols)
        if sc.id in seen:
            raise ConfigError(file, f"scenarios[{i}] (id {sc.id}).id", f"duplicate scenario id {sc.id!r}")
        seen.add(sc.id)
        scenarios.append(sc)
        warnings += warned
    return Config(file, tuple(scenarios), channels, settings, tuple(warnings))


def parse_scenario(s: Any, file: str, where: str, *, channels: dict[str, Channel] | None,
                   known_symbols: Iterable[str] | None = None) -> tuple[Scenario, list[str]]:
    """One scenario, validated with the file's rules (the same messages wherever it comes from: a
    file, or a record on the ``scenarios`` topic). ``channels``: the names ``notify`` may use;
    None skips that check (an engine has no channels; the notify role checks its own). Returns
    the scenario, with its version (ratiowatch/model/spec.py), and its sanity warnings."""
    sid = s.get("id") if isinstance(s, dict) else None
    where = where + (f" (id {sid})" if isinstance(sid, str) else "")
    k = _Keys(file, where, s, {"id", "title", "description", "trigger", "confirmations", "windows",
                               "notify", "notify_resolved", "group_window_s", "require"})
    sid = k.string("id")
    if not _ID_RE.match(sid):
        raise k.err("id", f"{sid!r} must be lowercase letters, digits, '-', '_' or '.' (at most 64)")
    where = f"scenario {sid}"
    k = _Keys(file, where, s, set(k.raw))  # re-key the location by id for the messages below
    if s.get("trigger") is None:
        raise k.err("trigger", "is required: the rule that fires the scenario (series and above/below)")
    trigger = _parse_rule(_Keys(file, f"{where}.trigger", s.get("trigger"), _RULE_KEYS), "trigger")
    warnings = [f"{file}: {w}" for w in _rule_warnings(f"{where}.trigger", trigger)]
    confs: list[Rule] = []
    labels: set[str] = set()
    craw = s.get("confirmations") or []
    if not isinstance(craw, list):
        raise k.err("confirmations", "must be a list")
    for j, c in enumerate(craw):
        ck = _Keys(file, f"{where}.confirmations[{j}]", c, _RULE_KEYS | {"label"})
        label = ck.string("label")
        if label in labels or label == "trigger":
            raise ck.err("label", f"{label!r} is used twice in this scenario (or is the reserved 'trigger')")
        labels.add(label)
        confs.append(_parse_rule(ck, label))
        warnings += [f"{file}: {w}" for w in _rule_warnings(ck.where, confs[-1])]
    require = _parse_require(k, len(confs))
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


def unprovided_symbols(config: Config, provided: Iterable[str]) -> dict[str, str]:
    """The config's symbols that ``provided`` (what a tick source has: a history folder's files, the
    simulated market's list, a feed's subscriptions) does not have: symbol -> the first place
    (``scenario ID.trigger.series`` or ``scenario ID.confirmations[j].series``) that names it."""
    have = {s.upper() for s in provided}
    out: dict[str, str] = {}
    for sc in config.scenarios:
        for j, r in enumerate(sc.rules):
            where = f"scenario {sc.id}." + ("trigger" if j == 0 else f"confirmations[{j - 1}]") + ".series"
            for leg in r.series.legs:
                if leg not in have and leg not in out:
                    out[leg] = where
    return out


def warn_unprovided_symbols(config: Config, provided: Iterable[str], source: str) -> list[str]:
    """Log (WARNING, at start) each config symbol that ``source`` (e.g. "the simulated market")
    does not provide, naming the file and the place; returns the messages."""
    have = sorted({s.upper() for s in provided})
    msgs = [f"{config.path}: {where}: symbol {sym} is not provided by {source} (it provides: {', '.join(have)})"
            for sym, where in unprovided_symbols(config, have).items()]
    for m in msgs:
        log.warning("%s", m)
    return msgs


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
