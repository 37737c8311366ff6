"""A real Prometheus server for tests: its own process on 127.0.0.1, a free port, a generated
scrape config (1 s interval), its TSDB in a temporary folder, stopped at the end.

    async with PrometheusPeer(tmp_path, {"engine": ["127.0.0.1:8001", "127.0.0.1:8002"]}) as prom:
        await prom.wait_targets_up()
        assert await prom.query("sum(ratiowatch_ticks_in_total)") == 12

Every wait polls Prometheus' HTTP API until a condition holds or a deadline passes (then it fails
with what it last saw); nothing sleeps a fixed time in place of a condition.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, Callable

import aiohttp
import pytest
import yaml

__all__ = ["PrometheusPeer", "prometheus_binary", "promtool_binary"]

POLL_S = 0.1  # between two looks at the API while waiting for a condition


def prometheus_binary() -> str:
    return _binary("prometheus")


def promtool_binary() -> str:
    return _binary("promtool")


def _binary(name: str) -> str:
    """The binary, or skip -- except in CI (env CI=true), where it must be installed (.ci/run does)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is not installed; .ci/run installs Debian's prometheus package")
        pytest.skip(f"{name} is not installed (apt-get install prometheus)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusPeer:
    """``jobs``: job name -> ["127.0.0.1:PORT", ...]; ``tokens``: job name -> bearer token to scrape
    it with. Use as ``async with``."""

    def __init__(self, workdir: Path, jobs: dict[str, list[str]], *, tokens: dict[str, str] | None = None,
                 timeout_s: float = 60.0) -> None:
        self.workdir = Path(workdir)
        self.jobs = jobs
        self.tokens = tokens or {}
        self.timeout_s = timeout_s
        self.port = 0
        self._proc: subprocess.Popen | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        scrape = []
        for job, targets in self.jobs.items():
            cfg: dict[str, Any] = {"job_name": job, "static_configs": [{"targets": targets}]}
            if job in self.tokens:
                cfg["authorization"] = {"type": "Bearer", "credentials": self.tokens[job]}
            scrape.append(cfg)
        return {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "scrape_configs": scrape}

    async def __aenter__(self) -> PrometheusPeer:
        binary = prometheus_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self.port = _free_port()
        self._log = open(self.workdir / "prometheus.log", "wb")
        self._proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            await self._until(self._ready, lambda ok: ok, "Prometheus to answer /-/ready")
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                await asyncio.to_thread(self._proc.wait, 30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                await asyncio.to_thread(self._proc.wait)
            self._proc = None
            self._log.close()

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")[-4000:]

    # --- the HTTP API -------------------------------------------------------------------------------

    async def _ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self._proc.returncode}:\n{self.log()}")
        try:
            async with self._http.get(f"{self.url}/-/ready") as r:
                return r.status == 200
        except aiohttp.ClientConnectionError:
            return False

    async def _api(self, path: str, **params: str) -> Any:
        async with self._http.get(f"{self.url}/api/v1/{path}", params=params) as r:
            body = await r.json()
        if body.get("status") != "success":
            raise AssertionError(f"prometheus {path} {params}: {body}")
        return body["data"]

    async def targets(self) -> list[dict]:
        return (await self._api("targets", state="active"))["activeTargets"]

    async def query(self, expr: str) -> float | None:
        """The value of an instant query with one result (None when it has no result)."""
        data = await self._api("query", query=expr)
        result = data["result"]
        if data["resultType"] == "scalar":
            return float(result[1])
        if not result:
            return None
        if len(result) > 1:
            raise AssertionError(f"{expr} has {len(result)} series; aggregate it: {result}")
        return float(result[0]["value"][1])

    async def series(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every series of an instant vector query: sorted labels -> value."""
        data = await self._api("query", query=expr)
        return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in data["result"]}

    # --- waiting on conditions ------------------------------------------------------------------------

    async def wait_targets(self, health: str = "up", jobs: list[str] | None = None) -> list[dict]:
        """Until every target (of ``jobs``) has been scraped with this health; returns them."""
        want = set(jobs or self.jobs)
        expected = sum(len(self.jobs[j]) for j in want)

        async def look() -> list[dict]:
            return [t for t in await self.targets() if t["labels"]["job"] in want]

        return await self._until(
            look, lambda ts: len(ts) == expected and all(t["health"] == health for t in ts),
            f"every target of {sorted(want)} to be {health}")

    async def wait_targets_up(self, jobs: list[str] | None = None) -> list[dict]:
        return await self.wait_targets("up", jobs)

    async def wait_query(self, expr: str, condition: Callable[[float | None], bool], what: str) -> float | None:
        return await self._until(lambda: self.query(expr), condition, f"{expr}: {what}")

    async def _until(self, look: Callable[[], Any], condition: Callable[[Any], bool], what: str) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        last: Any = None
        while True:
            last = await look()
            if condition(last):
                return last
            if loop.time() > deadline:
                raise AssertionError(f"waited {self.timeout_s:g}s for {what}; last saw {last!r}\n{self.log()}")
            await asyncio.sleep(POLL_S)
