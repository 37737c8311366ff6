"""The README's shell blocks, run as written (issue 20, "recipes that work as written").

Every command line of every ```sh block in README.md is classified below (``CLASSIFIED``): either a
test here runs it, as written, or it is skipped with the reason it cannot run on this machine. A
README block nobody classified fails ``test_every_readme_command_is_classified``, saying what to do.

"As written" means: the installed console script for ``ratiowatch`` (this virtualenv's), the
arguments exactly as in the README, with only its placeholders filled in: ``PORT`` is the port
``ratiowatch broker`` printed, ``data/`` and ``DIR`` the real history folder ../shared/data/history.
Each process runs in its own session (as in its own terminal), in a temporary folder
(RATIOWATCH_DATADIR there too), and gets the signal a terminal would send it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from ratiowatch.streams.readback import read_topic

pytestmark = pytest.mark.broker  # the recipes run on the embedded broker (`ratiowatch broker`, `ratiowatch run`)
REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
HISTORY = REPO.parent / "shared" / "data" / "history"
RW = str(Path(sys.executable).with_name("ratiowatch"))

# ------------------------------------------------------------------ what each README command is

SKIP = "skip"
QUICK_START, CLUSTER, SERVE, LIVE_YAML, SHORT = "quick_start", "cluster", "serve", "live_yaml", "short"

# Key: the command as the README writes it, with its comment dropped, continuation lines joined and
# runs of spaces made one. Value: (how this file runs it, or SKIP; why).
# A ``SHORT`` command (backtest, replay, config show, topics...) is run to its end by
# test_short_readme_commands and must exit 0 within SHORT_TIMEOUT_S.
CLASSIFIED: dict[str, tuple[str, str]] = {
    # Quick start.
    "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/ratiowatch run": (
        QUICK_START, "the venv and `pip install .` are what .ci/run does before this suite; the installed "
                     "`ratiowatch run` is run as written and stopped with Ctrl-C (SIGINT)"),
    "bash .ci/run": (
        SKIP, "CI itself: it reinstalls .venv and runs this whole suite, this test included"),
    # Live market data: a real setup against vendors' clouds.
    "export APCA_API_KEY_ID=... APCA_API_SECRET_KEY=...": (
        SKIP, "an Alpaca account's keys: there are none here (and no route to Alpaca)"),
    "ratiowatch history fetch --source stooq IWM SPY RSP KRE XLF XLI XBI HYG QQQ XLK XLU DXY=dx.f --to data/": (
        SKIP, "downloads from stooq.com, which cannot be reached from here; tests/test_history_fetch.py runs "
              "`history fetch` against a local server"),
    "ratiowatch history fetch --source fred DGS10 DGS2 --to data/": (
        SKIP, "downloads from fred.stlouisfed.org, which cannot be reached from here; "
              "tests/test_history_fetch.py runs it against a local server"),
    "sed 's/allowed_lateness_s: 300/allowed_lateness_s: 259200/' configs/scenarios.yaml > live.yaml": (
        LIVE_YAML, "run in a copy of the repository's layout; `config show --config live.yaml` must show the "
                   "new lateness"),
    "ratiowatch run --config live.yaml --history data/ --feed alpaca:wss://stream.data.alpaca.markets/v2/iex "
    "--poll fred:DGS10,DGS2 --poll-interval 3600 --poll stooq:DXY=dx.f": (
        SKIP, "Alpaca's feed, FRED and Stooq cannot be reached from here (and Alpaca needs the keys); "
              "tests/test_source_e2e.py runs this setup against local servers speaking each vendor's protocol"),
    # The embedded broker shared by several processes, each in its own terminal.
    "ratiowatch broker": (CLUSTER, "the multi-process recipe: one process per line"),
    "ratiowatch scenarios apply configs/scenarios.yaml --broker kafka://127.0.0.1:PORT": (
        CLUSTER, "a command that ends, from the repository root, before the roles start"),
    "ratiowatch engine --broker kafka://127.0.0.1:PORT --origin simulated": (CLUSTER, "its own process"),
    "ratiowatch notify --broker kafka://127.0.0.1:PORT": (CLUSTER, "its own process"),
    "ratiowatch web --broker kafka://127.0.0.1:PORT": (CLUSTER, "its own process"),
    "ratiowatch source --broker kafka://127.0.0.1:PORT": (CLUSTER, "its own process"),
    # Live stream and status page.
    "ratiowatch run --serve": (SERVE, "the page and /status on 127.0.0.1:8765, then Ctrl-C"),
    # Tests.
    "RATIOWATCH_TEST_BROKER=mock .venv/bin/pytest -q -p no:cacheprovider": (
        SKIP, "this suite itself, this test included"),
    "RATIOWATCH_TEST_BROKER=tansu .venv/bin/pytest -q -p no:cacheprovider -m both_brokers": (
        SKIP, "the broker-generic part of this suite on Tansu: .ci/run runs it"),
}

SHORT_TIMEOUT_S = 60
# What the ```sh blocks' lines may be written in; a block in another language, or an unlabelled block
# that looks like commands, must be looked at (and labelled sh, so that it is classified and run).
KNOWN_LANGS = {"sh", "yaml", ""}
COMMAND_LIKE = re.compile(r"^\s*(\$ )?(ratiowatch|python3?|\.venv/|bash|export|curl|docker|sed|pip)\s")


@dataclass
class Block:
    lang: str
    line: int  # of the opening fence, 1-based
    lines: list[str]


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block (```lang ... ```), also those indented under a list item."""
    blocks, current, indent = [], None, ""
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$", line)
        if current is None:
            if m:
                current, indent = Block(m["lang"], n, []), m["indent"]
        elif m and not m["lang"]:
            blocks.append(current)
            current = None
        else:
            current.lines.append(line[len(indent):] if line.startswith(indent) else line)
    assert current is None, f"README.md:{current.line}: a code block is never closed"
    return blocks


