"""`ratiowatch run` follows its --config file (issue: a single process follows its file): the file
is applied to the `scenarios` topic at start, and again when it changes on disk or on SIGHUP, with
the diff printed; a file that does not load is not applied and the scenarios in force stay."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from ratiowatch.commands._control import read_scenarios
from ratiowatch.config import default_config_path

pytestmark = pytest.mark.broker
RW = [str(Path(sys.executable).with_name("ratiowatch"))]


class Run:
    """`ratiowatch run` in its own process, its stdout collected as it comes."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(RW + argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60.0, after: int = 0) -> re.Match:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.M)
        while True:
            m = rx.search("".join(self.lines[after:]))
            if m:
                return m
            assert self.proc.poll() is None, f"run exited ({self.proc.returncode}):\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout:g}s:\n{self.text()[-3000:]}"
            time.sleep(0.05)


def _status(port: int) -> dict[str, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as r:
        return {s["scenario"]: s for s in json.loads(r.read())["scenarios"]}


def test_run_applies_its_file_again_when_it_changes_and_on_sighup(tmp_path):
    doc = yaml.safe_load(Path(default_config_path()).read_text())
    path = tmp_path / "scenarios.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    run = Run(["run", "--config", str(path), "--duration", "120", "--serve", "127.0.0.1:0"], tmp_path)
    try:
        bootstrap = run.wait_for(r"embedded broker at (127\.0\.0\.1:\d+)").group(1)
        run.wait_for(r"applied: 13 added, 0 changed, 0 unchanged, 0 removed")
        port = int(run.wait_for(r"status page: http://127\.0\.0\.1:(\d+)/").group(1))
        run.wait_for(r"^running for 120s")
        assert set(read_scenarios(bootstrap)) == {s["id"] for s in doc["scenarios"]}

        # An edit on disk: one title changed (state kept), one scenario gone, one added.
        before = {sid: s["version"] for sid, s in
                  ((sid, {"version": sc.version}) for sid, sc in read_scenarios(bootstrap).items())}
        doc["scenarios"][0]["title"] = "Small caps lead (renamed)"
        gone = doc["scenarios"].pop()["id"]
        added = dict(doc["scenarios"][0], id="small-caps-copy", title="A copy of the small-caps scenario")
        doc["scenarios"].append(added)
        mark = len(run.lines)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        run.wait_for(r"the file changed: applying it again", after=mark)
        run.wait_for(r"applied: 1 added, 1 changed, 11 unchanged, 1 removed", after=mark)
        diff = run.text()[sum(map(len, run.lines[:mark])):]
        assert "+ small-caps-copy  added" in diff
        assert f"- {gone}  removed" in diff
        assert "~ small-caps-outperform  changed (title, description or routing): its state is kept" in diff
        now = read_scenarios(bootstrap)
        assert gone not in now and "small-caps-copy" in now
        assert now["small-caps-outperform"].version != before["small-caps-outperform"]
        assert now["small-caps-outperform"].title == "Small caps lead (renamed)"
        # The page follows the topic: the removed card goes, the added one comes.
        deadline = time.monotonic() + 30
        while True:
            cards = _status(port)
            if gone not in cards and "small-caps-copy" in cards:
                break
            assert time.monotonic() < deadline, sorted(cards)
            time.sleep(0.2)

        # A file that does not load is not applied: the error names the file, the key and the problem.
        mark = len(run.lines)
        path.write_text(path.read_text().replace("lookback: 63", "lookback: sixty-three", 1))
        run.wait_for(r"not applied, the scenarios in force stay: .*scenarios\.yaml.*lookback.*whole number", after=mark)
        assert set(read_scenarios(bootstrap)) == set(now)

        # SIGHUP applies the file as it is (fixed again): nothing changes, and it says so.
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        run.wait_for(r"applied: 0 added, 0 changed, 13 unchanged, 0 removed", after=mark)
        mark = len(run.lines)
        run.proc.send_signal(signal.SIGHUP)
        run.wait_for(r"SIGHUP: applying it again", after=mark)
        run.wait_for(r"applied: 0 added, 0 changed, 13 unchanged, 0 removed", after=mark)

        run.proc.send_signal(signal.SIGINT)
        try:
            code = run.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        (tmp_path / "run.log").write_text(run.text())
        assert code == 0, f"{tmp_path}/run.log: " + run.text()[-3000:]
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
