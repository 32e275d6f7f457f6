"""Push against the real emulator subprocess over loopback: exact counts in its store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta

import duckdb
import pytest

from currents_segment import connectors, push, settings
from currents_segment.emulator import running_emulator
from currents_segment.ledger import Ledger
from test_push_support import (
    EU_KEY,
    US_KEY,
    build_outbox,
    connector,
    emulator_config,
    make_rows,
    stored_ids,
    write_connectors,
)


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("CS_TEST_KEY_US", US_KEY)
    monkeypatch.setenv("CS_TEST_KEY_EU", EU_KEY)


def run(cs_home, items, emu, push_settings=None, **options):
    config = connectors.load(write_connectors(cs_home / "connectors.yml", items, push_settings))
    return push.run_push(config, push.PushOptions(api_base=emu.url, progress=False, **options))


def ledger_rows(sql: str) -> list[tuple]:
    with sqlite3.connect(settings.ledger_path()) as con:
        return con.execute(sql).fetchall()


def test_every_sendable_event_arrives_once_and_the_rest_is_accounted_for(cs_home, keys):
    rows = make_rows(1100, no_user=7, test_events=3, oversize=2)
    # One event the outbox calls sendable but which is over 32 KB once serialized.
    big = make_rows(0, seed=99, oversize=1)[0]
    rows.append(big[:14] + (True, None))
    build_outbox(settings.warehouse_path(), rows)
    sendable = {r[0] for r in rows if r[14] and r[13] <= 32 * 1024}
    limits = {"max_batch_events": 100, "max_batch_bytes": 40_000, "gzip": True}
    with running_emulator(emulator_config(), cs_home / "store") as emu:
        result = run(cs_home, [connector("us")], emu, limits)
        emu.flush()
        stats = emu.stats()
        again = run(cs_home, [connector("us")], emu, limits)
    assert result.exit_code == 0, result.connectors[0].stopped
    ids = stored_ids(cs_home / "store", "braze_us")
    assert len(ids) == len(set(ids)) == 1100
    assert set(ids) == sendable
    assert stats["events_kept"] == 1100 and stats["events_dropped"] == {}
    summary = result.connectors[0]
    assert (summary.queued, summary.sent, summary.acknowledged_now) == (1113, 1100, 1100)
    assert summary.rejected_by_reason == {"oversize": 3}
    assert summary.skipped_by_reason == {"no_external_user_id": 7, "test_event": 3}
    assert summary.pending == 0 and summary.at_risk == 0
    # Batches bounded by count and by serialized bytes; the oversize event never left.
    for events, body_bytes in ledger_rows("SELECT events, body_bytes FROM batches"):
        assert events <= 100 and body_bytes + 64 <= 40_000
    assert ledger_rows(
        f"SELECT status, batch_id IS NULL FROM ledger WHERE message_id = '{big[0]}'"
    ) == [("rejected", 1)]
    # A second run finds nothing new and sends nothing.
    assert again.exit_code == 0
    assert (again.connectors[0].queued, again.connectors[0].sent) == (0, 0)
    assert (result.run_dir / "summary.json").exists() and (result.run_dir / "push.log").exists()


def test_fan_out_with_workspace_scoped_ids_reaches_both_workspaces(cs_home, keys):
    rows = make_rows(300, seed=3)
    build_outbox(settings.warehouse_path(), rows)
    items = [
        connector("us"),
        connector(
            "eu",
            workspace="acme-eu",
            source="braze_eu",
            region="eu",
            key_env="CS_TEST_KEY_EU",
            message_id="workspace_scoped",
        ),
    ]
    with running_emulator(emulator_config(), cs_home / "store") as emu:
        result = run(cs_home, items, emu)
    assert result.exit_code == 0
    currents_ids = {r[0] for r in rows}
    assert set(stored_ids(cs_home / "store", "braze_us")) == currents_ids
    eu_ids = stored_ids(cs_home / "store", "braze_eu")
    assert sorted(eu_ids) == sorted(
        connectors.scoped_message_id("acme-eu", m) for m in currents_ids
    )


def test_a_final_4xx_stops_the_connector_and_leaves_events_pending_and_at_risk(cs_home, keys):
    # A US write key sent to the EU host: Segment answers 401.
    old = make_rows(40, seed=4, age_hours=72)
    build_outbox(settings.warehouse_path(), old)
    wrong = connector("us-key-at-eu", region="eu")
    with running_emulator(emulator_config(), cs_home / "store") as emu:
        result = run(cs_home, [wrong], emu)
        emu.flush()
        stats = emu.stats()
    summary = result.connectors[0]
    assert result.exit_code == 1
    assert summary.stopped.startswith("final HTTP error on batch 1: HTTP 401")
    assert US_KEY not in summary.stopped
    assert (summary.pending, summary.at_risk, summary.acknowledged_now) == (40, 40, 0)
    assert ledger_rows("SELECT status, last_http_status, count(*) FROM ledger GROUP BY 1, 2") == [
        ("pending", 401, 40)
    ]
    assert stats["events_kept"] == 0 and stats["requests_rejected"] == {"us_key_at_eu_host": 1}
    assert US_KEY not in (result.run_dir / "push.log").read_text()


def test_filters_leave_other_events_pending_and_old_ones_at_risk(cs_home, keys):
    recent = make_rows(30, seed=5, types=["users.messages.email.Send"])
    old_sms = make_rows(20, seed=6, age_hours=60, types=["users.messages.sms.Send"])
    build_outbox(settings.warehouse_path(), recent + old_sms)
    with running_emulator(emulator_config(), cs_home / "store") as emu:
        email_only = run(
            cs_home, [connector("us")], emu, event_types=("users.messages.email.Send",)
        )
        rest = run(cs_home, [connector("us")], emu)
    assert email_only.exit_code == 1  # the sms events are pending and older than 48 h
    assert (email_only.connectors[0].sent, email_only.connectors[0].at_risk) == (30, 20)
    assert rest.exit_code == 0
    assert (rest.connectors[0].sent, rest.connectors[0].at_risk) == (20, 0)
    assert Counter(stored_ids(cs_home / "store", "braze_us")) == Counter(
        r[0] for r in recent + old_sms
    )


def test_missing_warehouse_is_a_run_error(cs_home, keys):
    config = connectors.load(write_connectors(cs_home / "c.yml", [connector("us")]))
    with pytest.raises(push.PushError, match="warehouse .*warehouse.duckdb does not exist"):
        push.run_push(config, push.PushOptions(api_base="http://127.0.0.1:9", progress=False))
    duckdb.connect(str(settings.warehouse_path())).close()
    with pytest.raises(push.PushError, match="outbox marts.fct_segment_outbox is not readable"):
        push.run_push(config, push.PushOptions(api_base="http://127.0.0.1:9", progress=False))


def test_a_gate_failure_in_a_later_chunk_stops_there_after_the_earlier_chunks(cs_home, keys):
    # Chunks are read and validated one ahead of the sends: the failure still lands in order.
    rows = make_rows(60, seed=12)
    ordered = sorted(r[0] for r in rows)  # ledger order: by messageId
    bad = next(i for i, r in enumerate(rows) if r[0] == ordered[25])
    rows[bad] = rows[bad][:3] + ("Email Sentt",) + rows[bad][4:]
    build_outbox(settings.warehouse_path(), rows)
    limits = {"gate_chunk_events": 10, "max_batch_events": 5}
    with running_emulator(emulator_config(), cs_home / "store") as emu:
        result = run(cs_home, [connector("us")], emu, limits)
        emu.flush()
    summary = result.connectors[0]
    assert result.exit_code == 1
    assert summary.stopped.startswith("gate failed (10 rows): ")
    assert [p.rsplit("/", 1)[1] for p in summary.gate_reports] == ["gate-us-0003.json"]
    assert (summary.sent, summary.acknowledged_now, summary.pending) == (20, 20, 40)
    assert sorted(stored_ids(cs_home / "store", "braze_us")) == ordered[:20]
    assert ledger_rows("SELECT count(*) FROM ledger WHERE error LIKE 'blocked by the gate%'") == [
        (10,)
    ]


# A push run in its own process, as cron starts one: does it load Great Expectations?
PUSH_IN_A_PROCESS = """
import json, sys
from currents_segment import connectors, push
config = connectors.load(sys.argv[1])
result = push.run_push(config, push.PushOptions(api_base=sys.argv[2], progress=False))
print(json.dumps({
    "exit_code": result.exit_code,
    "sent": result.connectors[0].sent,
    "gx_loaded": "great_expectations" in sys.modules,
    "log": (result.run_dir / "push.log").read_text(),
}))
"""


def test_a_push_with_nothing_to_send_does_not_load_great_expectations(cs_home, keys):
    """A scheduled run with nothing new skips the gate's import (6.6 CPU s on the bench host);
    new outbox rows, or open rows left by an earlier run, start it before the first batch."""
    rows = make_rows(400, seed=11)
    build_outbox(settings.warehouse_path(), rows)
    config_path = write_connectors(cs_home / "connectors.yml", [connector("us")])

    def push_in_a_process(emu) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", PUSH_IN_A_PROCESS, str(config_path), emu.url],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    sendable = sum(1 for r in rows if r[14])
    with running_emulator(emulator_config(), cs_home / "store") as emu:
        first = push_in_a_process(emu)
        assert (first["exit_code"], first["sent"], first["gx_loaded"]) == (0, sendable, True)
        assert "gate warm-up started: connector us has new outbox rows" in first["log"]

        idle = push_in_a_process(emu)
        assert (idle["exit_code"], idle["sent"], idle["gx_loaded"]) == (0, 0, False)
        assert "gate warm-up started" not in idle["log"]

        # Open rows and nothing new in the outbox: the run's count of open rows starts it.
        again = [r[0] for r in rows if r[14]][:25]
        with sqlite3.connect(settings.ledger_path()) as con:
            acknowledged = con.execute(
                "SELECT count(*) FROM ledger WHERE status = 'acknowledged'"
            ).fetchone()[0]
        assert acknowledged == sendable
        ledger = Ledger(settings.ledger_path())
        try:
            assert ledger.requeue("us", again, "test: sent again") == 25
        finally:
            ledger.close()
        requeued = push_in_a_process(emu)
        assert (requeued["exit_code"], requeued["sent"], requeued["gx_loaded"]) == (0, 25, True)
        assert "gate warm-up started: connector us has 25 open rows" in requeued["log"]


LEDGER_AS_ENQUEUED = (
    "connector, message_id, currents_id, currents_event_type, app_group_id, segment_workspace,"
    " segment_source, event_timestamp, date_hour, payload_bytes, reason, error,"
    " CASE WHEN status IN ('skipped', 'rejected') THEN status ELSE 'sendable' END"
)


@pytest.mark.parametrize("bulk", ["1", "0"])
def test_rows_loaded_after_the_last_complete_enqueue_are_appended_and_nothing_else_is(
    cs_home, keys, monkeypatch, bulk
):
    """Only rows loaded later than the outbox the last complete enqueue took in are appended;
    a changed older row, a row loaded out of order, ledger rows the outbox lost or an id twice
    each mean a whole enqueue (or its refusal). The ledger ends as a whole enqueue writes it."""
    monkeypatch.setenv(push.LEDGER_BULK_ENV, bulk)
    t0 = datetime(2026, 11, 30, 8, 0, 0)

    def loaded(rows, at):
        return [r[:11] + (at,) + r[12:] for r in rows]

    def push_log(result) -> str:
        return (result.run_dir / "push.log").read_text()

    rows = loaded(make_rows(300, seed=31, test_events=4, oversize=1), t0)
    warehouse = build_outbox(settings.warehouse_path(), rows)
    sent: set[str] = {r[0] for r in rows if r[14]}
    with running_emulator(emulator_config(), cs_home / "store") as emu:
        first = run(cs_home, [connector("us")], emu)
        assert (first.exit_code, first.connectors[0].sent) == (0, 300)
        assert "appending" not in push_log(first)

        # Rows of a later load: appended, the older rows neither read nor moved.
        later = loaded(make_rows(40, seed=32, no_user=2), t0 + timedelta(hours=1))
        build_outbox(warehouse, later)
        sent |= {r[0] for r in later if r[14]}
        appended = run(cs_home, [connector("us")], emu)
        assert (appended.exit_code, appended.connectors[0].queued) == (0, 42)
        assert appended.connectors[0].sent == 40
        assert "appending the 42 outbox rows loaded after 2026-11-30 08:00:00" in push_log(appended)
        assert "not enqueued" in push_log(run(cs_home, [connector("us")], emu))

        # New rows and a changed older one (a skipped row now sendable): a whole enqueue.
        flipped = next(r[0] for r in rows if not r[14] and r[15] == "test_event")
        with duckdb.connect(str(warehouse)) as con:
            con.execute(
                "UPDATE marts.fct_segment_outbox SET is_sendable = true, not_sendable_reason = NULL"
                " WHERE message_id = ?",
                [flipped],
            )
        more = loaded(make_rows(5, seed=33), t0 + timedelta(hours=2))
        build_outbox(warehouse, more)
        sent |= {flipped} | {r[0] for r in more}
        changed = run(cs_home, [connector("us")], emu)
        assert (changed.connectors[0].queued, changed.connectors[0].sent) == (5, 6)
        assert "appending" not in push_log(changed)

        # A row loaded out of order (before the latest load the ledger took in): whole.
        early = loaded(make_rows(1, seed=34), t0 - timedelta(hours=1))
        build_outbox(warehouse, early)
        sent.add(early[0][0])
        out_of_order = run(cs_home, [connector("us")], emu)
        assert (out_of_order.connectors[0].queued, out_of_order.connectors[0].sent) == (1, 1)
        assert "appending" not in push_log(out_of_order)

        if bulk == "1":
            # A later row repeating an older row's id: refused as a whole enqueue refuses it,
            # and the next run, the outbox mended, enqueues in whole (the mark was cleared).
            repeat = loaded(make_rows(1, seed=35), t0 + timedelta(hours=3))
            repeat = [(rows[0][0],) + repeat[0][1:]]
            build_outbox(warehouse, repeat)
            with pytest.raises(push.PushError, match=f"holds a messageId twice .*{rows[0][0]}"):
                run(cs_home, [connector("us")], emu)
            with duckdb.connect(str(warehouse)) as con:
                con.execute(
                    "DELETE FROM marts.fct_segment_outbox WHERE message_id = ? AND loaded_at > ?",
                    [rows[0][0], t0],
                )
            mended = run(cs_home, [connector("us")], emu)
            assert (mended.exit_code, mended.connectors[0].queued) == (0, 0)
            assert "bulk enqueue in a child process" in push_log(mended)

        # The ledger keeps a row the outbox lost: a later load is enqueued in whole.
        gone = rows[1][0]
        with duckdb.connect(str(warehouse)) as con:
            con.execute("DELETE FROM marts.fct_segment_outbox WHERE message_id = ?", [gone])
        assert run(cs_home, [connector("us")], emu).connectors[0].queued == 0
        last = loaded(make_rows(1, seed=36), t0 + timedelta(hours=4))
        build_outbox(warehouse, last)
        sent.add(last[0][0])
        after_loss = run(cs_home, [connector("us")], emu)
        assert (after_loss.connectors[0].queued, after_loss.connectors[0].sent) == (1, 1)
        assert "appending" not in push_log(after_loss)
        emu.flush()
    ids = stored_ids(cs_home / "store", "braze_us")
    assert len(ids) == len(set(ids)) == len(sent) == 300 + 40 + 6 + 1 + 1
    assert set(ids) == sent
    # The rows as a whole enqueue of the final outbox writes them (the lost row aside).
    fresh = Ledger(cs_home / "whole.sqlite")
    try:
        config = connectors.load(cs_home / "connectors.yml")
        con = push.open_warehouse(warehouse, push.OUTBOX_TABLE)
        push._enqueue(
            con, fresh, config.connectors[0], push.OUTBOX_TABLE, config.push, warehouse, None
        ).close()
        con.close()
    finally:
        fresh.close()
    with sqlite3.connect(cs_home / "whole.sqlite") as db:
        whole = db.execute(f"SELECT {LEDGER_AS_ENQUEUED} FROM ledger ORDER BY 2").fetchall()
    pushed = ledger_rows(
        f"SELECT {LEDGER_AS_ENQUEUED} FROM ledger WHERE message_id != '{gone}' ORDER BY 2"
    )
    assert pushed == whole and len(whole) == 300 + 5 + 42 + 5 + 1 + 1 - 1


def test_an_unchanged_outbox_is_not_enqueued_again_and_any_change_to_it_is(cs_home, keys):
    """The enqueue is skipped only when the outbox (as ledger rows) and the connector's ledger
    rows are what the last complete enqueue left; a changed status, a new row and open rows
    left in the ledger are each sent."""
    rows = make_rows(300, seed=21, test_events=4)
    warehouse = build_outbox(settings.warehouse_path(), rows)

    def push_log(result) -> str:
        return (result.run_dir / "push.log").read_text()

    def ledger_events() -> list[tuple]:
        return ledger_rows("SELECT * FROM ledger_events ORDER BY seq")

    with running_emulator(emulator_config(), cs_home / "store") as emu:
        first = run(cs_home, [connector("us")], emu)
        assert (first.exit_code, first.connectors[0].sent) == (0, 300)
        assert "bulk enqueue in a child process" in push_log(first)
        after_first = ledger_events()

        idle = run(cs_home, [connector("us")], emu)
        assert (idle.exit_code, idle.connectors[0].queued, idle.connectors[0].sent) == (0, 0, 0)
        assert "outbox unchanged since the last complete enqueue: not enqueued" in push_log(idle)
        assert ledger_events() == after_first
        # Nothing open after either run: settled up to the last row, counts as the rows say.
        ledger = Ledger(settings.ledger_path())
        try:
            assert ledger.settled_through("us") == after_first[-1][0]
        finally:
            ledger.close()
        assert idle.connectors[0].totals == {"acknowledged": 300, "skipped": 4}

        # Open rows and an unchanged outbox: no enqueue, and the open rows are sent.
        again = [r[0] for r in rows if r[14]][:5]
        ledger = Ledger(settings.ledger_path())
        try:
            assert ledger.requeue("us", again, "test: sent again") == 5
        finally:
            ledger.close()
        requeued = run(cs_home, [connector("us")], emu)
        assert (requeued.exit_code, requeued.connectors[0].sent) == (0, 5)
        assert "not enqueued" in push_log(requeued)

        # A skipped row the outbox now calls sendable (a rebuilt outbox): enqueued and sent.
        flipped = next(r[0] for r in rows if not r[14])
        with duckdb.connect(str(warehouse)) as con:
            con.execute(
                "UPDATE marts.fct_segment_outbox SET is_sendable = true, not_sendable_reason = NULL"
                " WHERE message_id = ?",
                [flipped],
            )
        changed = run(cs_home, [connector("us")], emu)
        assert (changed.connectors[0].queued, changed.connectors[0].sent) == (0, 1)
        assert "bulk enqueue in a child process" in push_log(changed)

        # A new row: enqueued and sent; then idle again.
        new = make_rows(1, seed=22)
        build_outbox(warehouse, new)
        added = run(cs_home, [connector("us")], emu)
        assert (added.connectors[0].queued, added.connectors[0].sent) == (1, 1)
        assert "not enqueued" in push_log(run(cs_home, [connector("us")], emu))
        emu.flush()
    ids = stored_ids(cs_home / "store", "braze_us")
    # Every sendable id once (the requeued five de-duplicated by the emulator), plus the two.
    assert set(ids) == {r[0] for r in rows if r[14]} | {flipped, new[0][0]}
    assert len(ids) == len(set(ids)) == 302