def _drop_comment(line: str) -> str:
    """``line`` without its shell comment (a ``#`` at the start or after a blank, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def block_commands(block: Block) -> list[tuple[int, str]]:
    """(README line, command) of each command of a sh block: comments dropped, ``\\`` continuations
    joined, runs of blanks made one."""
    out, pending, start = [], "", 0
    for i, raw in enumerate(block.lines):
        text = _drop_comment(raw).rstrip()
        if not pending:
            start = block.line + 1 + i
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        cmd = " ".join((pending + text).split())
        pending = ""
        if cmd:
            out.append((start, cmd))
    assert not pending, f"README.md:{block.line}: a block ends in a continuation line"
    return out


def readme_commands() -> list[tuple[int, str]]:
    return [c for b in readme_blocks(README.read_text()) if b.lang == "sh" for c in block_commands(b)]


def commands_of(kind: str) -> list[str]:
    return [cmd for _n, cmd in readme_commands() if CLASSIFIED.get(cmd, (None,))[0] == kind]


def substitute(cmd: str, port: int | None = None) -> list[str]:
    """The command's argv with the placeholders filled in, and nothing else changed."""
    argv = []
    for tok in shlex.split(cmd):
        if port is not None:
            tok = tok.replace("127.0.0.1:PORT", f"127.0.0.1:{port}")
        if tok == "data/" or tok == "DIR":
            tok = str(HISTORY) + ("/" if tok.endswith("/") else "")
        argv.append(tok)
    assert "PORT" not in " ".join(argv), f"{cmd!r}: PORT left unfilled"
    if argv and argv[0] in ("ratiowatch", ".venv/bin/ratiowatch"):
        argv[0] = RW
    return argv


# ------------------------------------------------------------------ processes

class Proc:
    """One command in its own session (its own terminal), its output in files under ``workdir``."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.name, self.argv = name, argv
        self.out, self.err = workdir / f"{name}.out", workdir / f"{name}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def tail(self) -> str:
        return (f"{self.name} ({shlex.join(self.argv)}), exit {self.proc.poll()}\n--- stdout:\n{self.stdout()[-1500:]}"
                f"\n--- stderr:\n{self.err.read_text(errors='replace')[-2500:]}")

    def send(self, sig: int) -> None:
        """What the terminal does: the signal to the whole foreground group."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.send(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.proc.wait(timeout=10)
            raise AssertionError(f"did not stop within {timeout:g}s of signal {sig}: {self.tail()}") from None

    def kill(self) -> None:
        """For the finally: whatever still runs is killed and reaped."""
        if self.proc.poll() is None:
            self.send(signal.SIGKILL)
            self.proc.wait(timeout=10)


