"""docker-compose.yml, the Dockerfile and deploy/: what can be checked without a Docker engine.

No Docker engine runs here, so no container is started. What is checked: the compose file validates
with ``docker-compose config`` (Debian's docker-compose) in both layouts (default, and deploy/ha.env
with the ha profile), and refuses to resolve without RATIOWATCH_TOKEN; images are pinned; each of
the four roles (engine, notify, web, source) is its own service running its own command on its
default --http port, with a healthcheck on /readyz whose probe is run for real against a real ops
server (200 passes, 503 fails); engine, notify and web can be scaled (no container_name, no host
port); the token is interpolated, never written; Prometheus' scrape targets are the compose
services on the roles' real ports, with the token file the Prometheus service writes; the proxy in
front of the web copies is a valid Caddy config (``caddy adapt``) that really carries the page,
/status and /ws with the token to a real web server (when caddy is installed); the ha profile is
three KRaft nodes agreeing on one quorum with replication factor 3; the Dockerfile copies
everything ``pip install .`` needs; and the compose defaults work for real: the scenario file loads
with exactly the environment compose gives the roles, and its email and push channel URLs deliver
to a real SMTP server and a real HTTP server on 127.0.0.1 standing in for Mailpit and ntfy.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import apprise
import orjson
import pytest
import yaml
from aiosmtpd.controller import Controller

from ratiowatch.cli import build_parser
from ratiowatch.config import load_config
from ratiowatch.streams.history import available_symbols
from ratiowatch.streams.simfeed import DEFAULT_SYMBOLS

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
HA_ENV = REPO / "deploy" / "ha.env"
CADDYFILE = REPO / "deploy" / "Caddyfile"
SCENARIOS = REPO / "deploy" / "scenarios.compose.yaml"
PROMETHEUS_YML = REPO / "examples" / "prometheus" / "prometheus.yml"
ROLES = ("engine", "notify", "web", "source")
SCALABLE = ("engine", "notify", "web")
RATIOWATCH_SERVICES = ("topics", "scenarios", *ROLES)
# A token made up for this run: it must reach the services only through interpolation.
TOKEN = "test-" + secrets.token_hex(16)


def role_http_port(role: str) -> int:
    """The role command's default --http port, from the CLI itself (``ratiowatch ROLE --help``)."""
    parser, _ = build_parser()
    return parser.parse_args([role]).http.port


