"""Fuzzing the scenario file (ratiowatch/config.py): random documents, mutated copies of the
shipped file and random bytes on disk either load into a consistent Config or fail with a
ConfigError that names the file (the CLI turns it into exit code 2). Nothing else may escape."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ratiowatch.config import default_config_path, load_config, parse_config
from ratiowatch.model import Config
from ratiowatch.errors import ConfigError

FILE = "fuzz.yaml"
BASE = yaml.safe_load(Path(default_config_path()).read_text(encoding="utf-8"))
ENV = {"HOOK_TOKEN": "t0ken-value"}
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = ["scenarios", "channels", "settings", "id", "title", "description", "trigger", "confirmations", "windows",
        "notify", "notify_resolved", "group_window_s", "series", "lookback", "above", "below", "rearm", "label",
        "ma", "high", "low", "streak", "require",
        "url", "rate_limit_per_min", "quiet_hours", "timezone", "format", "session_timezone",
        "allowed_lateness_s", "grace_ms", "partitions", "signed_symbols", "console", "unknown"]
scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**6), max_value=10**6)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from(["IWM/SPY", "DGS10-DGS2", "DXY", "A/A", "/", "console", "json://127.0.0.1/x",
                              "${HOOK_TOKEN}", "${UNSET_VAR_FOR_FUZZ}", "${X:-d}", "22:00-07:00", "07:00-07:00",
                              "America/New_York", "Mars/Olympus", "slack", "auto", ""])
           | st.text(max_size=12))
documents = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                         | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), kids, max_size=5),
                         max_leaves=30)


def _check(doc) -> Config | None:
    """parse_config's answer: a Config whose cross-references hold, or None for a ConfigError."""
    try:
        cfg = parse_config(doc, FILE, env=ENV)
    except ConfigError as e:
        assert str(e).startswith(f"{FILE}: ") and e.problem
        return None
    ids = [s.id for s in cfg.scenarios]
    assert ids and len(ids) == len(set(ids))
    for s in cfg.scenarios:
        assert set(s.notify) <= set(cfg.channels)
        for r in s.rules:
            assert math.isfinite(r.threshold) and math.isfinite(r.rearm)
            assert (r.rearm <= r.threshold) if r.direction == "up" else (r.rearm >= r.threshold)
            assert r.lookback is None or (isinstance(r.lookback, int) and r.lookback >= 1)
            # One transform per rule; a windowed one carries a whole number of sessions >= 1.
            assert r.transform in ("value", "lookback", "ma", "high", "low", "streak")
            if r.transform in ("lookback", "ma", "high", "low"):
                assert type(r.sessions) is int and r.sessions >= 1
            else:
                assert r.sessions is None
            assert (r.lookback == r.sessions) if r.transform == "lookback" else r.lookback is None
        assert s.require is None or (type(s.require) is int and 1 <= s.require <= len(s.confirmations))
        assert all(isinstance(w, int) and w >= 1 for w in s.windows)
    assert cfg.settings.partitions >= 1
    return cfg


@FUZZ
@given(documents)
@example({"scenarios": [{"id": "x", "trigger": {"series": "IWM/SPY", "above": float("nan")}}]})
@example({"scenarios": [{"id": "x", "trigger": {"series": "IWM/SPY", "above": 1}, "windows": [True]}]})
@example({"scenarios": [{"id": "x", "trigger": {"series": "IWM/SPY", "above": 1}}], "settings": ["a"]})
@example({"scenarios": [{"id": "x", "trigger": {"series": "IWM/SPY", "above": 1}}], "channels": {"c": {"url": 5}}})
def test_random_documents_give_a_config_or_a_config_error(doc):
    _check(doc)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _mutate(doc, pick: int, op: str, value):
    paths = [p for p in _paths(doc) if p]
    path = paths[pick % len(paths)]
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "set":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "unknown_key" and isinstance(parent, dict):
        parent[f"unknown_{pick}"] = value
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    return doc


mutations = st.lists(st.tuples(st.integers(min_value=0, max_value=10**6),
                               st.sampled_from(["set", "delete", "unknown_key", "duplicate"]), scalars | documents),
                     min_size=1, max_size=3)


@FUZZ
@given(mutations)
def test_mutated_shipped_scenarios_give_a_config_or_a_config_error(muts):
    doc = copy.deepcopy(BASE)
    for pick, op, value in muts:
        doc = _mutate(doc, pick, op, value)
    _check(doc)


def test_the_shipped_file_itself_loads():
    assert _check(copy.deepcopy(BASE)) is not None


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@example(b"\xff\xfe\x00")
@example(b"{a: *unknown_alias}")
@example(b"!!python/object:os.system {}")
@example(b"- &a [*a]")
def test_random_bytes_on_disk_fail_as_config_errors(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("cfg") / "scenarios.yaml"
    path.write_bytes(raw)
    try:
        load_config(path, env=ENV)
    except ConfigError as e:
        assert str(e).startswith(f"{path}: ")


def test_a_deeply_nested_file_is_a_config_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_bytes(b"[" * 2000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)