def until(cond, what, timeout: float, procs: list[Proc] = ()):
    """Wait for ``cond()`` to return something truthy and return it; fail saying ``what`` (a string
    or a callable) after ``timeout``, or at once if one of ``procs`` exited."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        for p in procs:
            if p.proc.poll() is not None:
                raise AssertionError(f"exited while waiting for {what() if callable(what) else what}: {p.tail()}")
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what() if callable(what) else what}"
        time.sleep(0.2)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def need_ports(*ports: int) -> None:
    """The README's commands use the roles' default ports; wait (bounded) for another run to free them."""
    until(lambda: all(port_free(p) for p in ports),
          lambda: f"ports {[p for p in ports if not port_free(p)]} on 127.0.0.1 are in use, and the README's "
                  f"commands, as written, use them", 30)


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "RATIOWATCH_DATADIR": str(tmp_path)}


# ------------------------------------------------------------------ the inventory

def test_every_readme_command_is_classified():
    blocks = readme_blocks(README.read_text())
    for b in blocks:
        assert b.lang in KNOWN_LANGS, (
            f"README.md:{b.line}: a ```{b.lang} block: tests/test_readme.py runs only ```sh blocks; "
            f"label it sh if it holds commands, or add {b.lang!r} to KNOWN_LANGS if it holds none")
        if b.lang == "":
            looks = [ln for ln in b.lines if COMMAND_LIKE.match(ln)]
            assert not looks, (f"README.md:{b.line}: an unlabelled block with command lines {looks}: label it "
                               f"```sh so that tests/test_readme.py classifies and runs it")
    found = readme_commands()
    assert found, "no ```sh block found in README.md"
    unclassified = [f"README.md:{n}: {cmd}" for n, cmd in found if cmd not in CLASSIFIED]
    assert not unclassified, (
        "README commands nobody classified; add each to CLASSIFIED in tests/test_readme.py, with the test that "
        "runs it as written or, if it cannot run here, SKIP and why:\n  " + "\n  ".join(unclassified))
    stale = sorted(set(CLASSIFIED) - {cmd for _n, cmd in found})
    assert not stale, f"CLASSIFIED names commands the README no longer has (remove them): {stale}"
    for cmd, (kind, why) in CLASSIFIED.items():
        assert kind in (SKIP, QUICK_START, CLUSTER, SERVE, LIVE_YAML, SHORT) and why.strip(), (cmd, kind, why)


def test_the_extraction_reads_blocks_as_a_shell_would():
    """The parser itself: comments, quotes, continuations, an indented block."""
    text = "\n".join([
        "x", "```sh", "a --x 1   # comment", "# only a comment", "b 'q # not a comment' \\", "    --y 2", "```",
        "  ```sh", "  c PORT", "  ```", "```", "not sh", "```"])
    bs = readme_blocks(text)
    assert [(b.lang, b.line) for b in bs] == [("sh", 2), ("sh", 8), ("", 11)]
    assert block_commands(bs[0]) == [(3, "a --x 1"), (5, "b 'q # not a comment' --y 2")]
    assert block_commands(bs[1]) == [(9, "c PORT")]
    assert substitute("ratiowatch engine --broker kafka://127.0.0.1:PORT --data data/", 4242) == [
        RW, "engine", "--broker", "kafka://127.0.0.1:4242", "--data", f"{HISTORY}/"]


# ------------------------------------------------------------------ the quick start

def _sample_alert() -> list[str]:
    """The README's sample output after "Alerts print as they happen", without its "..." lines."""
    text = README.read_text()
    after = text[text.index("Alerts print as they happen"):]
    block = next(b for b in readme_blocks(after) if b.lang == "")
    return [ln for ln in block.lines if ln.strip() != "..."]


def test_quick_start_run_prints_the_sample_alert_and_stops_on_ctrl_c(tmp_path, env):
    (cmd,) = commands_of(QUICK_START)
    # The line installs and then runs; the install is this virtualenv, the run is run as written.
    run = cmd.split("&&")[-1].strip()
    assert run == ".venv/bin/ratiowatch run", cmd
    sample = _sample_alert()
    assert sample and sample[0].startswith("ALERT: [SIMULATED] "), sample
    p = Proc("run", substitute(run), tmp_path, env)
    try:
        until(lambda: "ALERT:" in p.stdout(), "the first ALERT: line", 60, [p])
        # Every line of the README's sample, in its order (the sample shortens with "...").
        def sample_shown():
            out, at = p.stdout(), 0
            for line in sample:
                at = out.find(line + "\n", at)
                if at < 0:
                    return False
            return True
        until(sample_shown, lambda: f"the README's sample alert lines {sample} in order; the output so far:\n"
                                    f"{p.stdout()[-3000:]}", 60, [p])
        first = next(ln for ln in p.stdout().splitlines() if ln.startswith("ALERT:"))
        assert first == sample[0], f"the first alert printed is {first!r}, the README shows {sample[0]!r}"
        assert p.stop(signal.SIGINT) == 0, p.tail()  # Ctrl-C
    finally:
        p.kill()


def test_live_setup_sed_makes_a_scenario_file_with_the_lateness_it_says(tmp_path, env):
    (cmd,) = commands_of(LIVE_YAML)
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "scenarios.yaml", tmp_path / "configs" / "scenarios.yaml")  # the repo's layout
    done = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    shipped = (tmp_path / "configs" / "scenarios.yaml").read_text()
    live = (tmp_path / "live.yaml").read_text()
    assert live != shipped, "the sed changed nothing: the shipped file no longer says `allowed_lateness_s: 300`"
    shown = subprocess.run([RW, "config", "show", "--config", "live.yaml"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=SHORT_TIMEOUT_S)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^  allowed_lateness_s: 259200(\.0)?$", shown.stdout, re.M), shown.stdout[:600]


@pytest.mark.parametrize("cmd", commands_of(SHORT))
def test_short_readme_commands(tmp_path, env, cmd):
    done = subprocess.run(substitute(cmd), cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=SHORT_TIMEOUT_S)
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout[-1500:]}\n{done.stderr[-2500:]}"


