"""A scenario file: read (YAML) and validated as a whole, its channels, settings and scenarios."""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from ratiowatch.errors import ConfigError
from ratiowatch.model.config import Channel, Config
from ratiowatch.model.scenario import Scenario

from .keys import ID_RE, Keys
from .scenario import parse_scenario
from .sections import parse_channel, parse_settings

__all__ = ["default_config_path", "load_config", "parse_config"]

log = logging.getLogger("ratiowatch.config")


def default_config_path() -> str:
    """The scenario file shipped with the product (configs/scenarios.yaml)."""
    return str(resources.files("ratiowatch.configs").joinpath("scenarios.yaml"))


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


def parse_config(raw: Any, file: str = "<config>", *, env: dict[str, str] | None = None,
                 known_symbols: Iterable[str] | None = None, require_channels: bool = True,
                 check_channels: str = "always") -> Config:
    """Validate an already-parsed YAML document. See :func:`load_config`."""
    if raw is None:
        raise ConfigError(file, "", "file is empty: it needs a 'scenarios:' list")
    if not isinstance(raw, dict):
        raise ConfigError(file, "top level", f"must be a mapping with 'scenarios:' (and optional 'channels:', "
                          f"'settings:'), got {type(raw).__name__}")
    top = Keys(file, "", raw, {"scenarios", "channels", "settings"})
    settings = parse_settings(file, raw.get("settings"))

    channels: dict[str, Channel] = {"console": Channel("console", "console")}
    raw_channels = raw.get("channels") or {}
    if not isinstance(raw_channels, dict):
        raise top.err("channels", "must be a mapping of name: apprise URL")
    for name, spec in raw_channels.items():
        if not isinstance(name, str) or not ID_RE.match(name):
            raise top.err("channels", f"channel name {name!r} must be lowercase letters, digits, '-', '_' or '.'")
        channels[name] = parse_channel(file, name, spec, env, require_channels)

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
