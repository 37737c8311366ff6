"""Fixtures shared across test modules: the real history folder and the config loader."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HISTORY = REPO.parent / "shared" / "data" / "history"


@pytest.fixture(scope="session")
def history_dir() -> Path:
    if not (HISTORY / "SPY.csv").exists():
        pytest.fail(f"real history not found at {HISTORY}: ../shared/data/history must sit beside the repo")
    return HISTORY
