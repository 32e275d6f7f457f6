"""Enqueue in bulk (DuckDB's SQLite extension writes the ledger from a child process) and
through Python's sqlite3: the same ledger rows, the same open rows, the same upsert rules, on
the same outbox."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from currents_segment import connectors, duck, ledger_bulk, push
from currents_segment.ledger import Ledger
from test_push_support import build_outbox, connector, make_rows, write_connectors

LEDGER_COLUMNS = (
    "seq, connector, message_id, currents_id, currents_event_type, app_group_id, "
    "segment_workspace, segment_source, event_timestamp, date_hour, payload_bytes, batch_id, "
    "status, reason, attempts, last_http_status, error"
)


def scenario(
    tmp: Path, rows: list[tuple], new_rows: list[tuple], mode: str, monkeypatch
) -> tuple[list, list, list]:
    """Enqueue two connectors, send a few rows, change the outbox, enqueue again."""
    monkeypatch.setenv(push.LEDGER_BULK_ENV, mode)
    monkeypatch.setattr(ledger_bulk, "CHUNK_ROWS", 40)  # several chunks handed over
    monkeypatch.setattr(ledger_bulk, "FIRST_CHUNK_ROWS", 25)  # the first before the rest sorted
    warehouse = build_outbox(tmp / f"warehouse-{mode}.duckdb", rows)
    config = connectors.load(
        write_connectors(
            tmp / "connectors.yml",
            [
                connector("us"),
                connector(
                    "eu", workspace="acme-eu", source="braze_eu", region="eu",
                    key_env="CS_TEST_KEY_EU", message_id="workspace_scoped",
                    event_types=["family:email", "family:sms"],
                ),
            ],
        )
    )  # fmt: skip
    policy = config.push
    ledger = Ledger(tmp / f"ledger-{mode}.sqlite")
    queued: list[int] = []
    everything = ledger_bulk.OpenFilter()

    def enqueue(c, selection=everything):
        before = ledger.count_rows(c.name)
        handed = push._enqueue(con, ledger, c, push.OUTBOX_TABLE, policy, warehouse, selection)
        assert isinstance(handed, ledger_bulk.Stream) == (mode == "1")
        tables = list(handed.tables())
        if mode == "1" and selection is not None:
            # Rows already open come first, then the new ones, at most 40 at a time.
            assert all(t.num_rows <= 40 for t in tables[1:])
        handed.close()
        if mode == "1":
            # DuckDB imports pandas (seconds of CPU) on a statement with Python parameters: the
            # child runs none.
            assert handed.finished["pandas_loaded"] is False
        queued.append(ledger.count_rows(c.name) - before)
        rows = pa.concat_tables([ledger_bulk.OPEN_ROWS_SCHEMA.empty_table(), *tables])
        assert handed.total == rows.num_rows
        return rows if selection is not None else None

    try:
        con = push.open_warehouse(warehouse, push.OUTBOX_TABLE)
        assert enqueue(config.connectors[0], None) is None
        enqueue(config.connectors[1])
        # Rows that left (in flight, acknowledged) must never move again; unsent ones follow
        # the outbox's sendable flag.
        first = ledger.open_rows("us")[:30]
        batch = ledger.start_batch("run-1", "us", [r[0] for r in first[:20]], 1000)
        ledger.finish_batch(batch, [r[0] for r in first[:20]], True, 1, 200, None)
        ledger.start_batch("run-1", "us", [r[0] for r in first[20:30]], 1000)
        con.close()
        with duckdb.connect(str(warehouse)) as w:
            sent_ids = [r[1] for r in first]
            w.execute(
                "UPDATE marts.fct_segment_outbox SET is_sendable = false,"
                " not_sendable_reason = 'test_event' WHERE list_contains(?, message_id)"
                " OR message_id IN (SELECT message_id FROM marts.fct_segment_outbox"
                " WHERE is_sendable ORDER BY message_id DESC LIMIT 7)",
                [sent_ids],
            )
            w.execute(
                "UPDATE marts.fct_segment_outbox SET is_sendable = true,"
                " not_sendable_reason = NULL WHERE not_sendable_reason = 'no_external_user_id'"
            )
        build_outbox(warehouse, new_rows)  # new rows arrive
        con = push.open_warehouse(warehouse, push.OUTBOX_TABLE)
        open_rows = {c.name: enqueue(c).to_pylist() for c in config.connectors}
        filtered = enqueue(
            config.connectors[0],
            ledger_bulk.OpenFilter(["users.messages.email.Send"], "2000-01-01", "2999-01-01"),
        ).to_pylist()
        con.close()
    finally:
        ledger.close()
    with sqlite3.connect(tmp / f"ledger-{mode}.sqlite") as db:
        table = db.execute(f"SELECT {LEDGER_COLUMNS} FROM ledger ORDER BY seq").fetchall()
    return queued, table, [open_rows, filtered]


def test_bulk_and_python_enqueue_write_the_same_ledger(tmp_path, monkeypatch):
    rows = make_rows(300, no_user=6, test_events=4, oversize=2)
    new_rows = make_rows(25, seed=7)
    bulk = scenario(tmp_path, rows, new_rows, "1", monkeypatch)
    python = scenario(tmp_path, rows, new_rows, "0", monkeypatch)
    queued, table, open_rows = bulk
    assert queued == python[0]
    # Every outbox row once, then only the new ones, then nothing.
    assert queued[0] == 312 and queued[2] == 25 and queued[4] == 0
    assert table == python[1]
    assert open_rows == python[2]
    by_id = {r[2]: r for r in table if r[1] == "us"}
    statuses = {}
    for r in table:
        statuses[(r[1], r[12], r[13])] = statuses.get((r[1], r[12], r[13]), 0) + 1
    # 20 acknowledged and 10 in flight stay as they are although the outbox now skips them.
    assert statuses[("us", "acknowledged", None)] == 20
    assert statuses[("us", "in_flight", None)] == 10
    # 7 pending rows became skipped; the 6 without a user became pending; 4 test events stay.
    assert statuses[("us", "skipped", "test_event")] == 4 + 7
    assert ("us", "skipped", "no_external_user_id") not in statuses
    assert statuses[("us", "rejected", "oversize")] == 2
    assert statuses[("us", "pending", None)] == 300 - 30 - 7 + 6 + 25
    assert len(by_id) == 337
    # Workspace-scoped ids: 32 hex characters, the Currents id kept beside them.
    eu = [r for r in table if r[1] == "eu"]
    assert eu and all(len(r[2]) == 32 and r[2] != r[3] for r in eu)
    # Open rows: in-flight first, then pending by seq.
    us_open = open_rows[0]["us"]
    assert [r["seq"] for r in us_open[:10]] == sorted(r[0] for r in table if r[12] == "in_flight")
    assert len(us_open) == 10 + statuses[("us", "pending", None)]


def test_an_outbox_with_a_message_id_twice_is_named(tmp_path, monkeypatch):
    rows = make_rows(5)
    warehouse = build_outbox(tmp_path / "warehouse.duckdb", rows + rows[:1])
    config = connectors.load(write_connectors(tmp_path / "connectors.yml", [connector("us")]))
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        con = push.open_warehouse(warehouse, push.OUTBOX_TABLE)
        with pytest.raises(push.PushError, match=f"holds a messageId twice .*{rows[0][0]}"):
            push._enqueue(
                con, ledger, config.connectors[0], push.OUTBOX_TABLE, config.push, warehouse, None
            )
        assert ledger.count_rows("us") == 0  # one transaction: nothing half-enqueued
        con.close()
    finally:
        ledger.close()


def test_sending_while_the_child_still_inserts_keeps_every_event_once(cs_home, monkeypatch):
    """Small chunks: the pusher marks batches in flight (its commits) while the child inserts
    the next chunks (its commits) into the same ledger; both wait for each other's locks."""
    from currents_segment import settings
    from currents_segment.emulator import running_emulator
    from test_push_support import US_KEY, emulator_config, stored_ids

    monkeypatch.setenv("CS_TEST_KEY_US", US_KEY)
    monkeypatch.setattr(ledger_bulk, "CHUNK_ROWS", 60)
    monkeypatch.setattr(ledger_bulk, "FIRST_CHUNK_ROWS", 90)
    rows = make_rows(1500, no_user=5)
    build_outbox(settings.warehouse_path(), rows)
    config = connectors.load(
        write_connectors(cs_home / "connectors.yml", [connector("us")], {"max_batch_events": 20})
    )
    with running_emulator(emulator_config(), cs_home / "store") as emu:
        result = push.run_push(config, push.PushOptions(api_base=emu.url, progress=False))
        emu.flush()
    run = result.connectors[0]
    assert result.exit_code == 0, run.stopped
    assert (run.queued, run.sent, run.acknowledged_now) == (1505, 1500, 1500)
    assert run.batches >= 75  # a chunk's last batch can be short
    ids = stored_ids(cs_home / "store", "braze_us")
    assert len(ids) == len(set(ids)) == 1500
    assert run.totals == {"acknowledged": 1500, "skipped": 5}
    log = (result.run_dir / "push.log").read_text()
    assert "bulk enqueue in a child process" in log
    assert "1505 new rows counted from what the run did with them" in log
    # The run counted its new rows from what it knew of them, not from the ledger: the totals
    # and the settled mark equal a count of every row.
    ledger = Ledger(settings.ledger_path())
    try:
        mark = ledger._settled("us")
        scanned = ledger.counts("us", 48)
        assert mark[0] == 1505 and dict(((s, r), n) for s, r, n in mark[1]) == {
            ("acknowledged", None): 1500,
            ("skipped", "no_external_user_id"): 5,
        }
        with sqlite3.connect(settings.ledger_path()) as db:
            every_row = dict(
                ((s, r), n)
                for s, r, n in db.execute(
                    "SELECT status, reason, count(*) FROM ledger GROUP BY 1, 2"
                )
            )
        assert every_row == dict(((s, r), n) for s, r, n in mark[1])
        assert scanned.by_status == run.totals
    finally:
        ledger.close()


