"""The folders' dependency direction (pyproject.toml, [tool.importlinter]) holds: import-linter
checks every import of the package, those inside functions included, so a new cycle between
folders fails the build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_layers_contract_holds(tmp_path):
    # import-linter reads the package from disk; an editable install maps folders through an
    # import hook it cannot follow, so the package is installed (files only) into a scratch dir.
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(REPO)], check=True, capture_output=True, timeout=300)
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "1 kept, 0 broken" in out.stdout, out.stdout[-2000:]