# ------------------------------------------------------------------ the multi-process recipe

ROLE_PORTS = {"engine": 9470, "notify": 9471, "web": 8765, "source": 9473}  # the defaults the recipe relies on


def _records(bootstrap: str, topic: str) -> list[dict]:
    return [json.loads(v) for _k, v, _p, _o in read_topic(bootstrap, topic, timeout_s=20)]


def _reasons(dead: list[dict]) -> dict[str, int]:
    return dict(Counter(d.get("reason") for d in dead))


def test_multi_process_recipe_as_written_gives_crossings_and_no_late_ticks(tmp_path, env):
    """The README's `ratiowatch broker` block, each line its own process: a crossing reaches `events`
    and no tick is dead-lettered as late (the issue: every worker started its own simulated market,
    and half the ticks went to ticks.dlq as `late`). Then SIGTERM stops every process with exit 0."""
    cmds = commands_of(CLUSTER)
    assert cmds[0] == "ratiowatch broker" and cmds[1].startswith("ratiowatch scenarios apply") and len(cmds) == 6, cmds
    need_ports(*ROLE_PORTS.values())
    procs: list[Proc] = []
    try:
        broker = Proc("broker", substitute(cmds[0]), tmp_path, env)
        procs.append(broker)
        port = int(until(lambda: (m := re.search(r"^bootstrap: 127\.0\.0\.1:(\d+)$", broker.stdout(), re.M)) and m[1],
                         "`ratiowatch broker` prints its bootstrap address", 30, procs))
        bootstrap = f"127.0.0.1:{port}"
        applied = subprocess.run(substitute(cmds[1], port), cwd=README.parent, env=env, capture_output=True,
                                 text=True, timeout=60)
        assert applied.returncode == 0 and "applied: " in applied.stdout, applied.stdout + applied.stderr
        for cmd in cmds[2:]:
            argv = substitute(cmd, port)
            role = argv[1]
            p = Proc(role, argv, tmp_path, env)
            procs.append(p)
            # As in a terminal: the next line is typed once this one says it is running.
            started = re.compile(rf"^ratiowatch {role}: (running|simulated market -> ticks)", re.M)
            until(lambda: started.search(p.stdout()), f"`{cmd}` says it is running", 60, procs)
            assert f"http://127.0.0.1:{ROLE_PORTS[role]}/" in p.stdout(), p.tail()

        # The README: the simulated market's first rally crosses the small-caps scenario within a minute.
        fired = until(lambda: [e for e in _records(bootstrap, "events") if e.get("kind") == "fired"
                               and e.get("rule") == "trigger" and e.get("scenario") == "small-caps-outperform"],
                      lambda: f"the small-caps crossing on the events topic (ticks.dlq by reason: "
                              f"{_reasons(_records(bootstrap, 'ticks.dlq'))})", 60, procs)
        assert {e["origin"] for e in fired} == {"simulated"}, fired[:3]
        reasons = _reasons(_records(bootstrap, "ticks.dlq"))
        assert reasons.get("late", 0) == 0, f"ticks dead-lettered as late: {reasons}"
        assert reasons.get("origin", 0) == 0, f"ticks dead-lettered for their origin: {reasons}"
        # The page shows what the engine computed.
        with urllib.request.urlopen(f"http://127.0.0.1:{ROLE_PORTS['web']}/status", timeout=10) as r:
            assert any(not s.get("pending") for s in json.loads(r.read())["scenarios"])

        for p in reversed(procs):  # source first, the broker last
            assert p.stop(signal.SIGTERM) == 0, p.tail()
    finally:
        for p in procs:
            p.kill()


# ------------------------------------------------------------------ the status page

def test_run_serve_serves_the_page_and_stops_on_ctrl_c(tmp_path, env):
    (cmd,) = commands_of(SERVE)
    need_ports(8765)
    p = Proc("serve", substitute(cmd), tmp_path, env)
    try:
        until(lambda: "status page: http://127.0.0.1:8765/" in p.stdout(), "the page's address printed", 60, [p])

        def status():
            try:
                with urllib.request.urlopen("http://127.0.0.1:8765/status", timeout=5) as r:
                    doc = json.loads(r.read())
            except (urllib.error.URLError, OSError):
                return None
            return [s for s in doc["scenarios"] if not s.get("pending")]

        until(status, "a scenario with a status on /status", 60, [p])
        with urllib.request.urlopen("http://127.0.0.1:8765/", timeout=5) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        assert p.stop(signal.SIGINT) == 0, p.tail()
    finally:
        p.kill()