HOLD_A_STREAM = """
import sys, time
from pathlib import Path
from currents_segment import connectors, ledger_bulk, push
from currents_segment.ledger import Ledger
warehouse, ledger_path, config_path = sys.argv[1:4]
ledger_bulk.CHUNK_ROWS = 50
config = connectors.load(Path(config_path))
ledger = Ledger(Path(ledger_path))
con = push.open_warehouse(Path(warehouse), push.OUTBOX_TABLE)
stream = push._enqueue(con, ledger, config.connectors[0], push.OUTBOX_TABLE, config.push,
                       Path(warehouse), ledger_bulk.OpenFilter())
print(stream._proc.pid, flush=True)
time.sleep(600)
"""


def test_the_enqueue_process_dies_with_a_killed_pusher(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    warehouse = build_outbox(tmp_path / "warehouse.duckdb", make_rows(10_000))
    config = write_connectors(tmp_path / "connectors.yml", [connector("us")])
    ledger_path = tmp_path / "ledger.sqlite"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_STREAM, str(warehouse), str(ledger_path), str(config)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "CS_TEST_KEY_US": "k"},
    )
    child = int(holder.stdout.readline())
    assert Path(f"/proc/{child}").exists()  # still inserting 50 rows at a time
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    holder.stdout.close()

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
    # What it committed is whole chunks; the ledger opens and a new enqueue completes it.
    ledger = Ledger(ledger_path)
    try:
        done = ledger.count_rows("us")
        assert done < 10_000 and done % 50 == 0
        con = push.open_warehouse(warehouse, push.OUTBOX_TABLE)
        stream = push._enqueue(
            con, ledger, connectors.load(config).connectors[0], push.OUTBOX_TABLE,
            connectors.load(config).push, warehouse, None,
        )  # fmt: skip
        stream.close()
        con.close()
        assert ledger.count_rows("us") == 10_000
    finally:
        ledger.close()


