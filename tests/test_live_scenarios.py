"""Scenarios changed on a running cluster, with no restart: broker, engine, notify and web as
separate processes, the scenarios applied with ``ratiowatch scenarios apply``, ticks of the real
history sent on ``ticks`` a stretch at a time, email to a real SMTP server (aiosmtpd), the page in
headless Chromium.

The story (2021-2024 closes):

1. file A: three untouched scenarios, Z (DXY below 100, on a symbol no other scenario uses) and
   X (SPY above 380). X fires in the first half of 2021.
2. file B: X moved to SPY above 425, and Y (QQQ above 350, emailed) added. X restarts cold (its
   status says so) and fires at 425 in late 2021, where the old X (armed again only when SPY falls
   below 370) would not; Y's first crossing is on ``events`` with B's version, and emailed.
3. a record written by hand on ``scenarios`` is dead-lettered on ``control.dlq`` with its reason;
   every role keeps running on B (X and Y keep B's events).
4. ``ratiowatch silence add y``: Y's next crossing is on ``events``, ``silenced`` on
   ``deliveries``, not at the SMTP server, and the page shows the mute. After ``silence expire``
   the next crossing is emailed; the silenced one never is.
5. an invalid file: ``scenarios apply`` exits 2 naming file, key and problem; the topic is unchanged.
6. file C applied with ``--prune``, without Z: Z's card leaves /status and the page, its state
   gets tombstones on the changelog, and its later crossings (in the backtest) are not evaluated.

Throughout, the events of the untouched scenarios equal the backtest's over the whole stretch,
and every process keeps its PID. X's and Y's events equal the backtest of the version in force
over the stretch it was in force (a cold start evaluates as a backtest starting that day).

On the embedded broker only (not ``both_brokers``): on Tansu 0.6.0 ``scenarios apply`` reads the
topic short (its ListOffsets gap, conftest.GAPS["list_offsets_log_end"]: after one batch of five
records the end offset is 1), so B's diff says four scenarios "added" that are on the topic.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson
import polars as pl
import pytest
import yaml
from kafka import KafkaProducer

from live_cluster import RW, Role, ThreadedSmtp, TickSender, last_ts, records, until
from ratiowatch.agents.events import canonical_order
from ratiowatch.backtest import run_backtest
from ratiowatch.config import load_config
from ratiowatch.model import Config
from ratiowatch.streams.topics import CONTROL_DLQ, DELIVERIES, EVENTS, SCENARIOS, STATE_TABLE, changelog
from ratiowatch.streams.clients import kafka_python_kwargs_for
from ratiowatch.streams.history import load_history
from ratiowatch.streams.origin import REPLAY
from test_status_page_browser import chromium_page

pytestmark = [pytest.mark.broker]

PASSWORD = "pa55-Word-Never-Shown"
NO_MAIL: list[str] = []
UNTOUCHED = [
    {"id": "tech-over-utilities", "title": "Tech over utilities",
     "trigger": {"series": "XLK/XLU", "ma": 200, "above": 0, "rearm": -0.02}, "notify": NO_MAIL},
    {"id": "curve-uninverts", "title": "Yield curve un-inverts",
     "trigger": {"series": "DGS10-DGS2", "above": 0.0, "rearm": -0.10}, "notify": NO_MAIL},
    {"id": "small-caps-streak", "title": "Small caps win six in a row",
     "trigger": {"series": "IWM/SPY", "streak": True, "above": 6, "rearm": 0}, "notify": NO_MAIL},
]
Z = {"id": "dollar-below-100", "title": "Dollar below 100",
     "trigger": {"series": "DXY", "below": 100, "rearm": 101}, "notify": NO_MAIL}
X_OLD = {"id": "spy-level", "title": "SPY level", "trigger": {"series": "SPY", "above": 380, "rearm": 370},
         "windows": [5], "notify": NO_MAIL}
X_NEW = {**X_OLD, "trigger": {"series": "SPY", "above": 425, "rearm": 415}}
Y = {"id": "qqq-level", "title": "QQQ above 350", "trigger": {"series": "QQQ", "above": 350, "rearm": 340},
     "windows": [5], "notify": ["desk-mail"]}

# The stretches of ticks, and what happens between them.
S1 = (date(2021, 1, 1), date(2021, 6, 30))   # A in force; X fires at 380
S2 = (date(2021, 7, 1), date(2021, 12, 31))  # B; Y's first crossing (emailed), X fires at 425
S3 = (date(2022, 1, 1), date(2022, 2, 28))   # Y silenced: its crossing is not emailed
S4 = (date(2022, 3, 1), date(2022, 6, 30))   # silence expired: Y's next crossing is emailed
S5 = (date(2022, 7, 1), date(2024, 12, 31))  # C (pruned: no Z)


@dataclass
class Plan:
    files: dict[str, Path]
    cfg: dict[str, Config]
    history: pl.DataFrame
    tz: str

    def backtest(self, name: str, ids: set[str], start: date, end: date) -> list[dict]:
        h = self.history.filter(pl.col("date").is_between(start, end))
        return [e for e in run_backtest(self.cfg[name], h).as_published(REPLAY) if e["scenario"] in ids]

    def version(self, name: str, sid: str) -> str:
        return next(s.version for s in self.cfg[name].scenarios if s.id == sid)


def _write(path: Path, scenarios: list[dict], **top) -> Path:
    path.write_text(yaml.safe_dump({**top, "scenarios": scenarios}, sort_keys=False))
    return path


@pytest.fixture
def plan(history_dir, tmp_path) -> Plan:
    files = {
        "A": _write(tmp_path / "a.yaml", [*UNTOUCHED, Z, X_OLD]),
        "B": _write(tmp_path / "b.yaml", [*UNTOUCHED, Z, X_NEW, Y]),
        "C": _write(tmp_path / "c.yaml", [*UNTOUCHED, X_NEW, Y]),
        "bad": _write(tmp_path / "bad.yaml", [*UNTOUCHED, {**Y, "trigger": {"series": "QQQ", "above": "lots"}}]),
    }
    cfg = {k: load_config(p, require_channels=False, check_channels="if_defined") for k, p in files.items()
           if k != "bad"}
    h = load_history(history_dir, cfg["B"].symbols, cfg["B"].settings.signed_symbols)
    return Plan(files, cfg, h.filter(pl.col("date").is_between(S1[0], S5[1])), cfg["B"].settings.session_timezone)


def _events(bootstrap: str, cfg: Config) -> list[dict]:
    return canonical_order([orjson.loads(v) for _k, v in records(bootstrap, EVENTS)], cfg)


def _of(events: list[dict], ids: set[str]) -> list[dict]:
    return [e for e in events if e["scenario"] in ids]


def _fired(events: list[dict]) -> list[dict]:
    return [e for e in events if e["kind"] == "fired"]


def _subject(e: dict) -> str:
    """The subject of the email of Y's crossing ``e``: its day, its title and its value."""
    return f"[REPLAY of {e['at'][:10]}] {Y['title']}: QQQ {e['series_value']:.2f}"


