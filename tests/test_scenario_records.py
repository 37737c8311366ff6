"""A scenario's record on the ``scenarios`` topic reads back, under the file's rules, as the same
scenario with the same version: for every scenario shipped or used by the tests, and for one that
leaves every optional key out (no description, no confirmations, no channels)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratiowatch.config import default_config_path, load_config, parse_config, parse_scenario_record
from ratiowatch.model.spec import encode_record

FIXTURES = Path(__file__).parent / "fixtures"
FILES = [default_config_path(), *sorted(str(p) for p in FIXTURES.glob("*.yaml"))]


def _round_trip(scenarios) -> None:
    for sc in scenarios:
        key, value = encode_record(sc)
        back = parse_scenario_record(key, value, "scenarios")
        assert (back, back.version) == (sc, sc.version), sc.id


@pytest.mark.parametrize("path", FILES, ids=lambda p: Path(p).name)
def test_every_scenario_of_a_file_reads_back_from_its_record(path):
    _round_trip(load_config(path, require_channels=False, check_channels="if_defined").scenarios)


def test_a_scenario_with_only_what_is_required_reads_back_from_its_record():
    cfg = parse_config({"scenarios": [{"id": "bare", "trigger": {"series": "SPY", "above": 100}, "notify": []}]},
                       "bare.yaml")
    (sc,) = cfg.scenarios
    assert sc.description == "" and sc.confirmations == () and sc.notify == ()
    _round_trip(cfg.scenarios)
