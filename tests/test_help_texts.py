"""Help texts match what the commands do (issue 20, "recipes that work as written").

Every command's ``--help`` prints and exits 0, and every example command line a help text shows
(an indented ``ratiowatch ...`` line) is accepted by the parser as written, and names the cluster
(``--broker``) where the command requires one: a reader can paste it.
"""

from __future__ import annotations

import argparse
import shlex

import pytest

from ratiowatch.cli import build_parser


def _parsers() -> list[tuple[list[str], argparse.ArgumentParser]]:
    """(argv prefix, parser) of every command and sub-command."""
    parser, _ = build_parser()
    out, todo = [], [([], parser)]
    while todo:
        prefix, p = todo.pop()
        out.append((prefix, p))
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [([*prefix, name], sub) for name, sub in action.choices.items()]
    return out


PARSERS = _parsers()


@pytest.mark.parametrize("prefix", [pre for pre, _p in PARSERS], ids=lambda pre: " ".join(pre) or "ratiowatch")
def test_help_prints_and_exits_0(prefix, capsys):
    parser, _ = build_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args([*prefix, "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ratiowatch")


def _examples() -> list[tuple[str, str]]:
    found = []
    for prefix, p in PARSERS:
        for line in (p.description or "").splitlines():
            if line.startswith("    ratiowatch "):
                found.append((" ".join(prefix), line.strip()))
    return found


def test_there_are_examples_to_check():
    assert _examples(), "no help text shows an example command any more: this test checks nothing"


@pytest.mark.parametrize("where,example", _examples())
def test_help_examples_parse_as_written_and_name_a_required_broker(where, example, monkeypatch, capsys):
    monkeypatch.delenv("RATIOWATCH_BROKER", raising=False)
    parser, _ = build_parser()  # after the variable is gone: --broker defaults come from it
    argv = shlex.split(example)[1:]
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"`ratiowatch {where} --help` shows `{example}`, which the parser refuses (exit {e.code}): "
                    f"{capsys.readouterr().err.strip()}")
    _pre, sub = max(((pre, p) for pre, p in PARSERS if pre == argv[:len(pre)]), key=lambda t: len(t[0]))
    broker = next((a for a in sub._actions if "--broker" in a.option_strings), None)
    if broker is not None and "required" in (broker.help or ""):
        assert getattr(args, "broker", None), (
            f"`ratiowatch {where} --help` shows `{example}`, without --broker, which that command requires")
