"""The scenario file: loading and strict validation into the model (ratiowatch/model/).

Unknown keys are errors, defaults are filled before validation, and cross-references are checked
(a scenario that notifies a channel nobody defined fails at load). Every error names the file,
the place (scenario id, key) and the problem, and the CLI turns it into exit code 2.

The package's modules: :mod:`.load` (a file, as a whole), :mod:`.scenario` (one scenario, from the
file or the ``scenarios`` topic), :mod:`.rules`, :mod:`.sections` (settings and channels),
:mod:`.keys` (the strict reader every part uses), :mod:`.env` (``${VAR}`` interpolation) and
:mod:`.symbols` (the config's symbols against a source's).
"""

from .env import interpolate_env, interpolate_url
from .load import default_config_path, load_config, parse_config
from .scenario import parse_scenario, parse_scenario_record
from .symbols import unprovided_symbols, warn_unprovided_symbols

__all__ = [
    "load_config", "parse_config", "parse_scenario", "parse_scenario_record", "default_config_path", "interpolate_env",
    "interpolate_url", "unprovided_symbols", "warn_unprovided_symbols",
]
