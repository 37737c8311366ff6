"""The folders' dependency direction (pyproject.toml, [tool.importlinter]) holds: import-linter
checks every import of the package, those inside functions included, so a new cycle between
folders fails the build. The contract names every part of the package that holds code and lists
no ignored import, so neither a new module nor an exception can step around it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _contract() -> dict:
    [contract] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    return contract


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    # import-linter reads the package from disk; an editable install maps folders through an
    # import hook it cannot follow, so the package is installed (files only) into a scratch dir.
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(REPO)], check=True, capture_output=True, timeout=300)
    return site


def test_the_layers_contract_holds(site, tmp_path):
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "1 kept, 0 broken" in out.stdout, out.stdout[-2000:]


def test_the_contract_has_no_exceptions():
    assert not _contract().get("ignore_imports"), "an ignored import is a debt: move the code to its layer"


def test_every_part_of_the_package_is_in_a_layer(site):
    # Data packages (the shipped scenarios, the JSON schemas) hold no code: an empty __init__.py.
    layered = {part.strip().removeprefix("ratiowatch.") for layer in _contract()["layers"] for part in layer.split("|")}
    parts = set()
    for p in (site / "ratiowatch").iterdir():
        if p.suffix == ".py" and p.name != "__init__.py":
            parts.add(p.stem)
        elif p.is_dir() and (p / "__init__.py").exists():
            code = [f for f in p.rglob("*.py") if f.name != "__init__.py" or f.stat().st_size]
            if code:
                parts.add(p.name)
    assert parts - layered == set(), f"not in any layer of [tool.importlinter]: {sorted(parts - layered)}"
    assert layered - parts == set(), f"layers naming no part of the package: {sorted(layered - parts)}"
