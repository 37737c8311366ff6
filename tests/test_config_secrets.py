"""Channel secrets: percent-encoded where the URL needs it, read the way apprise reads them, and
required only by the commands that notify; and the sanity warnings given at start.

The delivery tests talk to a real aiosmtpd on 127.0.0.1 that requires AUTH, with passwords holding
every character that means something in a URL (``@ : / ? # %``), the config loaded from a YAML file
that names the password as ``${PASS}``.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
from pathlib import Path

import apprise
import pytest
import yaml

from ratiowatch.agents.engine import ScenarioEngine
from ratiowatch.cli import main
from ratiowatch.commands import config as config_cmd
from ratiowatch.commands import replay as replay_cmd
from ratiowatch.config import (default_config_path, interpolate_env, interpolate_url, load_config,
                               unprovided_symbols, warn_unprovided_symbols)
from ratiowatch.errors import ConfigError
from ratiowatch.notifiers import NotificationService, RetryPolicy
from ratiowatch.notifiers.deliver import AppriseSender
from ratiowatch.notifiers.redact import SECRET, Redactor, redact_url, url_problem
from ratiowatch.notifiers.render import Message
from ratiowatch.streams.history import daily_ticks, load_history
from ratiowatch.streams.simfeed import DEFAULT_SYMBOLS

from peers import SmtpPeer  # tests/ is on sys.path

HISTORY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "history"
LOGIN = "alerts-bot"
# Each holds the characters that split a URL: '@' ends the user info, ':' the user, '/' the
# authority, '?' the path, '#' the whole URL, '%' starts an escape ('%40' would decode to '@').
PASSWORDS = ["p@ss:w/rd?x#y%z", "%40@@::", "a/b?c#d", "100%-sure@home", "#:?/@%25"]
FAST = RetryPolicy(attempts=1, base_delay_s=0.01, max_delay_s=0.05, deadline_s=30, attempt_timeout_s=20)


def write_config(tmp_path: Path, channels: dict, notify: list[str], **rule) -> Path:
    trigger = {"series": "IWM/SPY", "lookback": 63, "above": 0.10, **rule}
    doc = {"channels": channels, "scenarios": [{"id": "s1", "trigger": trigger, "notify": notify}]}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def mail_template(port: int) -> str:
    return f"mailto://{LOGIN}:${{PASS}}@127.0.0.1:{port}?from=ratiowatch@example.com&to=trader@example.com"


def apprise_reads(url: str):
    a = apprise.Apprise()
    assert a.add(url), "apprise does not load the URL"
    s = a[0]
    return s.host, s.port, s.user, s.password


# ------------------------------------------------------------------ interpolation

@pytest.mark.parametrize("pw", PASSWORDS)
def test_secret_in_user_info_is_encoded_and_apprise_reads_it_back(pw):
    url, unset = interpolate_url("mailto://${USER}:${PASS}@smtp.example.com:587?to=desk@example.com",
                                 {"USER": "me@corp", "PASS": pw})
    assert unset == ()
    assert apprise_reads(url) == ("smtp.example.com", 587, "me@corp", pw)
    assert redact_url(url) == f"mailto://{SECRET}@smtp.example.com:587?to={SECRET}"
    assert url_problem(url) is None


def test_raw_substitution_is_what_broke():
    """The old, raw substitution: apprise connects elsewhere (or cannot parse the URL), and
    ``url_problem`` (what ``config show`` prints) says so without quoting the secret."""
    template = "mailto://u:${PASS}@smtp.example.com:587?from=rw@example.com&to=desk@example.com"
    raw = interpolate_env(template, {"PASS": "p@ss"})
    host = apprise_reads(raw)[0]
    assert host == "ss"  # the report: apprise connects to host "ss"
    assert redact_url(raw) == f"mailto://{SECRET}@{SECRET}?from={SECRET}&to={SECRET}"  # not smtp.example.com
    problem = url_problem(raw)
    assert problem and "different host" in problem and "p@ss" not in problem
    for pw in ("p/ss", "p?ss", "p#ss", "p:ss"):
        assert url_problem(interpolate_env(template, {"PASS": pw})) is not None, pw


def test_whole_url_scheme_host_and_port_substitutions_are_left_as_they_are():
    env = {"SLACK_URL": "slack://TA1B2C3D4/B0123456/XOXB?x#y", "SCHEME": "mailtos", "HOST": "smtp.example.com",
           "PORT": "465", "HP": "smtp.example.com:587", "TOK": "a/b?c", "TO": "a@b.example,c@d.example"}
    assert interpolate_url("${SLACK_URL}", env) == (env["SLACK_URL"], ())
    assert interpolate_url("${SCHEME}://u:p@${HOST}:${PORT}", env) == ("mailtos://u:p@smtp.example.com:465", ())
    assert interpolate_url("mailto://${HP}?to=x@y.example", env)[0] == "mailto://smtp.example.com:587?to=x@y.example"
    # path segments and query values are encoded (apprise decodes them)
    assert interpolate_url("json://h.example.com/${TOK}?to=${TO}", env)[0] == \
        "json://h.example.com/a%2Fb%3Fc?to=a%40b.example%2Cc%40d.example"
    # a default is substituted (and encoded) the same way; an unset variable is reported, not raised
    assert interpolate_url("mailto://u:${NOPE:-a@b}@h.example.com", {}) == ("mailto://u:a%40b@h.example.com", ())
    assert interpolate_url("mailto://${U}:${P}@h.example.com/${P}", {}) == (
        "mailto://${U}:${P}@h.example.com/${P}", ("U", "P"))


def test_config_show_reads_urls_as_apprise_does(tmp_path, monkeypatch, capsys):
    pw = "p@ss:w/rd?x#y%z"
    monkeypatch.setenv("PASS", pw)
    cfg = write_config(tmp_path, {
        "mail": "mailto://alerts-bot:${PASS}@smtp.example.com:2525?to=desk@example.com",
        "typed": "mailto://alerts-bot:Typ3dPw@zz9Plural@smtp.example.com:2525?to=desk@example.com",
    }, ["mail", "typed"])
    assert main(["config", "show", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    doc = yaml.safe_load(out)
    mail, typed = doc["channels"]["mail"], doc["channels"]["typed"]
    assert mail["url"] == f"mailto://{SECRET}@smtp.example.com:2525?to={SECRET}" and "problem" not in mail
    # a password typed into the file with a raw "@": apprise reads host "zz9Plural", and the page says so
    assert "smtp.example.com" not in typed["url"] and "different host" in typed["problem"]
    for secret in (pw, "alerts-bot", "Typ3dPw", "zz9Plural", "p@ss"):
        assert secret not in out


# ------------------------------------------------------------------ delivery to a real SMTP server with AUTH

@pytest.mark.parametrize("pw", PASSWORDS)
async def test_mail_with_reserved_characters_in_the_password_authenticates(tmp_path, monkeypatch, pw):
    smtp = SmtpPeer(login=LOGIN.encode(), password=pw)
    port = await smtp.start()
    try:
        monkeypatch.setenv("PASS", pw)
        cfg = load_config(write_config(tmp_path, {"mail": mail_template(port)}, ["mail"]))
        ch = cfg.channels["mail"]
        sender = AppriseSender(Redactor(c.url for c in cfg.channels.values()))
        await sender.send(ch, Message("Subject", "body text", "text"), None, 20)
    finally:
        await smtp.stop()
    assert smtp.logins == [(LOGIN.encode(), pw.encode())]
    assert len(smtp.messages) == 1 and smtp.messages[0]["To"] == "trader@example.com"


@pytest.fixture(scope="module")
def crossing():
    """A real 'fired' trigger event of the shipped small-caps scenario over the real history."""
    cfg = load_config()
    sc = cfg.scenario("small-caps-outperform")
    eng = ScenarioEngine(sc, cfg.settings)
    st, found = eng.new_state(), None
    for _d, ticks in daily_ticks(load_history(HISTORY, sc.symbols), cfg.settings.session_timezone):
        for e in eng.apply(st, ticks[0].ts_ms, ticks):
            if e["rule"] == "trigger" and e["kind"] == "fired" and found is None:
                found = e
    assert found is not None
    return found


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_notification_service_delivers_with_encoded_secret(tmp_path, monkeypatch, crossing, caplog):
    """The notify path end to end: the YAML's ${PASS} (holding @ : / ? # %) reaches the SMTP server's
    AUTH intact, the delivery record says delivered, and nothing we emit quotes the password."""
    caplog.set_level(logging.DEBUG, logger="apprise")
    pw = PASSWORDS[0]
    smtp = SmtpPeer(login=LOGIN.encode(), password=pw)
    port = await smtp.start()
    raw = yaml.safe_load(Path(default_config_path()).read_text())
    raw["channels"] = {"desk-mail": mail_template(port)}
    for s in raw["scenarios"]:
        s["notify"] = ["desk-mail"] if s["id"] == "small-caps-outperform" else ["console"]
    path = tmp_path / "scenarios.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PASS", pw)
    records: list[tuple[str, bytes | None, bytes]] = []

    async def publish(topic, key, value):
        records.append((topic, key, value))

    svc = NotificationService(load_config(path), publish, history_for=lambda ev: None,
                              store_path=tmp_path / "n.sqlite", retry=FAST)
    try:
        async with svc:
            await svc.handle(crossing)
            assert await svc.drain(60)
    finally:
        await smtp.stop()
    assert smtp.logins == [(LOGIN.encode(), pw.encode())]
    assert len(smtp.messages) == 1
    deliveries = [json.loads(v) for t, _k, v in records if t == "deliveries"]
    assert [(d["channel"], d["outcome"]) for d in deliveries] == [("desk-mail", "delivered")]
    emitted = b"".join(v for _t, _k, v in records).decode() + caplog.text
    assert pw not in emitted and "p%40ss" not in emitted


# ------------------------------------------------------------------ only what a command uses is required

def unset_config(tmp_path: Path, monkeypatch) -> Path:
    for v in ("RW_TEST_UNSET_SLACK", "RW_TEST_UNSET_PASS"):
        monkeypatch.delenv(v, raising=False)
    return write_config(tmp_path, {
        "desk-slack": "${RW_TEST_UNSET_SLACK}",
        "mail": {"url": "mailto://u:${RW_TEST_UNSET_PASS}@smtp.example.com?to=a@b.example", "rate_limit_per_min": 5},
        "hook": "json://127.0.0.1:9/x",
    }, ["desk-slack", "mail", "hook"])


UNSET_MSG = ("channels.desk-slack.url: environment variable RW_TEST_UNSET_SLACK is not set "
             "(set it, or write ${RW_TEST_UNSET_SLACK:-default})")


def test_load_without_channel_secrets_marks_channels_unset_and_disabled(tmp_path, monkeypatch):
    path = unset_config(tmp_path, monkeypatch)
    with pytest.raises(ConfigError) as e:
        load_config(path)  # the default: a command that notifies
    assert str(e.value) == f"{path}: {UNSET_MSG}"
    cfg = load_config(path, require_channels=False)
    assert cfg.unset_channels == {"desk-slack": ("RW_TEST_UNSET_SLACK",), "mail": ("RW_TEST_UNSET_PASS",)}
    slack, mail, hook = (cfg.channels[n] for n in ("desk-slack", "mail", "hook"))
    assert not slack.enabled and not mail.enabled and hook.enabled
    assert slack.url == mail.url == "" and mail.rate_limit_per_min == 5
    with pytest.raises(ConfigError, match="desk-slack"):
        NotificationService(cfg, None)  # a disabled channel can never be delivered to


def test_backtest_runs_without_channel_secrets(tmp_path, monkeypatch, capsys):
    path = unset_config(tmp_path, monkeypatch)
    rc = main(["backtest", "--config", str(path), "--data", str(HISTORY), "--out", str(tmp_path / "out"),
               "--no-charts"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert (tmp_path / "out" / "events.csv").exists()


def test_config_show_lists_unset_channels(tmp_path, monkeypatch, capsys):
    path = unset_config(tmp_path, monkeypatch)
    assert main(["config", "show", "--config", str(path)]) == 0
    cap = capsys.readouterr()
    doc = yaml.safe_load(cap.out)
    assert doc["unset_channels"] == {"desk-slack": ["RW_TEST_UNSET_SLACK"], "mail": ["RW_TEST_UNSET_PASS"]}
    assert doc["channels"]["desk-slack"] == {"url": "unset", "enabled": False, "unset": ["RW_TEST_UNSET_SLACK"],
                                             "format": "auto", "renders_as": "unknown (set by the unset URL)"}
    assert doc["channels"]["mail"]["renders_as"] == "email" and doc["channels"]["mail"]["enabled"] is False
    assert doc["channels"]["hook"]["url"] == "json://127.0.0.1:9/<secret>"
    assert ("unset channels: desk-slack (RW_TEST_UNSET_SLACK), mail (RW_TEST_UNSET_PASS)" in cap.err)


def test_replay_requires_channel_secrets_only_with_notify(tmp_path, monkeypatch, capsys):
    path = unset_config(tmp_path, monkeypatch)
    seen = []

    async def fake_replay(config, data, **kw):  # the load is what is tested here, not the broker
        seen.append((config, kw["notify"]))
        return [], collections.defaultdict(int, dates=1)

    monkeypatch.setattr(replay_cmd, "replay", fake_replay)
    assert main(["replay", "--config", str(path), "--data", str(HISTORY)]) == 0
    assert len(seen) == 1 and seen[0][1] is False and not seen[0][0].channels["desk-slack"].enabled
    capsys.readouterr()
    assert main(["replay", "--notify", "--config", str(path), "--data", str(HISTORY)]) == 2
    assert capsys.readouterr().err == f"ratiowatch: config error: {path}: {UNSET_MSG}\n"
    assert len(seen) == 1  # failed at start


@pytest.mark.parametrize("argv", [["run", "--duration", "1"], ["notify", "--broker", "kafka://127.0.0.1:9"]])
def test_commands_that_notify_fail_at_start_naming_file_key_and_variable(tmp_path, monkeypatch, capsys, argv):
    path = unset_config(tmp_path, monkeypatch)
    assert main([*argv, "--config", str(path)]) == 2
    assert capsys.readouterr().err == f"ratiowatch: config error: {path}: {UNSET_MSG}\n"


@pytest.mark.parametrize("argv", [["engine", "--broker", "kafka://127.0.0.1:1", "--start-timeout", "2"],
                                  ["web", "--broker", "kafka://127.0.0.1:1", "--start-timeout", "2"],
                                  ["topics"]])
def test_commands_that_never_notify_start_without_channel_secrets(tmp_path, monkeypatch, capsys, argv):
    # They get past the config (an unreachable broker is the next thing they meet: exit 1, or 0
    # for the offline topic listing), never exit 2 on a channel's variable.
    path = unset_config(tmp_path, monkeypatch)
    rc = main([*argv, "--config", str(path)])
    err = capsys.readouterr().err
    assert rc in (0, 1) and "RW_TEST_UNSET" not in err, err


# ------------------------------------------------------------------ sanity warnings at start

def test_relative_threshold_of_100_percent_or_more_warns_how_it_reads(tmp_path, caplog):
    path = write_config(tmp_path, {}, ["console"], above=8, rearm=8)
    doc = yaml.safe_load(path.read_text())
    doc["scenarios"][0]["confirmations"] = [
        {"label": "dollar", "series": "DXY", "lookback": 21, "below": -1.5},   # relative: warns
        {"label": "curve", "series": "DGS10-DGS2", "lookback": 21, "above": 1.5},  # spread: points
        {"label": "level", "series": "DXY", "below": 100},                      # a level, no transform
        {"label": "streak", "series": "IWM/SPY", "streak": True, "above": 6},   # sessions in a row
        {"label": "high", "series": "QQQ/SPY", "high": 252, "above": 0.99},     # 99%: fine
    ]
    path.write_text(yaml.safe_dump(doc))
    with caplog.at_level(logging.WARNING, logger="ratiowatch.config"):
        cfg = load_config(path)
    assert cfg.warnings == (
        f"{path}: scenario s1.trigger.above: 8 reads as a change of +800% (IWM/SPY 63-session change >= "
        f"+800.00%); relative changes are fractions: +0.08 is +8%",
        f"{path}: scenario s1.confirmations[0].below: -1.5 reads as a change of -150% (DXY 21-session change "
        f"<= -150.00%); relative changes are fractions: -0.015 is -1.5%",
    )
    assert [r.getMessage() for r in caplog.records if r.name == "ratiowatch.config"] == list(cfg.warnings)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ratiowatch.config"):
        assert load_config(write_config(tmp_path, {}, ["console"], above=0.10)).warnings == ()
    assert caplog.records == []


def test_config_show_includes_the_warnings(tmp_path):
    path = write_config(tmp_path, {}, ["console"], above=8)
    doc = config_cmd.config_document(load_config(path))
    assert doc["warnings"] == [f"{path}: scenario s1.trigger.above: 8 reads as a change of +800% (IWM/SPY "
                               f"63-session change >= +800.00%); relative changes are fractions: +0.08 is +8%"]


def test_symbol_no_source_provides_is_named(tmp_path, caplog):
    path = write_config(tmp_path, {}, ["console"])
    doc = yaml.safe_load(path.read_text())
    doc["scenarios"][0]["confirmations"] = [{"label": "x", "series": "FOO/SPY", "lookback": 5, "above": 0}]
    path.write_text(yaml.safe_dump(doc))
    cfg = load_config(path)
    assert unprovided_symbols(cfg, DEFAULT_SYMBOLS) == {"FOO": "scenario s1.confirmations[0].series"}
    assert unprovided_symbols(cfg, [*DEFAULT_SYMBOLS, "foo"]) == {}
    with caplog.at_level(logging.WARNING, logger="ratiowatch.config"):
        msgs = warn_unprovided_symbols(cfg, DEFAULT_SYMBOLS, "the simulated market")
    assert msgs == [f"{path}: scenario s1.confirmations[0].series: symbol FOO is not provided by the simulated "
                    f"market (it provides: {', '.join(sorted(DEFAULT_SYMBOLS))})"]
    assert [r.getMessage() for r in caplog.records] == msgs
    # with history, a symbol without a file stays an error at load (file, place, symbol)
    with pytest.raises(ConfigError, match=r"confirmation 'x'.series: FOO/SPY names symbol FOO with no data"):
        load_config(path, known_symbols=["IWM", "SPY"])
