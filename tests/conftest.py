"""Shared test fixtures: paths to Braze's published files and an isolated project home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CURRENTS_SEGMENT_SHARED", REPO.parent / "shared"))
SCHEMAS = SHARED / "currents" / "schemas"
SAMPLES = SHARED / "currents" / "samples"

os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture
def cs_home(tmp_path, monkeypatch) -> Path:
    """An isolated CURRENTS_SEGMENT_HOME (warehouse, ledger, emulator, reports) per test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CURRENTS_SEGMENT_HOME", str(home))
    monkeypatch.delenv("CURRENTS_SEGMENT_DB", raising=False)
    monkeypatch.delenv("CURRENTS_SEGMENT_LEDGER", raising=False)
    monkeypatch.delenv("CURRENTS_SEGMENT_EMULATOR_DIR", raising=False)
    monkeypatch.delenv("CURRENTS_SEGMENT_REPORTS", raising=False)
    return home