def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(RW + list(argv), capture_output=True, text=True, env=env, timeout=120)


async def test_scenarios_added_changed_silenced_and_removed_on_a_running_cluster(kafka_broker, plan, tmp_path):
    url, bootstrap = kafka_broker.url, kafka_broker.bootstrap
    env = {**os.environ, "RATIOWATCH_DATADIR": str(tmp_path / "data"), "RATIOWATCH_SESSION_TIMEOUT_S": "6"}
    env.pop("RATIOWATCH_TOKEN", None)
    smtp = ThreadedSmtp()
    smtp_port = smtp.start_thread()
    # The roles' own file: settings and channels (the scenarios in it are not used: the roles
    # follow the topic). The channel's password stays here, never on a topic.
    roles_cfg = _write(tmp_path / "roles.yaml", [X_OLD], channels={
        "desk-mail": f"mailto://alerts-bot:{PASSWORD}@127.0.0.1:{smtp_port}"
                     "?from=ratiowatch@example.com&to=trader@example.com"})
    ids_untouched = {s["id"] for s in UNTOUCHED}
    x, y, z = X_OLD["id"], Y["id"], Z["id"]
    roles: list[Role] = []
    ticks = TickSender(bootstrap, plan.history, plan.tz)
    try:
        p = _cli(env, "scenarios", "apply", str(plan.files["A"]), "--broker", url)
        assert p.returncode == 0 and "applied: 5 added" in p.stdout, p.stdout + p.stderr
        common = ["--broker", url, "--config", str(roles_cfg)]
        roles += [Role("engine", ["engine", *common, "--origin", "replay"], tmp_path, env),
                  # -v: notify logs each silence it takes into force, which the test waits for.
                  Role("notify", ["-v", "notify", *common], tmp_path, env),
                  Role("web", ["web", *common], tmp_path, env)]
        engine, notify, web = roles
        pids = {r.name: r.pid for r in roles}
        until(lambda: all(r.running() and r.get("/readyz")[0] == 200 for r in roles),
              lambda: "every role ready: " + ", ".join(f"{r.name} {r.get('/readyz')}" for r in roles), 120)

        def settled(name: str, end: date) -> None:
            """Every scenario of file ``name`` has a status on the page evaluated at the last
            session up to ``end`` with its version: the ticks sent so far are applied."""
            want = {s.id: (last_ts(plan.history, s.symbols, end, plan.tz), s.version) for s in plan.cfg[name].scenarios}
            until(lambda: {sid: (st.get("ts_ms"), st.get("scenario_version"))
                           for sid, st in web.statuses().items()} == want,
                  lambda: f"statuses of {name} at {end}: want {want}, page has "
                          f"{ {sid: (st.get('ts_ms'), st.get('scenario_version')) for sid, st in web.statuses().items()} }",
                  60)

        # 1. file A; X fires at 380.
        ticks.send(*S1)
        settled("A", S1[1])
        x_old = plan.backtest("A", {x}, *S1)
        assert [e["threshold"] for e in _fired(x_old)] == [380], x_old
        assert _of(_events(bootstrap, plan.cfg["A"]), {x}) == x_old

        # 2. file B: Y added, X moved. Applied live, then the ticks of the second half of 2021.
        p = _cli(env, "scenarios", "apply", str(plan.files["B"]), "--broker", url)
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"+ {y}" in p.stdout and f"~ {x}  changed, its rules too" in p.stdout, p.stdout
        assert "applied: 1 added, 1 changed, 4 unchanged, 0 removed" in p.stdout, p.stdout
        until(lambda: (web.statuses().get(x) or {}).get("scenario_version") == plan.version("B", x),
              "X's status under B's version", 30)
        assert web.statuses()[x]["restarted"]["from"] == "cold"
        ticks.send(*S2)
        settled("B", S2[1])
        x_new = plan.backtest("B", {x}, S2[0], S5[1])
        y_all = plan.backtest("B", {y}, S2[0], S5[1])
        y_fired = _fired(y_all)
        in_ = lambda evs, s: [e for e in evs if s[0].isoformat() <= e["at"][:10] <= s[1].isoformat()]  # noqa: E731
        assert [e["threshold"] for e in _fired(in_(x_new, S2))] == [425]
        # Discriminating: the old X, kept, would not have fired in S2.
        assert _fired(in_(plan.backtest("A", {x}, S1[0], S2[1]), S2)) == []
        assert len(in_(y_fired, S2)) == 1 and len(in_(y_fired, S3)) == 1 and len(in_(y_fired, S4)) == 1, y_fired
        got = _events(bootstrap, plan.cfg["B"])
        assert _of(got, {x}) == x_old + in_(x_new, S2)
        assert _of(got, {y}) == in_(y_all, S2)
        assert {e["scenario_version"] for e in _of(got, {y})} == {plan.version("B", y)}
        first_y = in_(y_fired, S2)[0]
        until(lambda: len(smtp.messages) == 1, lambda: f"Y's first crossing emailed: {smtp.subjects()}", 30)
        assert smtp.subjects() == [_subject(first_y)], smtp.subjects()

        # 3. a record written by hand on `scenarios`: dead-lettered with a reason; B stays in force.
        producer = KafkaProducer(bootstrap_servers=bootstrap, **kafka_python_kwargs_for())
        producer.send(SCENARIOS, key=x.encode(),
                      value=orjson.dumps({"schema": 1, "scenario": {"id": x, "trigger": {"series": "SPY"}}}))
        producer.flush()
        producer.close()
        dead = lambda: [orjson.loads(v) for _k, v in records(bootstrap, CONTROL_DLQ)]  # noqa: E731
        until(lambda: len(dead()) >= 3, lambda: f"a dead letter from engine, notify and web: {dead()}", 30)
        assert all(d["source"] == SCENARIOS and x in str(d) for d in dead()), dead()
        print("dead letter:", dead()[0])

        # 4. a silence on Y: its next crossing is not emailed. The ids a silence may name are
        # those in force on the cluster: Y is one, and one never applied is refused.
        p = _cli(env, "silence", "add", "no-such", "--for", "2h", "--comment", "x", "--broker", url)
        assert p.returncode == 2 and "unknown scenario 'no-such'" in p.stderr and y in p.stderr, p.stderr
        p = _cli(env, "silence", "add", y, "--for", "2h", "--comment", "known rally", "--author", "ana",
                 "--broker", url)
        assert p.returncode == 0, p.stdout + p.stderr
        silence_id = p.stdout.strip()
        until(lambda: (web.statuses()[y].get("muted") or {}).get("silence") == silence_id, "Y muted on /status", 30)
        await _page_shows_mute(web.port, y, silence_id)
        until(lambda: f"notify: silence {silence_id} on {y}: active" in notify.log.read_text(),
              "notify has the silence in force", 30)
        ticks.send(*S3)
        settled("B", S3[1])
        second_y = in_(y_fired, S3)[0]
        deliveries = lambda: [orjson.loads(v) for _k, v in records(bootstrap, DELIVERIES)]  # noqa: E731
        until(lambda: any(d["event_id"] == second_y["event_id"] for d in deliveries()),
              "the silenced crossing on deliveries", 30)
        assert [(d["outcome"], d.get("silence")) for d in deliveries() if d["event_id"] == second_y["event_id"]] \
            == [("silenced", silence_id)]
        assert len(smtp.messages) == 1, smtp.subjects()
        p = _cli(env, "silence", "expire", silence_id, "--broker", url)
        assert p.returncode == 0, p.stdout + p.stderr
        until(lambda: web.statuses()[y].get("muted") is None, "Y no longer muted on /status", 30)
        until(lambda: f"notify: silence {silence_id} on {y}: expired" in notify.log.read_text(),
              "notify has the silence's expiry", 30)
        ticks.send(*S4)
        settled("B", S4[1])
        third_y = in_(y_fired, S4)[0]
        until(lambda: len(smtp.messages) == 2, lambda: f"Y's crossing after the expiry emailed: {smtp.subjects()}; "
              f"deliveries {[(d['event_id'], d['outcome']) for d in deliveries()]}", 30)
        assert smtp.subjects() == [_subject(first_y), _subject(third_y)]
        outcomes = {d["event_id"]: d["outcome"] for d in deliveries()}
        assert (outcomes[first_y["event_id"]], outcomes[second_y["event_id"]], outcomes[third_y["event_id"]]) == \
            ("delivered", "silenced", "delivered")

        # 5. an invalid file: exit 2 naming file, key and problem; nothing published.
        before = records(bootstrap, SCENARIOS)
        p = _cli(env, "scenarios", "apply", str(plan.files["bad"]), "--broker", url)
        assert p.returncode == 2, p.stdout + p.stderr
        assert str(plan.files["bad"]) in p.stderr and f"scenario {y}.trigger" in p.stderr, p.stderr
        assert p.stdout == ""
        assert records(bootstrap, SCENARIOS) == before

        # 6. file C with --prune: Z removed.
        p = _cli(env, "scenarios", "apply", str(plan.files["C"]), "--prune", "--broker", url)
        assert p.returncode == 0 and f"- {z}  removed" in p.stdout, p.stdout + p.stderr
        until(lambda: z not in web.statuses(), "Z's card gone from /status", 30)
        await _page_lacks(web.port, z, {s.id for s in plan.cfg["C"].scenarios})
        state_log = changelog(STATE_TABLE)
        until(lambda: any(k is not None and k.decode().startswith(z) and v is None
                          for k, v in records(bootstrap, state_log)),
              lambda: f"a tombstone for {z} on {state_log}: "
                      f"{[(k, v is None) for k, v in records(bootstrap, state_log) if k and z.encode() in k]}", 30)
        ticks.send(*S5)
        settled("C", S5[1])
        z_all = plan.backtest("A", {z}, S1[0], S5[1])
        assert in_(z_all, S5), "Z crosses in S5 in the backtest: its absence below means it is not evaluated"

        # Across every change: the untouched scenarios as the backtest; X, Y and Z as the
        # backtest of the version in force while it was.
        got = _events(bootstrap, plan.cfg["B"])
        assert _of(got, ids_untouched) == plan.backtest("A", ids_untouched, S1[0], S5[1])
        assert _of(got, {z}) == [e for e in z_all if e["at"][:10] <= S4[1].isoformat()]
        assert _of(got, {x}) == x_old + x_new
        assert _of(got, {y}) == y_all
        emailed = [_subject(e) for e in y_fired if e is not second_y]
        until(lambda: len(smtp.messages) == len(emailed), lambda: f"every crossing of Y but the silenced one "
              f"emailed: {smtp.subjects()}", 30)
        assert sorted(smtp.subjects()) == sorted(emailed)
        assert all(r.running() and r.pid == pids[r.name] for r in roles)  # no restart, throughout
        until(lambda: engine.metric("ratiowatch_ticks_in_total") == ticks.sent,
              lambda: f"the engine counted {engine.metric('ratiowatch_ticks_in_total')} of {ticks.sent} ticks", 10)
        for r in roles:
            assert r.stop() == 0, (r.name, r.log.read_text()[-2000:])
    finally:
        ticks.close()
        for r in roles:
            r.stop(signal.SIGKILL) if r.proc.poll() is None else None
        smtp.stop_thread()


async def _page_shows_mute(port: int, scenario: str, silence_id: str) -> None:
    async with chromium_page() as page:
        await page.goto(f"http://127.0.0.1:{port}/")
        mute = page.locator(f'.card[data-scenario="{scenario}"] .mute')
        await mute.filter(has_text="Muted until").wait_for(timeout=20000)
        assert "known rally (ana)" in await mute.text_content()


async def _page_lacks(port: int, gone: str, ids: set[str]) -> None:
    async with chromium_page() as page:
        await page.goto(f"http://127.0.0.1:{port}/")
        # Locators only: the page's CSP (script-src 'self') refuses the eval behind a string predicate.
        await page.locator(".card").nth(len(ids) - 1).wait_for(timeout=20000)
        await page.locator(f'.card[data-scenario="{gone}"]').wait_for(state="detached", timeout=20000)
        shown = {await c.get_attribute("data-scenario") for c in await page.locator(".card").all()}
        assert shown == ids and gone not in shown
