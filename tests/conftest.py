"""Fixtures shared across test modules: the real history folder, and the broker under test.

The broker under test (``kafka_broker``) is chosen by ``RATIOWATCH_TEST_BROKER``:

- ``mock`` (default): librdkafka's mock cluster (ratiowatch.streams.broker.EmbeddedBroker), in
  this process; it refuses CreateTopics, so the topics are made through its API;
- ``tansu``: Tansu 0.6.0, a second and independent implementation of the Kafka protocol, as a
  subprocess (tests/tansu_peer.py); topics through CreateTopics, the product's own path for real
  clusters. Tansu refuses producer ids, so the fixture sets ``RATIOWATCH_IDEMPOTENCE=off``.

Tests that use it are marked ``both_brokers``; CI runs them once per broker (.ci/run):

    .venv/bin/pytest -q -p no:cacheprovider                                  # everything, mock
    RATIOWATCH_TEST_BROKER=tansu .venv/bin/pytest -q -p no:cacheprovider -m both_brokers

Tests that need the mock cluster's fault hooks (set_broker_down, push_request_errors, set_rtt:
the chaos run, test_chaos.py, the broker-outage tests) keep using EmbeddedBroker directly and run
on the mock only: Tansu has no such hooks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HISTORY = REPO.parent / "shared" / "data" / "history"


@pytest.fixture(scope="session")
def history_dir() -> Path:
    if not (HISTORY / "SPY.csv").exists():
        pytest.fail(f"real history not found at {HISTORY}: ../shared/data/history must sit beside the repo")
    return HISTORY


TEST_BROKER_ENV = "RATIOWATCH_TEST_BROKER"
TEST_BROKERS = ("mock", "tansu")
DEFAULT_PARTITIONS = 8  # the shipped configs/scenarios.yaml's settings.partitions


def selected_broker() -> str:
    """The broker the ``both_brokers`` tests run on (RATIOWATCH_TEST_BROKER, default mock)."""
    kind = (os.environ.get(TEST_BROKER_ENV) or "mock").strip().lower()
    if kind not in TEST_BROKERS:
        raise pytest.UsageError(f"{TEST_BROKER_ENV}={os.environ.get(TEST_BROKER_ENV)!r}: must be one of "
                                f"{', '.join(TEST_BROKERS)}")
    return kind


def pytest_configure(config: pytest.Config) -> None:
    selected_broker()  # a misspelt broker stops the run at once instead of testing the default


def pytest_report_header(config: pytest.Config) -> str:
    return f"broker for both_brokers tests: {selected_broker()} ({TEST_BROKER_ENV})"


# What a broker under test is known not to do, with the evidence; a test that needs it calls
# ``kafka_broker.require(name)`` and is skipped there, saying why. Each gap is pinned by a test that
# fails once the broker does it (then delete the gap here): see docs/faults.md, "Brokers this is proven on".
GAPS: dict[str, dict[str, str]] = {
    "mock": {},
    "tansu": {
        # test_pipeline_broker.py::test_list_offsets_latest_is_the_log_end_after_a_multi_record_batch
        "list_offsets_log_end": (
            "Tansu 0.6.0 answers ListOffsets(latest) with the base offset of the partition's last batch + 1, "
            "not the log end offset (after one batch of 6 records: 1, while its fetch says 6): readers that stop "
            "at the end offsets (streams/readback.py, faust's changelog recovery) under-read"),
        # test_pipeline_broker.py::test_without_the_setting_the_engine_refuses_a_broker_without_producer_ids_at_once
        "idempotent_producer": "Tansu 0.6.0 answers InitProducerId with UnknownError ([Error -1])",
    },
}


class BrokerUnderTest:
    """The broker the test runs on, in the shape the tests use: ``.url`` (kafka://127.0.0.1:P),
    ``.bootstrap`` (127.0.0.1:P), ``.kind`` (mock or tansu), ``ensure_topics``, ``create_topic``,
    and ``require(capability)`` (skips the test on a broker with that known gap, see GAPS)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.gaps = GAPS[kind]
        if kind == "tansu":
            from tansu_peer import TansuBroker  # tests/ is on sys.path

            self.broker = TansuBroker()
        else:
            from ratiowatch.streams.broker import EmbeddedBroker

            self.broker = EmbeddedBroker()
        self.url: str = self.broker.url
        self.bootstrap: str = self.broker.bootstrap

    def ensure_topics(self, partitions: int, app_id: str | None = None) -> None:
        """Every ratiowatch topic with ``partitions`` partitions (and app ``app_id``'s changelog)."""
        from ratiowatch.streams.topics import APP_ID

        if self.kind == "tansu":
            self.broker.ensure_topics(partitions, app_id or APP_ID)
        else:
            from ratiowatch.streams.app import ensure_topics

            ensure_topics(self.broker, partitions, app_id or APP_ID)

    def create_topic(self, name: str, partitions: int = 1) -> None:
        self.broker.create_topic(name, partitions)

    def require(self, capability: str) -> None:
        """Skip the calling test, with the evidence, on a broker known to lack ``capability``."""
        if capability in self.gaps:
            pytest.skip(f"needs {capability}, which this broker lacks: {self.gaps[capability]}")

    def stop(self) -> None:
        self.broker.stop()


@pytest.fixture
def kafka_broker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A fresh broker of the kind RATIOWATCH_TEST_BROKER selects, with every ratiowatch topic made
    (partitions: the test's ``broker_partitions(n)`` marker, default 8); stopped after the test."""
    kind = selected_broker()
    marker = request.node.get_closest_marker("broker_partitions")
    partitions = int(marker.args[0]) if marker else DEFAULT_PARTITIONS
    if kind == "tansu":
        # Tansu answers InitProducerId with UnknownError: without this the engine refuses to start
        # (test_pipeline_broker.py pins both).
        monkeypatch.setenv("RATIOWATCH_IDEMPOTENCE", "off")
    broker = BrokerUnderTest(kind)
    try:
        broker.ensure_topics(partitions)
        yield broker
    finally:
        broker.stop()
