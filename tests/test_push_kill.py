"""kill -9 in the middle of a push, then resume: every event kept exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from currents_segment import connectors, push, settings
from currents_segment.emulator import running_emulator
from test_push_support import (
    US_KEY,
    build_outbox,
    connector,
    emulator_config,
    make_rows,
    stored_ids,
    write_connectors,
)


def ledger_counts() -> dict[str, int]:
    path = settings.ledger_path()
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as con:
            return dict(con.execute("SELECT status, count(*) FROM ledger GROUP BY 1"))
    except sqlite3.OperationalError:  # created but no table yet
        return {}


def ready(counts: dict[str, int]) -> bool:
    """Well into the run, with batches in flight (sent, outcome not yet recorded)."""
    return counts.get("acknowledged", 0) >= 600 and counts.get("in_flight", 0) > 0


def test_kill_9_mid_run_then_resume_sends_everything_once(cs_home, monkeypatch):
    monkeypatch.setenv("CS_TEST_KEY_US", US_KEY)
    rows = make_rows(1500, seed=21)
    build_outbox(settings.warehouse_path(), rows)
    path = write_connectors(cs_home / "c.yml", [connector("us")], {"max_batch_events": 50})
    with running_emulator(emulator_config(), cs_home / "store", faults={"slow_ms": 150}) as emu:
        proc = subprocess.Popen(
            [sys.executable, "-m", "currents_segment.cli", "push", "--connectors", str(path),
             "--api-base", emu.url, "--no-progress"],
            env={**os.environ},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while not ready(counts := ledger_counts()):
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, f"push never got mid-run: {counts}"
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(30)
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        at_kill = ledger_counts()
        assert at_kill.get("in_flight", 0) > 0 and at_kill.get("acknowledged", 0) < 1500

        config = connectors.load(path)
        resumed = push.run_push(config, push.PushOptions(api_base=emu.url, progress=False))
        emu.flush()
        stats = emu.stats()
    assert resumed.exit_code == 0
    # The resumed run sent exactly what was not acknowledged, in-flight rows included.
    assert resumed.connectors[0].sent == 1500 - at_kill.get("acknowledged", 0)
    ids = stored_ids(cs_home / "store", "braze_us")
    assert len(ids) == len(set(ids)) == 1500
    assert set(ids) == {r[0] for r in rows}
    # Whatever the killed run had delivered but not recorded was de-duplicated, not kept twice.
    assert stats["events_received"] - stats["events_kept"] == stats["events_dropped"].get(
        "deduplicated", 0
    )
    assert ledger_counts() == {"acknowledged": 1500}
