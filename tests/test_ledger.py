"""The SQLite send ledger: upsert rules, batch lifecycle, durability, lock, counts."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from currents_segment.ledger import STATUSES, Ledger, LedgerError, open_rows_sql


def row(mid: str, status: str = "pending", reason: str | None = None, hours_old: float = 1.0):
    when = (datetime.now(UTC) - timedelta(hours=hours_old)).strftime("%Y-%m-%d %H:%M:%S.%f")
    return (
        "c1", mid, mid, "users.messages.email.Send", "ag-1", "acme-us", "braze_us", when, when,
        600, status, reason, None if reason is None else f"why: {reason}", when,
    )  # fmt: skip


def statuses(path) -> dict[str, str]:
    with sqlite3.connect(path) as con:
        return dict(con.execute("SELECT message_id, status FROM ledger"))


def test_enqueue_is_idempotent_and_never_moves_sent_rows(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.enqueue([row("a"), row("b"), row("c", "skipped", "no_external_user_id"), row("d")])
    seq = {m: s for s, m, _ in ledger.open_rows("c1")}
    batch = ledger.start_batch("run-1", "c1", [seq["a"]], 100)
    ledger.finish_batch(batch, [seq["a"]], True, 1, 200, None)
    ledger.start_batch("run-1", "c1", [seq["b"]], 100)
    # The outbox now says: a and b not sendable, c sendable (anonymous users included), d too big.
    ledger.enqueue(
        [
            row("a", "skipped", "test_event"),
            row("b", "skipped", "test_event"),
            row("c"),
            row("d", "rejected", "oversize"),
        ]
    )
    assert statuses(path) == {
        "a": "acknowledged",
        "b": "in_flight",
        "c": "pending",
        "d": "rejected",
    }
    assert ledger.count_rows("c1") == 4
    ledger.close()


def test_enqueue_outbox_stores_the_same_row_as_enqueue(tmp_path):
    """The outbox form (per-call constants given once) lands exactly the row enqueue lands."""
    full = row("a", "rejected", "oversize")
    one, other = Ledger(tmp_path / "one.sqlite"), Ledger(tmp_path / "other.sqlite")
    one.enqueue([full])
    # Outbox columns, then connector, workspace, source and queued_at.
    other.enqueue_outbox(full[0], full[5], full[6], full[13], [full[1:5] + full[7:13]])
    columns = "connector, message_id, currents_id, currents_event_type, app_group_id,"
    columns += " segment_workspace, segment_source, event_timestamp, date_hour, payload_bytes,"
    columns += " status, reason, error, queued_at"
    stored = [
        ledger.con.execute(f"SELECT {columns} FROM ledger_events").fetchall()
        for ledger in (one, other)
    ]
    assert stored[0] == stored[1] == [full]
    one.close()
    other.close()


def test_a_status_outside_the_five_is_refused(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.enqueue([row(m, s) for m, s in zip("abcde", STATUSES, strict=True)])
    assert sorted(statuses(tmp_path / "ledger.sqlite").values()) == sorted(STATUSES)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        ledger.enqueue([row("f", "acked")])
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        ledger.con.execute("UPDATE ledger_events SET status = 'sent' WHERE message_id = 'a'")
    ledger.close()


def test_in_flight_is_committed_before_the_send_and_failure_returns_to_pending(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.enqueue([row("a"), row("b")])
    seqs = [s for s, _, _ in ledger.open_rows("c1")]
    batch = ledger.start_batch("run-1", "c1", seqs, 1234)
    # Another process (a restart after kill -9) already sees the rows in flight.
    assert statuses(path) == {"a": "in_flight", "b": "in_flight"}
    # In-flight rows come first when a run resumes: their outcome is unknown.
    ledger.enqueue([row("c")])
    assert [m for _, m, _ in ledger.open_rows("c1")] == ["a", "b", "c"]
    ledger.finish_batch(batch, seqs, False, 3, 503, "HTTP 503")
    with sqlite3.connect(path) as con:
        got = con.execute(
            "SELECT status, attempts, last_http_status, error FROM ledger WHERE message_id='a'"
        ).fetchone()
        batch_row = con.execute(
            "SELECT status, attempts, events, body_bytes FROM batches"
        ).fetchone()
    assert got == ("pending", 3, 503, "HTTP 503")
    assert batch_row == ("failed", 3, 2, 1234)
    ledger.close()


def test_batches_are_recorded_and_finished_together(tmp_path):
    """Several batches in flight in one transaction; outcomes written together; a batch its
    connector stopped before it left (attempts 0) goes back to pending, its attempt undone."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.enqueue([row(m) for m in "abcdef"])
    seqs = [s for s, _, _ in ledger.open_rows("c1")]
    groups = [seqs[:2], seqs[2:4], [seqs[4], seqs[5]]]
    ids = ledger.start_batches("run-1", "c1", [(g, 10 * len(g)) for g in groups])
    assert len(set(ids)) == 3
    assert set(statuses(path).values()) == {"in_flight"}
    ledger.finish_batches(
        [
            (ids[0], groups[0], True, 1, 200, None),
            (ids[1], groups[1], False, 2, 503, "HTTP 503"),
            (ids[2], groups[2], False, 0, None, "not sent: the connector stopped first"),
        ]
    )
    with sqlite3.connect(path) as con:
        got = dict(
            (m, (status, attempts))
            for m, status, attempts in con.execute(
                "SELECT message_id, status, attempts FROM ledger"
            )
        )
        batches = con.execute(
            "SELECT status, attempts, events FROM batches ORDER BY 1, 2"
        ).fetchall()
    assert got == {
        "a": ("acknowledged", 1),
        "b": ("acknowledged", 1),
        "c": ("pending", 2),
        "d": ("pending", 2),
        "e": ("pending", 0),
        "f": ("pending", 0),
    }
    assert batches == [("acknowledged", 1, 2), ("failed", 0, 2), ("failed", 2, 2)]
    ledger.close()


