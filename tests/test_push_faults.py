"""The fault matrix: each emulator fault alone and all together ends with the same store.

Every sendable event is kept exactly once (silent loss is repaired by re-queueing what the store
lacks, as reconcile does); the only repeated ids are the duplicates the emulator itself injected.
"""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from currents_segment import push, settings
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

FAULTS = {
    "rate_limit": {"rate_limit_every": 4},
    "5xx": {"error_5xx_rate": 0.3},
    "slow": {"slow_ms": 30},
    "drop_after_processing": {"drop_connection_rate": 0.25},
    "drop_before_processing": {"drop_connection_before_processing_rate": 0.25},
    "silent_loss": {"silent_loss_rate": 0.05},
    "duplicate_delivery": {"duplicate_delivery_rate": 0.05},
}
FAULTS["all_together"] = {k: v for f in FAULTS.values() for k, v in f.items()}


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_matrix_keeps_every_event_exactly_once(cs_home, monkeypatch, name):
    monkeypatch.setenv("CS_TEST_KEY_US", US_KEY)
    rows = make_rows(600, seed=11, no_user=5, test_events=2)
    build_outbox(settings.warehouse_path(), rows)
    sendable = {r[0] for r in rows if r[14]}
    path = write_connectors(
        cs_home / "c.yml", [connector("us")], {"max_batch_events": 50, "max_attempts": 40}
    )
    faults = {**FAULTS[name], "seed": 7}
    runner = CliRunner()
    with running_emulator(emulator_config(), cs_home / "store", faults=faults) as emu:
        args = ["--connectors", str(path), "--api-base", emu.url, "--no-progress"]
        first = runner.invoke(push.cli, args)
        assert first.exit_code == 0, first.output
        emu.flush()
        stats = emu.stats()
        lost_total = 0
        for _round in range(6):
            missing = sendable - set(stored_ids(cs_home / "store", "braze_us"))
            # Every gap is an injected loss (a retried batch can make up for some of them).
            assert len(missing) <= stats["faults_injected"].get("silent_loss", 0) - lost_total
            if not missing:
                break
            lost_total += len(missing)
            # Segment answered 200 and lost them: reconcile finds them, push sends them again
            # (a re-send can be lost again under a loss rate: repeat, as a scheduler would).
            ids_file = cs_home / "missing.txt"
            ids_file.write_text("\n".join(sorted(missing)))
            again = runner.invoke(
                push.cli, [*args, "--connector", "us", "--requeue", str(ids_file)]
            )
            assert again.exit_code == 0, again.output
            assert f"requeued {len(missing)} of {len(missing)} messageIds" in again.output
            emu.flush()
            stats = emu.stats()
    ids = stored_ids(cs_home / "store", "braze_us")
    assert set(ids) == sendable
    assert len(ids) - len(set(ids)) == stats["events_duplicated"]
    assert set(stats["events_dropped"]) <= {"deduplicated", "injected_loss"}
    with sqlite3.connect(settings.ledger_path()) as con:
        assert dict(con.execute("SELECT status, count(*) FROM ledger GROUP BY 1")) == {
            "acknowledged": 600,
            "skipped": 7,
        }
    injected = {k for k in stats["faults_injected"] if stats["faults_injected"][k]}
    if name != "slow":
        assert injected, f"the {name} fault never fired: the test proves nothing"
