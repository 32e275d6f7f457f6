"""`currents-segment run`: the whole chain on the embedded defaults, twice, and its lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from currents_segment import pipeline, settings
from currents_segment.generate import load_manifest


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "currents_segment.cli", "run", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_a_second_copy_exits_with_a_clear_message_while_one_runs(cs_home):
    env = {**os.environ, "CURRENTS_SEGMENT_HOME": str(cs_home)}
    with pipeline.run_lock(cs_home / "run.lock", wait_seconds=None):
        proc = _run_cli("--demo", env=env)
    assert proc.returncode == pipeline.EXIT_LOCKED
    assert "another currents-segment run holds" in proc.stderr
    assert f"pid {os.getpid()}" in proc.stderr
    # Nothing was touched by the refused copy.
    assert not (cs_home / "warehouse.duckdb").exists()


def test_waiting_for_the_lock_gives_up_after_the_wait(cs_home):
    with (
        pipeline.run_lock(cs_home / "run.lock", wait_seconds=None),
        pytest.raises(pipeline.RunLocked, match="--wait"),
        pipeline.run_lock(cs_home / "run.lock", wait_seconds=1.5),
    ):
        pass


@pytest.mark.slow
def test_demo_runs_clean_end_to_end_and_again_incrementally(cs_home):
    env = {**os.environ, "CURRENTS_SEGMENT_HOME": str(cs_home)}
    first = _run_cli("--demo", "--demo-events", "1500", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    manifest = load_manifest(settings.home() / "demo-export")
    sendable = manifest["totals"]["sendable"]
    runs = sorted((cs_home / "reports" / "runs").glob("*.json"))
    log = json.loads(runs[-1].read_text())
    stages = {s["name"]: s for s in log["stages"]}
    assert [s["name"] for s in log["stages"]] == ["ingest", "build", "push", "receive", "reconcile"]
    assert stages["ingest"]["summary"]["rows"] == manifest["totals"]["records_written"]
    assert stages["receive"]["summary"]["rows_loaded"] == sendable
    assert stages["reconcile"]["summary"]["status"] == "clean"
    report = json.loads((cs_home / log["report_files"]["json"]).read_text())
    assert report["status"] == "clean"

    second = _run_cli("--demo", "--demo-events", "1500", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    runs = sorted((cs_home / "reports" / "runs").glob("*.json"))
    log2 = json.loads(runs[-1].read_text())
    stages2 = {s["name"]: s for s in log2["stages"]}
    assert stages2["ingest"]["summary"]["rows"] == 0
    assert stages2["ingest"]["summary"]["already_landed"] > 0
    connector = stages2["push"]["summary"]["connectors"][0]
    assert connector["sent"] == 0
    assert connector["totals"]["acknowledged"] == sendable
    assert stages2["receive"]["summary"]["rows_loaded"] == 0
    assert stages2["reconcile"]["summary"]["status"] == "clean"