def test_requeue_sends_acknowledged_events_again(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.enqueue([row("a"), row("b"), row("c")])
    seqs = [s for s, _, _ in ledger.open_rows("c1")]
    ledger.finish_batch(ledger.start_batch("r", "c1", seqs[:2], 1), seqs[:2], True, 1, 200, None)
    assert ledger.requeue("c1", ["a", "c", "zzz"], "missing at Segment") == 1
    assert [m for _, m, _ in ledger.open_rows("c1")] == ["a", "c"]
    ledger.close()


def test_counts_by_reason_and_at_risk(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.enqueue(
        [
            row("old", hours_old=72),
            row("new", hours_old=1),
            row("s1", "skipped", "no_external_user_id"),
            row("s2", "skipped", "test_event"),
            row("r1", "rejected", "oversize"),
        ]
    )
    counts = ledger.counts("c1", at_risk_hours=48)
    assert counts.by_status == {"pending": 2, "skipped": 2, "rejected": 1}
    assert counts.skipped_by_reason == {"no_external_user_id": 1, "test_event": 1}
    assert counts.rejected_by_reason == {"oversize": 1}
    assert counts.at_risk == 1
    assert counts.oldest_open is not None
    assert ledger.counts("c1", at_risk_hours=100).at_risk == 0
    # Once the open rows are acknowledged nothing is at risk and nothing is oldest.
    seqs = [s for s, _, _ in ledger.open_rows("c1")]
    ledger.finish_batch(ledger.start_batch("r", "c1", seqs, 1), seqs, True, 1, 200, None)
    done = ledger.counts("c1", at_risk_hours=48)
    assert done.by_status == {"acknowledged": 2, "skipped": 2, "rejected": 1}
    assert (done.at_risk, done.oldest_open) == (0, None)
    ledger.close()


def test_one_push_at_a_time(tmp_path):
    first = Ledger(tmp_path / "ledger.sqlite")
    first.lock()
    second = Ledger(tmp_path / "ledger.sqlite")
    with pytest.raises(LedgerError, match="another push holds .*ledger.sqlite.lock"):
        second.lock()
    first.close()
    second.lock()
    second.close()


def test_dry_run_copy_leaves_the_ledger_untouched(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.enqueue([row("a")])
    ledger.close()
    copy = Ledger.in_memory_copy(path)
    copy.enqueue([row("b")])
    seqs = [s for s, _, _ in copy.open_rows("c1")]
    copy.finish_batch(copy.start_batch("r", "c1", seqs, 1), seqs, True, 1, 200, None)
    copy.close()
    assert statuses(path) == {"a": "pending"}


def test_a_file_that_is_not_a_ledger_is_named(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_text("this is not sqlite" * 100)
    with pytest.raises(LedgerError, match=f"{path}: not a usable ledger"):
        Ledger(path)


def test_acknowledgement_is_one_batch_row_and_the_view_derives_each_event(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.enqueue([row("a"), row("b"), row("c")])
    seqs = [s for s, _, _ in ledger.open_rows("c1")]
    batch = ledger.start_batch("run-1", "c1", seqs[:2], 10)
    ledger.finish_batch(batch, seqs[:2], True, 3, 200, None)
    with sqlite3.connect(path) as con:
        # The event rows were not rewritten by the acknowledgement...
        assert con.execute("SELECT status, count(*) FROM ledger_events GROUP BY 1").fetchall() == [
            ("in_flight", 2),
            ("pending", 1),
        ]
        # ...the view reads it from the batch: status, attempts, HTTP status and time.
        got = con.execute(
            "SELECT l.message_id, l.status, l.attempts, l.last_http_status, l.error,"
            " l.acked_at = b.finished_at FROM ledger l LEFT JOIN batches b USING (batch_id)"
            " ORDER BY 1"
        ).fetchall()
    assert got == [
        ("a", "acknowledged", 3, 200, None, 1),
        ("b", "acknowledged", 3, 200, None, 1),
        ("c", "pending", 0, None, None, None),
    ]
    assert [m for _, m, _ in ledger.open_rows("c1")] == ["c"]
    assert ledger.counts("c1", 48).by_status == {"acknowledged": 2, "pending": 1}
    # A requeued event keeps what it had from its batch and is open again.
    assert ledger.requeue("c1", ["b"], "missing at Segment") == 1
    assert statuses(path) == {"a": "acknowledged", "b": "pending", "c": "pending"}
    with sqlite3.connect(path) as con:
        assert con.execute(
            "SELECT attempts, last_http_status, error, acked_at FROM ledger WHERE message_id='b'"
        ).fetchone() == (3, 200, "missing at Segment", None)
    ledger.close()


def test_a_version_1_ledger_is_migrated_in_place(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as con:
        # Schema version 1: per-event status in table "ledger".
        con.executescript(
            """
            CREATE TABLE ledger (seq INTEGER PRIMARY KEY, connector TEXT NOT NULL,
                message_id TEXT NOT NULL, currents_id TEXT NOT NULL, currents_event_type TEXT,
                app_group_id TEXT, segment_workspace TEXT NOT NULL, segment_source TEXT NOT NULL,
                event_timestamp TEXT, date_hour TEXT, payload_bytes INTEGER, batch_id INTEGER,
                status TEXT NOT NULL, reason TEXT, attempts INTEGER NOT NULL DEFAULT 0,
                last_http_status INTEGER, error TEXT, queued_at TEXT NOT NULL, sent_at TEXT,
                acked_at TEXT, UNIQUE (connector, message_id));
            CREATE TABLE batches (batch_id INTEGER PRIMARY KEY, run_id TEXT NOT NULL,
                connector TEXT NOT NULL, events INTEGER NOT NULL, body_bytes INTEGER NOT NULL,
                status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                last_http_status INTEGER, error TEXT, created_at TEXT NOT NULL, finished_at TEXT);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
            INSERT INTO meta VALUES ('schema_version', '1');
            INSERT INTO batches VALUES (1, 'r', 'c1', 1, 9, 'acknowledged', 2, 200, NULL, 't', 't');
            INSERT INTO ledger (connector, message_id, currents_id, segment_workspace,
                segment_source, batch_id, status, attempts, last_http_status, queued_at, acked_at)
            VALUES ('c1', 'a', 'a', 'w', 's', 1, 'acknowledged', 2, 200, 't', 't'),
                ('c1', 'b', 'b', 'w', 's', 1, 'pending', 2, 200, 't', NULL);
            """
        )
    ledger = Ledger(path)
    assert statuses(path) == {"a": "acknowledged", "b": "pending"}
    assert [m for _, m, _ in ledger.open_rows("c1")] == ["b"]
    ledger.enqueue([row("c")])
    assert ledger.count_rows("c1") == 3
    ledger.close()
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "2",
        )


def test_open_rows_after_a_seq_are_the_later_open_rows_read_by_seq_range(tmp_path):
    """The enqueue child reads each chunk it inserted this way: by seq range, not through the
    connector's index (which would read every row of the connector for every chunk)."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.enqueue([row(m) for m in "abcdef"] + [row("g", "skipped", "test_event")])
    seq = {m: s for s, m, _ in ledger.open_rows("c1")}
    batch = ledger.start_batch("run-1", "c1", [seq["e"]], 100)
    ledger.finish_batch(batch, [seq["e"]], True, 1, 200, None)
    ledger.close()
    with sqlite3.connect(path) as con:
        sql = open_rows_sql("c1", ["users.messages.email.Send"], after_seq=seq["b"])
        got = sorted((m, bool(p)) for _, m, _, p in con.execute(sql))
        assert got == [("c", True), ("d", True), ("f", True)]  # e acknowledged, g skipped
        assert con.execute(open_rows_sql("c2", after_seq=0)).fetchall() == []
        plan = " ".join(r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql))
        assert "INTEGER PRIMARY KEY (rowid>?)" in plan, plan
        assert "sqlite_autoindex" not in plan, plan


def test_a_finished_push_settles_its_rows_and_whatever_may_reopen_them_unsettles(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    other = ("c2",) + row("x")[1:]
    ledger.enqueue(
        [row("a"), row("b"), row("s1", "skipped", "test_event"), row("r1", "rejected", "oversize")]
        + [other]
    )

    def ack_open(connector: str = "c1") -> None:
        seqs = [s for s, _, _ in ledger.open_rows(connector)]
        ledger.finish_batch(ledger.start_batch("r", connector, seqs, 1), seqs, True, 1, 200, None)

    def recounted():  # without the mark: every row read
        through = ledger.settled_through("c1")
        with sqlite3.connect(path) as con:
            saved = con.execute("SELECT value FROM meta WHERE key = 'settled:c1'").fetchone()
        ledger.unsettle("c1")
        counts = ledger.counts("c1", at_risk_hours=48)
        if saved:
            with sqlite3.connect(path) as con:
                con.execute("INSERT INTO meta VALUES ('settled:c1', ?)", saved)
        assert ledger.settled_through("c1") == through
        return counts

    ack_open()
    settled = ledger.counts("c1", at_risk_hours=48, settle=True)
    top = ledger.con.execute("SELECT max(seq) FROM ledger_events").fetchone()[0]
    assert ledger.settled_through("c1") == top
    # c2 still has a row open: its counts settle nothing.
    assert ledger.counts("c2", at_risk_hours=48, settle=True).open == 1
    assert ledger.settled_through("c2") == 0
    assert settled == recounted()
    assert settled.by_status == {"acknowledged": 2, "skipped": 1, "rejected": 1}

    # Settled rows are not read again: a row reopened behind the ledger's back (nothing in
    # this package does that) stays unseen until the mark goes.
    with sqlite3.connect(path) as con:
        con.execute("UPDATE ledger_events SET status = 'pending' WHERE message_id = 's1'")
    assert ledger.open_rows("c1") == [] and ledger.count_open("c1") == 0
    assert ledger.counts("c1", at_risk_hours=48) == settled
    assert [m for _, m, _ in open_rows_view(ledger, "c1")] == []
    with sqlite3.connect(path) as con:
        con.execute("UPDATE ledger_events SET status = 'skipped' WHERE message_id = 's1'")

    # Rows inserted later (as the bulk enqueue inserts them) are read above the mark.
    with sqlite3.connect(path) as con:
        con.execute(
            "INSERT INTO ledger_events (connector, message_id, currents_id, segment_workspace,"
            " segment_source, status, queued_at) VALUES ('c1', 'd', 'd', 'w', 's', 'pending', 'x')"
        )
    assert [m for _, m, _ in ledger.open_rows("c1")] == ["d"]
    assert ledger.counts("c1", at_risk_hours=48) == recounted()
    assert ledger.counts("c1", at_risk_hours=48).by_status["pending"] == 1

    # A requeue unsettles: the requeued row is open again.
    ack_open()
    ledger.counts("c1", at_risk_hours=48, settle=True)
    assert ledger.requeue("c1", ["a"], "missing at Segment") == 1
    assert ledger.settled_through("c1") == 0
    assert [m for _, m, _ in ledger.open_rows("c1")] == ["a"]

    # An enqueue that may move rows unsettles: the skipped row the outbox now sends is open.
    ack_open()
    ledger.counts("c1", at_risk_hours=48, settle=True)
    assert ledger.settled_through("c1") > 0
    ledger.enqueue([row("s1")])
    assert ledger.settled_through("c1") == 0
    assert [m for _, m, _ in ledger.open_rows("c1")] == ["s1"]

    # Settled by a run: a later run of this version keeps the mark; a run of a version that
    # knows no mark (a run row this package did not start after the settling one) voids it.
    ack_open()
    ledger.start_run("run-a")
    ledger.counts("c1", at_risk_hours=48, settle=True)
    assert ledger.settled_through("c1") > 0
    later = Ledger(path)
    later.start_run("run-b")
    assert later.settled_through("c1") == ledger.settled_through("c1")
    later.close()
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO runs (run_id, started_at) VALUES ('older-version', 'x')")
    newest = Ledger(path)
    newest.start_run("run-c")
    assert newest.settled_through("c1") == 0
    newest.close()
    ledger.close()


def open_rows_view(ledger: Ledger, connector: str) -> list[tuple[int, str, str]]:
    """The bulk child's open-rows statement, above the settled seq, run in SQLite."""
    sql = open_rows_sql(connector, after_seq=ledger.settled_through(connector) or None)
    return [r[:3] for r in ledger.con.execute(sql).fetchall()]
