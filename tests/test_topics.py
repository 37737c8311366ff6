"""``ratiowatch topics``: the listing, the settings --create would use, and --create against the
embedded broker (which refuses CreateTopics and must say that it creates topics itself).

Expected values are written from the documented contract (docs/deployment.md), not read back from
ratiowatch.streams.topics: events kept 52 weeks, ticks and the shard topic 1 day, the audit and
dead-letter topics 4 weeks, state changelogs compacted.
"""

from __future__ import annotations

import json

import pytest

from ratiowatch.cli import main
from ratiowatch.commands.topics import topic_configs
from ratiowatch.streams.broker import EmbeddedBroker
from ratiowatch.streams.topics import all_topics

DAY = 24 * 3600 * 1000
WEEK = 7 * DAY

# name -> (partitions as a function of N, cleanup policy, retention ms)
CONTRACT = {
    "ticks": (lambda n: n, "delete", DAY),
    "ticks.dlq": (lambda n: 1, "delete", 4 * WEEK),
    "ratiowatch-ticks-by-shard": (lambda n: n, "delete", DAY),
    "events": (lambda n: n, "delete", 52 * WEEK),
    "deliveries": (lambda n: 1, "delete", 4 * WEEK),
    "notifications.dlq": (lambda n: 1, "delete", 4 * WEEK),
    "ratiowatch-scenario-state-changelog": (lambda n: n, "compact", None),
    "scenario-status": (lambda n: n, "compact", None),
    "silences": (lambda n: 1, "compact", None),
    "scenarios": (lambda n: 1, "compact", None),
    "control.dlq": (lambda n: 1, "delete", 4 * WEEK),
}


def _json(capsys, *argv: str) -> list[dict]:
    assert main(["topics", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("partitions", [8, 16])
def test_json_listing_matches_the_contract(capsys, partitions):
    rows = _json(capsys, "--partitions", str(partitions))
    assert {r["name"] for r in rows} == set(CONTRACT)
    for r in rows:
        parts, policy, retention = CONTRACT[r["name"]]
        assert (r["partitions"], r["cleanup_policy"], r["retention_ms"]) == (parts(partitions), policy, retention), r
        assert r["configs"]["cleanup.policy"] == policy
        assert r["configs"].get("retention.ms") == (None if retention is None else str(retention))
        assert "min.insync.replicas" not in r["configs"]  # replication factor 1


def test_default_partitions_come_from_the_config(capsys, tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("settings: {partitions: 3}\n"
                   "scenarios:\n  - {id: a, trigger: {series: IWM/SPY, lookback: 5, above: 0.1}}\n")
    rows = {r["name"]: r for r in _json(capsys, "--config", str(cfg))}
    assert rows["events"]["partitions"] == 3 and rows["ticks.dlq"]["partitions"] == 1
    assert rows["ratiowatch-scenario-state-changelog"]["partitions"] == 3  # co-partitioned with the shard topic


def test_app_id_names_the_changelogs(capsys):
    names = {r["name"] for r in _json(capsys, "--app-id", "ratiowatch-v2")}
    assert "ratiowatch-v2-scenario-state-changelog" in names


def test_replication_factor_3_requires_two_in_sync_replicas(capsys):
    for r in _json(capsys, "--replication-factor", "3"):
        assert r["replication_factor"] == 3 and r["configs"]["min.insync.replicas"] == "2"
    spec = next(s for s in all_topics(8) if s.name == "events")
    assert topic_configs(spec, 3) == {"cleanup.policy": "delete", "retention.ms": str(52 * WEEK),
                                      "min.insync.replicas": "2"}


def test_table_listing(capsys):
    assert main(["topics", "--partitions", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["TOPIC", "PARTITIONS", "CLEANUP", "RETENTION"]
    table = {ln.split()[0]: ln.split()[1:4] for ln in lines[1:]}
    assert table["events"] == ["4", "delete", "52w"]
    assert table["ticks"] == ["4", "delete", "1d"]
    assert table["ticks.dlq"] == ["1", "delete", "4w"]
    assert table["ratiowatch-scenario-state-changelog"] == ["4", "compact", "(compacted)"]


@pytest.mark.parametrize("argv, words", [
    (["--create"], "--create needs --broker"),
    (["--partitions", "0"], "--partitions must be >= 1"),
    (["--replication-factor", "0"], "--replication-factor must be >= 1"),
])
def test_bad_arguments_exit_2(capsys, monkeypatch, argv, words):
    monkeypatch.delenv("RATIOWATCH_BROKER", raising=False)
    assert main(["topics", *argv]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.broker
def test_create_against_the_embedded_broker_says_it_creates_topics_itself(capsys):
    with EmbeddedBroker() as b:
        specs = all_topics(4)
        for s in specs[:3]:
            b.create_topic(s.name, s.partitions)
        assert main(["topics", "--broker", b.url, "--partitions", "4", "--create"]) == 1
        cap = capsys.readouterr()
        assert "the embedded broker creates topics itself" in cap.out
        assert "ticks: present, 4 partitions" in cap.out and "events: missing" in cap.out
        assert f"lacks {len(specs) - 3} of them" in cap.err
        for s in specs[3:]:
            b.create_topic(s.name, s.partitions)
        assert main(["topics", "--broker", b.url, "--partitions", "4", "--create"]) == 0
        out = capsys.readouterr().out
        assert "the embedded broker creates topics itself" in out
        assert all(f"{s.name}: present" in out for s in specs)
        # asking for another partition count than the broker has is a mismatch, not a success
        assert main(["topics", "--broker", b.url, "--partitions", "8", "--create"]) == 1
        assert "events: has 4 partitions, not 8" in capsys.readouterr().out


def test_a_role_does_not_start_on_topics_with_another_partition_count():
    # The shard topic and the changelog are co-partitioned, one partition per shard: an engine
    # started for 8 shards on topics made for 4 would route to partitions that do not exist.
    from ratiowatch.streams.app import ensure_topics, ensure_topics_exist

    with EmbeddedBroker() as b:
        ensure_topics(b, 4)
        assert ensure_topics_exist(b.bootstrap, 4) == []
        with pytest.raises(RuntimeError, match=r"topics not as ratiowatch needs them for .* 8: ticks has 4 "
                                               r"partitions, not 8; .*ratiowatch-ticks-by-shard has 4 partitions"):
            ensure_topics_exist(b.bootstrap, 8)
