"""The embedded broker: librdkafka's mock cluster, speaking the real Kafka protocol on 127.0.0.1.

No Kafka server can be installed on our machines, but the librdkafka bundled in the
confluent-kafka wheel carries a mock cluster that answers the Kafka wire protocol over TCP.
faust/aiokafka and kafka-python 2.3.x connect to it exactly as to Kafka. Its limits are real:

- it refuses CreateTopics, so every topic (faust's changelogs too) is created here, through the
  mock API, and faust runs with ``topic_allow_declare=False``;
- it keeps at most 5 MB or 100,000 message sets per partition and silently drops older data,
  so a consumer that falls further behind loses data: keep consumers close behind producers;
- it checks producer ids and sequence numbers only for transactional producers (librdkafka's
  ``rd_kafka_mock_validate_records`` returns at once without a TransactionalId): when the answer
  to a produce request is lost (the broker went down after appending it), the idempotent
  producer's retry is appended a second time, right after the first, where Kafka would recognise
  it and store the batch once. So an event may be on ``events`` twice here, once on Kafka;
  the chaos run counts such copies apart (``broker_retry_copies``, ``ratiowatch/chaos/repeats.py``)
  and ``tests/test_events_once_after_outage.py`` pins the limit;
- it lives exactly as long as the process that created it (``ratiowatch broker`` keeps one
  alive in the foreground for other processes to share).
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading

__all__ = ["EmbeddedBroker", "BrokerError", "RETENTION_BYTES_PER_PARTITION", "RETENTION_SETS_PER_PARTITION"]

RETENTION_BYTES_PER_PARTITION = 5 * 1024 * 1024
RETENTION_SETS_PER_PARTITION = 100_000

# rd_kafka_type_t
_RD_KAFKA_PRODUCER = 0


class BrokerError(RuntimeError):
    """The embedded broker could not be started or refused a request: the message says which."""


def _load_librdkafka() -> ctypes.CDLL:
    import confluent_kafka

    pkg_dir = os.path.dirname(confluent_kafka.__file__)
    candidates = sorted(glob.glob(os.path.join(pkg_dir, os.pardir, "confluent_kafka.libs", "librdkafka*.so*")))
    if not candidates:
        raise BrokerError(
            "librdkafka from the confluent-kafka wheel was not found (expected confluent_kafka.libs/librdkafka*.so "
            "beside the confluent_kafka package); reinstall with `pip install confluent-kafka==2.16.1`"
        )
    lib = ctypes.CDLL(candidates[0])
    vp, ci, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    sigs = {
        "rd_kafka_conf_new": (vp, []),
        "rd_kafka_conf_set": (ci, [vp, cp, cp, cp, ctypes.c_size_t]),
        "rd_kafka_new": (vp, [ci, vp, cp, ctypes.c_size_t]),
        "rd_kafka_destroy": (None, [vp]),
        "rd_kafka_mock_cluster_new": (vp, [vp, ci]),
        "rd_kafka_mock_cluster_destroy": (None, [vp]),
        "rd_kafka_mock_cluster_bootstraps": (cp, [vp]),
        "rd_kafka_mock_topic_create": (ci, [vp, cp, ci, ci]),
        "rd_kafka_mock_broker_set_down": (ci, [vp, ctypes.c_int32]),
        "rd_kafka_mock_broker_set_up": (ci, [vp, ctypes.c_int32]),
        "rd_kafka_mock_broker_set_rtt": (ci, [vp, ctypes.c_int32, ci]),
        "rd_kafka_mock_push_request_errors_array": (None, [vp, ctypes.c_int16, ctypes.c_size_t, ctypes.POINTER(ci)]),
        "rd_kafka_mock_clear_request_errors": (None, [vp, ctypes.c_int16]),
        "rd_kafka_mock_group_initial_rebalance_delay_ms": (None, [vp, ctypes.c_int32]),
        "rd_kafka_err2str": (cp, [ci]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


class EmbeddedBroker:
    """A mock Kafka cluster of ``brokers`` nodes on 127.0.0.1, alive until :meth:`stop`.

    >>> with EmbeddedBroker() as b:          # doctest: +SKIP
    ...     b.create_topic("ticks", partitions=8)
    ...     print(b.bootstrap)               # 127.0.0.1:PORT
    """

    # Kafka API keys, for fault injection (push_request_errors).
    API_KEYS = {"produce": 0, "fetch": 1, "list_offsets": 2, "metadata": 3, "offset_commit": 8,
                "offset_fetch": 9, "find_coordinator": 10, "join_group": 11, "heartbeat": 12, "sync_group": 14}
    # Kafka error codes worth injecting: retriable ones a client must survive.
    ERRORS = {"not_leader": 6, "request_timed_out": 7, "network_exception": 13,
              "coordinator_not_available": 15, "not_coordinator": 16, "not_enough_replicas": 19}

    def __init__(self, brokers: int = 1) -> None:
        if brokers < 1:
            raise BrokerError(f"brokers must be >= 1, got {brokers}")
        self._lib = _load_librdkafka()
        self._lock = threading.Lock()
        self._topics: dict[str, int] = {}
        errbuf = ctypes.create_string_buffer(512)
        conf = self._lib.rd_kafka_conf_new()
        # The handle only hosts the mock cluster; it never connects anywhere. Silence the
        # "no bootstrap.servers" warning it would otherwise print.
        self._lib.rd_kafka_conf_set(conf, b"log_level", b"3", errbuf, 512)
        self._rk = self._lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errbuf, 512)
        if not self._rk:
            raise BrokerError(f"rd_kafka_new failed: {errbuf.value.decode(errors='replace')}")
        self._mc = self._lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._mc:
            self._lib.rd_kafka_destroy(self._rk)
            raise BrokerError("rd_kafka_mock_cluster_new failed")
        # Real Kafka waits 3 s for more members before the first rebalance; tests and a
        # single-process run gain nothing from that wait.
        self._lib.rd_kafka_mock_group_initial_rebalance_delay_ms(self._mc, 0)
        self.brokers = brokers
        self.bootstrap: str = self._lib.rd_kafka_mock_cluster_bootstraps(self._mc).decode()

    @property
    def url(self) -> str:
        """The broker URL in faust's form (``kafka://host:port,...``)."""
        return "kafka://" + self.bootstrap

    @property
    def topics(self) -> dict[str, int]:
        """Topics created through this wrapper, with their partition counts."""
        return dict(self._topics)

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1) -> None:
        """Create ``name`` (idempotent for the same partition count)."""
        with self._lock:
            self._check_alive()
            if name in self._topics:
                if self._topics[name] != partitions:
                    raise BrokerError(f"topic {name!r} exists with {self._topics[name]} partitions, not {partitions}")
                return
            rf = min(replication_factor, self.brokers)
            err = self._lib.rd_kafka_mock_topic_create(self._mc, name.encode(), partitions, rf)
            if err:
                raise BrokerError(f"creating topic {name!r}: {self._lib.rd_kafka_err2str(err).decode()}")
            self._topics[name] = partitions

    def create_topics(self, topics: dict[str, int]) -> None:
        for name, partitions in topics.items():
            self.create_topic(name, partitions)

    # --- fault injection, for tests and the chaos run ---------------------------------------

    def set_broker_down(self, broker_id: int = 1) -> None:
        """Make broker ``broker_id`` (1-based) close its connections and refuse new ones."""
        self._check_alive()
        self._lib.rd_kafka_mock_broker_set_down(self._mc, broker_id)

    def set_broker_up(self, broker_id: int = 1) -> None:
        self._check_alive()
        self._lib.rd_kafka_mock_broker_set_up(self._mc, broker_id)

    def set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        """Delay every response of ``broker_id`` by ``rtt_ms``."""
        self._check_alive()
        self._lib.rd_kafka_mock_broker_set_rtt(self._mc, broker_id, rtt_ms)

    def push_request_errors(self, api: str, *errors: str) -> None:
        """Fail the next requests of ``api`` (e.g. "produce") with ``errors`` in order, one each."""
        self._check_alive()
        codes = [self.ERRORS[e] if isinstance(e, str) else int(e) for e in errors]
        arr = (ctypes.c_int * len(codes))(*codes)
        self._lib.rd_kafka_mock_push_request_errors_array(self._mc, self.API_KEYS[api], len(codes), arr)

    def clear_request_errors(self, api: str) -> None:
        self._check_alive()
        self._lib.rd_kafka_mock_clear_request_errors(self._mc, self.API_KEYS[api])

    # --- lifetime -----------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self._mc is None:
            raise BrokerError("the embedded broker has been stopped")

    def stop(self) -> None:
        with self._lock:
            if self._mc is not None:
                self._lib.rd_kafka_mock_cluster_destroy(self._mc)
                self._lib.rd_kafka_destroy(self._rk)
                self._mc = self._rk = None

    def __enter__(self) -> "EmbeddedBroker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
