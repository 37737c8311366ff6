"""docker-compose.yml, the Dockerfile and deploy/: what can be checked without a Docker engine.

No Docker engine runs here, so nothing is started. What is checked: the compose file validates with
``docker-compose config`` (Debian's docker-compose) in both layouts (default, and deploy/ha.env with
the ha profile); images are pinned; the worker can be scaled; the ha profile is three KRaft nodes
agreeing on one quorum with replication factor 3; the Dockerfile copies everything ``pip install .``
needs; and the compose defaults work for real: the scenario file loads with exactly the
environment compose gives the workers, and its email and push channel URLs deliver to a real SMTP
server and a real HTTP server on 127.0.0.1 standing in for Mailpit and ntfy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import apprise
import pytest
import yaml
from aiosmtpd.controller import Controller

from ratiowatch.config import load_config
from ratiowatch.streams.history import available_symbols
from ratiowatch.streams.simfeed import DEFAULT_SYMBOLS

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
HA_ENV = REPO / "deploy" / "ha.env"
SCENARIOS = REPO / "deploy" / "scenarios.compose.yaml"
RATIOWATCH_SERVICES = ("topics", "worker", "source", "status")


def _compose_config(env_file: Path, *args: str) -> tuple[int, str, str]:
    """``docker-compose --env-file ENV_FILE ARGS`` on the repository's compose file."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: install Debian's docker-compose "
                    "(apt-get update && apt-get install -y docker-compose) to validate docker-compose.yml")
    # Only the defaults written in the files count: the caller's own settings (the shell, or a .env
    # beside the compose file, which --env-file replaces) must not change what is checked.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RATIOWATCH_", "KAFKA_", "MAILPIT_", "NTFY_", "COMPOSE_"))}
    p = subprocess.run([exe, "--project-directory", str(REPO), "-f", str(COMPOSE), "--env-file", str(env_file), *args],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


# `docker-compose config` prints the short syntax (docker-compose 1.x, Debian bookworm) or the long
# one (Compose v2): read both the same way.
def _cmd(svc: dict) -> str:
    c = svc.get("command", "")
    return " ".join(c) if isinstance(c, list) else " ".join(c.split())


def _ports(svc: dict) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each published port."""
    out = []
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            out.append((p.get("host_ip", ""), str(p["published"]), str(p["target"])))
        else:
            host_ip, published, target = p.split("/")[0].split(":")
            out.append((host_ip, published, target))
    return out


def _volumes(svc: dict) -> list[tuple[str, str, bool]]:
    """(source, target, read-only) of each mount."""
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            out.append((v["source"], v["target"], bool(v.get("read_only"))))
        else:
            parts = v.split(":")
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


@pytest.fixture(scope="module")
def no_env(tmp_path_factory) -> Path:
    """An empty env file: the default layout, whatever .env the developer keeps."""
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def resolved(no_env) -> dict:
    rc, out, err = _compose_config(no_env, "config")
    assert rc == 0, err
    return yaml.safe_load(out)


@pytest.fixture(scope="module")
def resolved_ha() -> dict:
    rc, out, err = _compose_config(HA_ENV, "config")
    assert rc == 0, err
    return yaml.safe_load(out)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.mark.parametrize("layout", ["default", "ha"])
def test_compose_file_validates_quietly(layout, no_env):
    rc, out, err = _compose_config(HA_ENV if layout == "ha" else no_env, "config", "-q")
    assert rc == 0 and out == "", err


def _version_tag(image: str) -> str | None:
    name, _, tag = image.rpartition(":")
    return tag if name and "/" not in tag else None


def test_every_image_is_pinned_to_a_release(resolved_ha):
    for svc_name, svc in resolved_ha["services"].items():
        image = svc["image"]
        tag = _version_tag(image)
        assert tag is not None and tag != "latest", f"{svc_name}: {image} is not pinned"
        if "build" not in svc:  # pulled images: a full x.y.z release, never a moving major/minor tag
            assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{svc_name}: {image} is not an x.y.z release"
    images = {s["image"] for s in resolved_ha["services"].values()}
    assert {"apache/kafka:3.9.1", "axllent/mailpit:v1.22.3", "binwiederhier/ntfy:v2.11.0"} <= images
    assert "latest" not in COMPOSE.read_text()
    base = re.findall(r"^FROM\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert len(base) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base[0]), base


def test_worker_is_scalable(resolved):
    worker = resolved["services"]["worker"]
    # a fixed name or a host port would make the second copy fail to start
    assert "container_name" not in worker and "ports" not in worker
    assert "build" in worker
    argv = _cmd(worker).split()
    assert argv[:3] == ["run", "--broker", "kafka://kafka:9092"]
    assert "--no-sim" in argv  # the single `source` service brings the ticks, not each copy
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_ratiowatch_services_share_one_image_and_config(resolved):
    svcs = resolved["services"]
    assert len({svcs[n]["image"] for n in RATIOWATCH_SERVICES}) == 1
    for n in RATIOWATCH_SERVICES:
        assert "--config /etc/ratiowatch/scenarios.yaml" in _cmd(svcs[n]), n
        assert any(t == "/etc/ratiowatch/scenarios.yaml" and ro for _, t, ro in _volumes(svcs[n])), n
    # exactly one tick source: the other run services have the simulated market switched off
    runs = [n for n in RATIOWATCH_SERVICES if _cmd(svcs[n]).startswith("run")]
    assert sorted(n for n in runs if "--no-sim" not in _cmd(svcs[n])) == ["source"]


def test_status_page_binds_wide_only_inside_its_container(resolved):
    svcs = resolved["services"]
    wide = [n for n, s in svcs.items() if "0.0.0.0" in _cmd(s)]
    assert wide == ["status"]
    assert "--serve 0.0.0.0:8765" in _cmd(svcs["status"])
    assert "RATIOWATCH_TOKEN" in svcs["status"]["environment"]
    assert _ports(svcs["status"]) == [("127.0.0.1", "8765", "8765")]


def test_host_ports_are_loopback_and_distinct(resolved, resolved_ha):
    for cfg in (resolved, resolved_ha):
        published = [p for s in cfg["services"].values() for p in _ports(s)]
        assert published and all(ip == "127.0.0.1" for ip, _, _ in published), published
        host_ports = [port for _, port, _ in published]
        assert len(host_ports) == len(set(host_ports)), host_ports


def _kafka_nodes(cfg: dict) -> dict[str, dict]:
    return {n: s for n, s in cfg["services"].items() if s["image"].startswith("apache/kafka:")}


def test_single_broker_is_kraft(resolved):
    kafka = resolved["services"]["kafka"]
    env = kafka["environment"]
    assert "profiles" not in kafka
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_ha_profile_is_three_kraft_nodes_with_replication_factor_3(raw, resolved_ha):
    ha = {n: s for n, s in _kafka_nodes(resolved_ha).items() if s.get("profiles") == ["ha"]}
    assert len(ha) == 3
    assert all(raw["services"][n].get("profiles") == ["ha"] for n in ha)
    ids = {}
    voters = set()
    for name, svc in ha.items():
        env = svc["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert svc["hostname"] == name and f"PLAINTEXT://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
        ids[name] = env["KAFKA_NODE_ID"]
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        for key in ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
            assert env[key] == "3", (name, key)
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2" and env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
    assert len(set(ids.values())) == 3
    assert len({s["environment"]["CLUSTER_ID"] for s in ha.values()}) == 1
    # one quorum, and it names exactly these three nodes with their own ids
    assert len(voters) == 1
    quorum = {v.split("@")[1].split(":")[0]: v.split("@")[0] for v in voters.pop().split(",")}
    assert quorum == ids
    # each node keeps its log on its own volume
    data = [src for s in ha.values() for src, target, _ in _volumes(s) if target == "/var/lib/kafka/data"]
    assert len(data) == 3 and len(set(data)) == 3
    # ratiowatch in this layout talks to all three and creates its topics with 3 replicas
    svcs = resolved_ha["services"]
    brokers = "kafka://kafka-1:9092,kafka-2:9092,kafka-3:9092"
    assert "--replication-factor 3" in _cmd(svcs["topics"])
    for n in RATIOWATCH_SERVICES:
        assert svcs[n]["environment"]["RATIOWATCH_BROKER"] == brokers
        assert f"--broker {brokers}" in _cmd(svcs[n])
    assert "COMPOSE_PROFILES=ha" in HA_ENV.read_text()


def test_every_variable_is_documented():
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    docs = (REPO / "docs" / "deployment.md").read_text()
    missing = sorted(v for v in used if v not in docs)
    assert not missing, f"variables used in docker-compose.yml but not in docs/deployment.md: {missing}"


def test_dockerfile_copies_what_pip_install_needs():
    """`pip install .` in the image needs pyproject.toml, the readme it names and every package
    folder of [tool.setuptools] package-dir; .dockerignore must not hide any of them."""
    text = (REPO / "Dockerfile").read_text()
    copied = {src.rstrip("/") for line in re.findall(r"^COPY\s+(.+)$", text, re.M) for src in line.split()[:-1]}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= set(project["tool"]["setuptools"]["package-dir"].values())
    assert needed <= copied, f"the Dockerfile does not copy {sorted(needed - copied)}"
    missing = sorted(p for p in needed if not (REPO / p).exists())
    assert not missing, f"{missing} missing from the repository: the image build (`COPY`, `pip install .`) needs it"
    ignored = {ln.strip().rstrip("/") for ln in (REPO / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert not (needed & ignored), f".dockerignore hides {sorted(needed & ignored)}"
    assert "ENTRYPOINT [\"ratiowatch\"]" in text and re.search(r"^USER\s+ratiowatch", text, re.M)


def test_scenario_file_loads_with_the_environment_compose_gives_the_workers(resolved, history_dir):
    env = resolved["services"]["worker"]["environment"]
    cfg = load_config(SCENARIOS, env=env, known_symbols=available_symbols(history_dir))
    assert cfg.channels["email"].url == env["RATIOWATCH_EMAIL_URL"]
    assert cfg.channels["email"].url.startswith("mailto://mailpit:1025?")
    assert cfg.channels["push"].url == "ntfy://ntfy:80/ratiowatch"
    assert all("email" in s.notify for s in cfg.scenarios)
    # the default tick source is the simulated market: it must price every symbol the scenarios use
    assert cfg.symbols <= set(DEFAULT_SYMBOLS), sorted(cfg.symbols - set(DEFAULT_SYMBOLS))
    # the status page and the topics job read the same file: the same partition count everywhere
    assert cfg.settings.partitions == 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_email_channel_url_delivers_over_plain_smtp(resolved):
    """The compose default email URL, pointed at a real SMTP server on 127.0.0.1 in place of
    Mailpit: plain SMTP (Mailpit on the compose network has no TLS), sender and recipient as set."""
    got = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            got.append(envelope)
            return "250 OK"

    port = _free_port()
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        url = resolved["services"]["worker"]["environment"]["RATIOWATCH_EMAIL_URL"]
        local = url.replace("mailpit:1025", f"127.0.0.1:{port}", 1)
        a = apprise.Apprise()
        assert a.add(local)
        assert a.notify(title="ALERT Small caps outperform large caps", body="IWM/SPY +10.4% crossed +10.00% up")
    finally:
        smtp.stop()
    assert len(got) == 1
    assert got[0].mail_from == "ratiowatch@example.com" and got[0].rcpt_tos == ["desk@example.com"]
    assert "Small caps outperform" in got[0].content.decode()


def test_push_channel_url_publishes_to_the_ntfy_topic(resolved):
    """The compose default ntfy URL against a local HTTP server standing in for the ntfy server
    (which cannot run here): apprise publishes to topic `ratiowatch` with ntfy's JSON API."""
    got = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"id":"1","event":"message"}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = resolved["services"]["worker"]["environment"]["RATIOWATCH_NTFY_URL"]
        local = url.replace("ntfy:80", f"127.0.0.1:{server.server_address[1]}", 1)
        a = apprise.Apprise()
        assert a.add(local)
        assert a.notify(title="ALERT Yield curve un-inverts", body="DGS10-DGS2 0.02 crossed 0 up")
    finally:
        server.shutdown()
        server.server_close()
    assert len(got) == 1
    path, body = got[0]
    doc = json.loads(body)
    assert path == "/" and doc["topic"] == "ratiowatch" and doc["title"] == "ALERT Yield curve un-inverts"
