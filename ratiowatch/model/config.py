"""Channels, settings and the whole configuration a role runs with. Frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from .scenario import Scenario

__all__ = ["Channel", "CHANNEL_FORMATS", "Settings", "Config"]


@dataclass(frozen=True, slots=True)
class Channel:
    """A named notification target: an apprise URL (secrets come from ${ENV} interpolation)."""

    name: str
    url: str = field(repr=False)  # may carry secrets: never printed as is
    rate_limit_per_min: int | None = None
    quiet_hours: tuple[str, str] | None = None  # ("22:00", "07:00") in the channel's timezone
    timezone: str = "America/New_York"
    # How messages are rendered: "auto" picks by URL scheme (mailto -> email, slack/mmost -> slack,
    # ntfy/pushover/... -> push, json/form/xml -> json, console -> text); see docs/notifications.md.
    format: str = "auto"
    # The environment variables the URL needs that are not set, when the config was loaded for a
    # command that does not notify (``load_config(require_channels=False)``). Such a channel is
    # disabled: ``url`` is "" and nothing may be sent through it.
    unset: tuple[str, ...] = ()
    template: str = field(default="", repr=False)  # the URL as written in the file, before ${ENV}

    @property
    def enabled(self) -> bool:
        return not self.unset


CHANNEL_FORMATS = ("auto", "slack", "email", "push", "text", "json")


@dataclass(frozen=True, slots=True)
class Settings:
    session_timezone: str = "America/New_York"
    allowed_lateness_s: float = 300.0
    grace_ms: float = 50.0
    partitions: int = 8
    # Symbols whose values may be zero or negative (spreads published as one series, e.g. T10Y2Y).
    # Every other symbol is a price: a tick <= 0 is rejected as bad input.
    signed_symbols: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    scenarios: tuple[Scenario, ...]
    channels: dict[str, Channel]
    settings: Settings
    # Sanity warnings found at load (e.g. a relative-change threshold of 800%), each naming the
    # file, the place and what the value reads as; load_config also logs them at WARNING.
    warnings: tuple[str, ...] = ()

    @property
    def unset_channels(self) -> dict[str, tuple[str, ...]]:
        """Channel name -> the environment variables it needs that are not set (only with
        ``require_channels=False``; otherwise an unset variable fails the load)."""
        return {n: c.unset for n, c in self.channels.items() if c.unset}

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset().union(*(s.symbols for s in self.scenarios)) if self.scenarios else frozenset()

    def scenario(self, scenario_id: str) -> Scenario:
        for s in self.scenarios:
            if s.id == scenario_id:
                return s
        raise KeyError(scenario_id)
