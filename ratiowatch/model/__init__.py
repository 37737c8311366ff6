"""The domain model: series, rules, scenarios, channels and settings, and the metric maths they
share. Frozen values and pure functions, no I/O and no YAML (ratiowatch/config/ loads files into
these; the ``scenarios`` topic carries them in the form of :mod:`ratiowatch.model.spec`).

Every other package may import this one; it imports none of them.
"""

from .config import CHANNEL_FORMATS, Channel, Config, Settings
from .scenario import Rule, Scenario
from .series import SeriesSpec, parse_series

__all__ = ["CHANNEL_FORMATS", "Channel", "Config", "Settings", "Rule", "Scenario", "SeriesSpec", "parse_series"]