def test_the_enqueue_process_holds_the_push_lock_until_it_exits(tmp_path):
    """Where the child cannot die with a killed pusher (no PR_SET_PDEATHSIG outside Linux), a
    resumed push must not race it: the child keeps the push lock's descriptor, so the lock
    outlives the pusher's own (closed here as a killed pusher's would be) until the child ends."""
    from currents_segment.ledger import LedgerError

    warehouse = build_outbox(tmp_path / "warehouse.duckdb", make_rows(300))
    config = connectors.load(write_connectors(tmp_path / "connectors.yml", [connector("us")]))
    ledger_path = tmp_path / "ledger.sqlite"
    pusher = Ledger(ledger_path)
    pusher.lock()
    resumed = Ledger(ledger_path)  # opened now: opening writes the schema version
    blocker = sqlite3.connect(ledger_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the child's inserts wait (and retry) behind this
    con = push.open_warehouse(warehouse, push.OUTBOX_TABLE)
    try:
        stream = push._enqueue(
            con, pusher, config.connectors[0], push.OUTBOX_TABLE, config.push, warehouse, None
        )
        assert isinstance(stream, ledger_bulk.Stream)
        pusher.unlock()
        with pytest.raises(LedgerError, match="another push holds"):
            resumed.lock()
        blocker.execute("ROLLBACK")
        stream.close()  # the child inserts its rows and exits
        resumed.lock()
        assert resumed.count_rows("us") == 300
    finally:
        resumed.close()
        blocker.close()
        con.close()
        pusher.close()


def test_child_sql_literals_keep_quotes():
    text = duck.sql_text("it's")
    names = duck.sql_text_list(["a", "b'c"])
    none = duck.sql_text_list([])
    row = duckdb.execute(f"SELECT {text}, {names}, {none}").fetchone()
    assert row == ("it's", ["a", "b'c"], [])


def test_a_child_started_ahead_and_not_needed_ends_and_writes_nothing(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        child = ledger_bulk.Child()
        child.close()
        assert child.proc.returncode == 0
        assert ledger.count_rows("us") == 0
    finally:
        ledger.close()