def _compose_config(env_file: Path, *args: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    """``docker-compose --env-file ENV_FILE ARGS`` on the repository's compose file, with
    RATIOWATCH_TOKEN in the environment (as a user's shell gives it) unless ``token`` is None."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: install Debian's docker-compose "
                    "(apt-get update && apt-get install -y docker-compose) to validate docker-compose.yml")
    # Only the defaults written in the files count: the caller's own settings (the shell, or a .env
    # beside the compose file, which --env-file replaces) must not change what is checked.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RATIOWATCH_", "KAFKA_", "MAILPIT_", "NTFY_", "COMPOSE_", "PROMETHEUS_"))}
    if token is not None:
        env["RATIOWATCH_TOKEN"] = token
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


@pytest.mark.parametrize("layout", ["default", "ha"])
def test_compose_refuses_to_start_without_the_token(layout, no_env):
    """The roles bind 0.0.0.0 in their containers, which ratiowatch refuses without a token: compose
    says so before starting anything, instead of every role exiting 2 in a restart loop."""
    rc, _, err = _compose_config(HA_ENV if layout == "ha" else no_env, "config", "-q", token=None)
    assert rc != 0 and "set RATIOWATCH_TOKEN" in err, err


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
    assert {"apache/kafka:3.9.1", "axllent/mailpit:v1.22.3", "binwiederhier/ntfy:v2.11.0", "caddy:2.8.4",
            "prom/prometheus:v2.53.2"} <= images
    assert "latest" not in COMPOSE.read_text()
    base = re.findall(r"^FROM\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert len(base) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base[0]), base


def test_each_role_is_a_service_running_its_own_command(resolved):
    svcs = resolved["services"]
    for role in ROLES:
        svc = svcs[role]
        argv = _cmd(svc).split()
        assert argv[:3] == [role, "--broker", "kafka://kafka:9092"], (role, argv)
        # bound wide inside the container (the healthcheck, Prometheus and the proxy must reach it),
        # on the port the role uses by default, so docs, probes and scrape configs agree
        assert f"--http 0.0.0.0:{role_http_port(role)}" in _cmd(svc), role
        assert svc["restart"] == "unless-stopped", role
        # started once the file's scenarios are in force on the topic they follow
        assert svc["depends_on"]["scenarios"]["condition"] == "service_completed_successfully", role
        assert "build" in svc, role
    # nothing runs the all-in-one `ratiowatch run` any more
    assert not [n for n, s in svcs.items() if _cmd(s).startswith("run")]


def test_ratiowatch_services_share_one_image_and_config(resolved):
    svcs = resolved["services"]
    assert len({svcs[n]["image"] for n in RATIOWATCH_SERVICES}) == 1
    assert _cmd(svcs["scenarios"]).split()[:3] == ["scenarios", "apply", "/etc/ratiowatch/scenarios.yaml"]
    assert svcs["scenarios"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    for n in RATIOWATCH_SERVICES:
        assert n == "scenarios" or "--config /etc/ratiowatch/scenarios.yaml" in _cmd(svcs[n]), n
        assert any(t == "/etc/ratiowatch/scenarios.yaml" and ro for _, t, ro in _volumes(svcs[n])), n


def _probe_url(svc: dict) -> tuple[list[str], str]:
    test = svc["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test  # the image has Python, not curl
    urls = re.findall(r"'(http://[^']+)'", test[3])
    assert len(urls) == 1, test
    return test, urls[0]


def test_each_role_has_a_healthcheck_on_its_readyz(resolved):
    for role in ROLES:
        test, url = _probe_url(resolved["services"][role])
        assert url == f"http://127.0.0.1:{role_http_port(role)}/readyz", (role, url)
        hc = resolved["services"][role]["healthcheck"]
        assert {"interval", "timeout", "retries", "start_period"} <= set(hc), role


async def test_the_healthcheck_probe_passes_on_200_and_fails_on_503(resolved):
    """Each role's probe command, run for real against a real ops server (with the token set, as in
    compose: /readyz stays open): exit 0 while ready, non-zero while not, and when nothing listens."""
    from ratiowatch.ops import Health, Metrics, OpsServer
    from ratiowatch.ops.http import HttpAddress

    health = Health()
    flag = health.ready_flag("engine", "state recovery in progress")
    server = await OpsServer(Metrics(), health, token=TOKEN).start(HttpAddress("127.0.0.1", 0))
    port = server.port

    async def probe(role: str, port: int) -> int:
        test, url = _probe_url(resolved["services"][role])
        code = test[3].replace(url, url.replace(f":{role_http_port(role)}/", f":{port}/"))
        p = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.DEVNULL,
                                                 stderr=asyncio.subprocess.DEVNULL)
        return await asyncio.wait_for(p.wait(), 30)

    try:
        for role in ROLES:
            assert await probe(role, port) != 0, role  # 503: not ready
        flag.ready()
        for role in ROLES:
            assert await probe(role, port) == 0, role
    finally:
        await server.close()
    assert await probe("engine", port) != 0  # nobody listening


def test_engine_notify_and_web_are_scalable(resolved):
    svcs = resolved["services"]
    for name in SCALABLE:
        # a fixed name or a host port would make the second copy fail to start
        assert "container_name" not in svcs[name] and "ports" not in svcs[name], name
    assert not [n for n, s in svcs.items() if "container_name" in s]


def test_the_token_is_interpolated_never_written(raw, resolved, resolved_ha):
    """Every service that binds beyond loopback gets RATIOWATCH_TOKEN, and only from the
    environment: the compose file says ``${RATIOWATCH_TOKEN:?...}`` and nothing committed holds it."""
    for cfg in (resolved, resolved_ha):
        svcs = cfg["services"]
        wide = sorted(n for n, s in svcs.items() if "0.0.0.0" in _cmd(s))
        assert wide == sorted(ROLES)
        for n in [*ROLES, "prometheus"]:
            assert svcs[n]["environment"]["RATIOWATCH_TOKEN"] == TOKEN, n
    # in the file: every value given to RATIOWATCH_TOKEN is the required interpolation, nothing else
    text = COMPOSE.read_text()
    given = re.findall(r"RATIOWATCH_TOKEN:\s*(.+)", text)
    assert given and all(re.fullmatch(r'"\$\{RATIOWATCH_TOKEN:\?[^}]+\}"', g.strip()) for g in given), given
    for f in (COMPOSE, HA_ENV, CADDYFILE, PROMETHEUS_YML, SCENARIOS):
        assert TOKEN not in f.read_text()
        assert not re.search(r"^\s*RATIOWATCH_TOKEN\s*=", f.read_text(), re.M), f


def _prometheus_token_file(svc: dict) -> str:
    cmd = " ".join(svc["command"]) if isinstance(svc["command"], list) else svc["command"]
    written = re.findall(r"> *(/\S+)", cmd)
    assert len(written) == 1, cmd
    return written[0]


def test_prometheus_scrapes_every_role_on_its_real_port(resolved):
    svcs = resolved["services"]
    prom = svcs["prometheus"]
    mounts = {t: src for src, t, ro in _volumes(prom) if ro}
    assert Path(mounts["/etc/prometheus/prometheus.yml"]) == PROMETHEUS_YML
    cfg = yaml.safe_load(PROMETHEUS_YML.read_text())
    for rule_file in cfg["rule_files"]:
        assert Path(mounts[f"/etc/prometheus/{rule_file}"]) == PROMETHEUS_YML.parent / rule_file
    token_file = _prometheus_token_file(prom)
    assert any(token_file.startswith(t.rstrip("/") + "/") for t in prom.get("tmpfs", [])), (token_file, prom)
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) == set(ROLES)
    for role, job in jobs.items():
        assert job["authorization"]["credentials_file"] == token_file, role
        port = role_http_port(role)
        if role in SCALABLE:
            # every copy a target: DNS service discovery on the service name, not one static address
            assert "static_configs" not in job, role
            (sd,) = job["dns_sd_configs"]
            assert (sd["names"], sd["type"], sd["port"]) == ([role], "A", port), role
        else:
            assert job["static_configs"] == [{"targets": [f"{role}:{port}"]}], role
        assert role in svcs and f"0.0.0.0:{port}" in _cmd(svcs[role]), role


def test_the_status_page_is_published_once_through_the_proxy(resolved):
    svcs = resolved["services"]
    assert _ports(svcs["proxy"]) == [("127.0.0.1", "8765", "8765")]
    assert any(Path(src) == CADDYFILE and t == "/etc/caddy/Caddyfile" for src, t, _ in _volumes(svcs["proxy"]))
    text = CADDYFILE.read_text()
    # the upstreams are the web service's copies, on the web role's port
    dyn = re.search(r"dynamic a \{([^}]*)\}", text)
    assert dyn is not None
    settings = dict(line.split(None, 1) for line in dyn.group(1).strip().splitlines() if not line.strip().startswith("#"))
    assert settings["name"].strip() == "web" and int(settings["port"]) == role_http_port("web")
    assert re.search(r"^http://:8765 \{", text, re.M)  # plain HTTP: Caddy would answer TLS for a host name


def _caddy() -> str:
    exe = shutil.which("caddy")
    if exe is None:
        pytest.skip("caddy is not installed (apt-get install caddy): the proxy config is checked by caddy itself")
    return exe


def test_the_caddyfile_is_valid_for_caddy():
    r = subprocess.run([_caddy(), "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    handler = json.loads(r.stdout)["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"][0]
    assert handler["handler"] == "reverse_proxy"
    assert handler["dynamic_upstreams"] == {"source": "a", "name": "web", "port": "8765", "refresh": 5_000_000_000}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_the_proxy_carries_the_page_status_and_websocket_with_the_token(tmp_path):
    """deploy/Caddyfile run by a real caddy on 127.0.0.1, in front of a real web server (the ops
    server with the live hub, token set): only the listen address, the DNS name (localhost for the
    service name) and the upstream port are changed for the test."""
    import aiohttp
    from websockets.asyncio.client import connect

    from ratiowatch.ops import Health, Metrics, OpsServer
    from ratiowatch.ops.http import HttpAddress
    from ratiowatch.streams.live import LiveHub

    exe = _caddy()
    hub = LiveHub(scenarios=["small-caps"], min_interval_ms=0)
    hub.publish_status({"scenario": "small-caps", "title": "Small caps", "armed": True})
    health = Health()
    server = await OpsServer(Metrics(), health, token=TOKEN, live=hub).start(HttpAddress("127.0.0.1", 0))
    listen = _free_port()
    text = CADDYFILE.read_text()
    assert "http://:8765 {" in text
    text = text.replace("http://:8765 {", f"http://127.0.0.1:{listen} {{").replace("name web", "name localhost")
    text = text.replace("port 8765", f"port {server.port}")
    conf = tmp_path / "Caddyfile"
    conf.write_text(text)
    proc = await asyncio.create_subprocess_exec(exe, "run", "--config", str(conf), "--adapter", "caddyfile",
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                                                env={**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path),
                                                     "XDG_CONFIG_HOME": str(tmp_path)})
    base = f"http://127.0.0.1:{listen}"
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while True:  # until caddy answers
                try:
                    async with http.get(f"{base}/readyz") as r:
                        ready = r.status
                        break
                except aiohttp.ClientConnectionError:
                    assert proc.returncode is None, (await proc.stderr.read()).decode()[-2000:]
                    assert time.monotonic() < deadline, "caddy did not listen within 30 s"
                    await asyncio.sleep(0.1)
            assert ready == 200
            async with http.get(f"{base}/status") as r:
                assert r.status == 401  # the token is the web role's, and the proxy does not bypass it
            async with http.get(f"{base}/status", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200
                body = orjson.loads(await r.read())
            assert "small-caps" in json.dumps(body)
            async with http.get(f"{base}/?token={TOKEN}") as r:
                assert r.status == 200 and "text/html" in r.headers["Content-Type"]
        # a browser's websocket: Origin is the proxy's address, which the Host header it passes matches
        async with connect(f"ws://127.0.0.1:{listen}/ws?token={TOKEN}", origin=f"http://127.0.0.1:{listen}") as ws:
            first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["type"] == "status"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        await server.close()


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
        assert svcs[n]["environment"]["RATIOWATCH_BROKER"] == brokers, n
        assert f"--broker {brokers}" in _cmd(svcs[n]), n
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


def test_scenario_file_loads_with_the_environment_compose_gives_the_roles(resolved, history_dir):
    env = resolved["services"]["notify"]["environment"]
    assert all(resolved["services"][r]["environment"] == env for r in ROLES)
    cfg = load_config(SCENARIOS, env=env, known_symbols=available_symbols(history_dir))
    assert cfg.channels["email"].url == env["RATIOWATCH_EMAIL_URL"]
    assert cfg.channels["email"].url.startswith("mailto://mailpit:1025?")
    assert cfg.channels["push"].url == "ntfy://ntfy:80/ratiowatch"
    assert all("email" in s.notify for s in cfg.scenarios)
    # the default tick source is the simulated market: it must price every symbol the scenarios use
    assert cfg.symbols <= set(DEFAULT_SYMBOLS), sorted(cfg.symbols - set(DEFAULT_SYMBOLS))
    # every role and the topics job read the same file: the same partition count everywhere
    assert cfg.settings.partitions == 8


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
        url = resolved["services"]["notify"]["environment"]["RATIOWATCH_EMAIL_URL"]
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
        url = resolved["services"]["notify"]["environment"]["RATIOWATCH_NTFY_URL"]
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
