"""The durable send ledger: one SQLite row per (connector, messageId) and what became of it.

Statuses: ``pending`` -> ``in_flight`` -> ``acknowledged``; ``rejected`` (never sendable by the
pusher: oversize, messageId too long); ``skipped`` (the outbox marks the event not sendable:
``no_external_user_id``, ``test_event``; kept so every outbox row of a connector is accounted for).

Storage: table ``ledger_events`` holds one row per event; ``batches`` one row per request. An
acknowledgement is written once, on the batch row: an event row stays ``in_flight`` with its
``batch_id``, and view ``ledger`` (what readers query) derives its status, attempts, last HTTP
status, error and acked_at from its batch. A failed batch moves its events back to ``pending`` in
their own rows (with the error), so only an acknowledged batch is ever read through the join.

Crash safety: rows are marked ``in_flight`` with their batch id and committed BEFORE the request
leaves, and marked ``acknowledged`` after the 200. A run killed at any instant leaves at worst
``in_flight`` rows whose outcome is unknown; the next run sends them again under the same
messageIds, which Segment (and the emulator) keep once.

``synchronous=NORMAL`` in WAL mode: a commit survives a killed process (the WAL is in the OS page
cache); only a power loss can roll back the last commits, which turns ``acknowledged`` back into
``in_flight`` or ``in_flight`` into ``pending``: both are re-sent under the same messageIds, so
nothing is lost and FULL's fsync per batch buys nothing here.

Payloads are not stored: they are read from the outbox by Currents id when sent (a rebuilt outbox
keeps its ids), which keeps the ledger at about 300 bytes per event.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from currents_segment import settings
from currents_segment.duck import sql_text

SCHEMA_VERSION = 2
STATUSES = ("pending", "in_flight", "acknowledged", "rejected", "skipped")
OPEN_STATUSES = ("pending", "in_flight")
# How long lock() waits for a push that is ending before it refuses to start.
LOCK_GRACE_SECONDS = 2.0

_DDL = """
CREATE TABLE IF NOT EXISTS ledger_events (
    seq INTEGER PRIMARY KEY,
    connector TEXT NOT NULL,
    message_id TEXT NOT NULL,
    currents_id TEXT NOT NULL,
    currents_event_type TEXT,
    app_group_id TEXT,
    segment_workspace TEXT NOT NULL,
    segment_source TEXT NOT NULL,
    event_timestamp TEXT,
    date_hour TEXT,
    payload_bytes INTEGER,
    batch_id INTEGER,
    -- A chain of ORs, not IN (...): SQLite checks IN against a list with a temporary index per
    -- row written, which cost a quarter of an enqueue; the ORs cost nothing measurable. (Ledgers
    -- created before keep their IN form: the same constraint.)
    status TEXT NOT NULL CHECK (status = 'pending' OR status = 'in_flight'
        OR status = 'acknowledged' OR status = 'rejected' OR status = 'skipped'),
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_http_status INTEGER,
    error TEXT,
    queued_at TEXT NOT NULL,
    sent_at TEXT,
    acked_at TEXT,
    UNIQUE (connector, message_id)
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    connector TEXT NOT NULL,
    events INTEGER NOT NULL,
    body_bytes INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_http_status INTEGER,
    error TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    exit_code INTEGER,
    summary_json TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
-- Per event, as the architecture contract has it: an in-flight event of an acknowledged batch is
-- acknowledged, with the batch's attempts, HTTP status and time.
CREATE VIEW IF NOT EXISTS ledger AS
SELECT e.seq, e.connector, e.message_id, e.currents_id, e.currents_event_type, e.app_group_id,
    e.segment_workspace, e.segment_source, e.event_timestamp, e.date_hour, e.payload_bytes,
    e.batch_id,
    CASE WHEN b.status = 'acknowledged' THEN 'acknowledged' ELSE e.status END AS status,
    e.reason,
    CASE WHEN b.status = 'acknowledged' THEN e.attempts + max(b.attempts - 1, 0)
        ELSE e.attempts END AS attempts,
    CASE WHEN b.status = 'acknowledged' THEN b.last_http_status
        ELSE e.last_http_status END AS last_http_status,
    CASE WHEN b.status = 'acknowledged' THEN b.error ELSE e.error END AS error,
    e.queued_at, e.sent_at,
    CASE WHEN b.status = 'acknowledged' THEN b.finished_at ELSE e.acked_at END AS acked_at
FROM ledger_events e
LEFT JOIN batches b ON b.batch_id = e.batch_id AND e.status = 'in_flight';
"""


def open_rows_sql(
    connector: str,
    event_types: Sequence[str] | None = None,
    since: str | None = None,
    until: str | None = None,
    after_seq: int | None = None,
) -> str:
    """The rows ``Ledger.open_rows`` returns, as one SQLite statement with its values written
    in (the bulk enqueue child runs it inside SQLite and takes no Python parameters). Unordered,
    with ``is_pending``: the caller orders by (is_pending, seq) itself (a sort inside SQLite
    cost 0.8 s more for 950k open rows, ad hoc). ``after_seq``: only rows with a larger seq
    (the rows an enqueue chunk just inserted), found by seq range."""
    where, _ = Ledger._open_filter(
        connector, event_types, since, until, inline=True, after_seq=after_seq
    )
    return (
        f"SELECT seq, message_id, currents_id, status = 'pending' AS is_pending FROM ledger {where}"
    )


def _setup(con: sqlite3.Connection) -> None:
    """Create the schema; a version-1 ledger (per-event status in table ``ledger``) is renamed
    to ``ledger_events``, whose rows the view reads unchanged."""
    kind = con.execute("SELECT type FROM sqlite_master WHERE name = 'ledger'").fetchone()
    if kind is not None and kind[0] == "table":
        con.execute("ALTER TABLE ledger RENAME TO ledger_events")
    con.executescript(_DDL)
    con.execute(
        "INSERT INTO meta VALUES ('schema_version', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(SCHEMA_VERSION),),
    )


# Enqueue never moves a row that was sent, acknowledged or rejected; it only follows the outbox's
# sendable flag for rows that have not left yet (pending <-> skipped, pending -> rejected).
_UPSERT_INTO = """
INSERT INTO ledger_events (connector, message_id, currents_id, currents_event_type, app_group_id,
    segment_workspace, segment_source, event_timestamp, date_hour, payload_bytes, status, reason,
    error, queued_at)
"""
_UPSERT_CONFLICT = """
ON CONFLICT (connector, message_id) DO UPDATE SET
    status = excluded.status, reason = excluded.reason, error = excluded.error,
    payload_bytes = excluded.payload_bytes
WHERE ledger_events.status IN ('pending', 'skipped')
    AND (ledger_events.status IS NOT excluded.status OR ledger_events.reason IS NOT excluded.reason)
"""
_UPSERT = _UPSERT_INTO + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" + _UPSERT_CONFLICT
# Ledger.enqueue_outbox: each row is the outbox's ten values followed by the four constants of the
# call (connector, segment_workspace, segment_source, queued_at), bound by number.
_UPSERT_OUTBOX = (
    _UPSERT_INTO
    + "VALUES (?11, ?1, ?2, ?3, ?4, ?12, ?13, ?5, ?6, ?7, ?8, ?9, ?10, ?14)"
    + _UPSERT_CONFLICT
)


# (batch_id, seqs, acknowledged, attempts, last HTTP status, error): what became of a request.
BatchOutcome = tuple[int, Sequence[int], bool, int, int | None, str | None]


class LedgerError(RuntimeError):
    """The ledger file is unusable or locked by another push."""


def now_text() -> str:
    """UTC timestamps in the ledger: 'YYYY-MM-DD HH:MM:SS.ffffff' (sorts and casts cleanly)."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _ids_json(ids: Sequence[int]) -> str:
    return "[" + ",".join(map(str, ids)) + "]"


def _seq_filter(seqs: Sequence[int]) -> tuple[str, tuple[object, ...]]:
    """SQL matching exactly these rows: a range when they are contiguous (cheaper), else a list."""
    if (
        seqs
        and seqs[-1] - seqs[0] + 1 == len(seqs)
        and all(b == a + 1 for a, b in zip(seqs, seqs[1:], strict=False))
    ):
        return "seq BETWEEN ? AND ?", (seqs[0], seqs[-1])
    return "seq IN (SELECT value FROM json_each(?))", (_ids_json(seqs),)


@dataclass(frozen=True)
class ConnectorCounts:
    connector: str
    by_status: dict[str, int]
    rejected_by_reason: dict[str, int]
    skipped_by_reason: dict[str, int]
    at_risk: int
    oldest_open: str | None

    def count(self, status: str) -> int:
        return self.by_status.get(status, 0)

    @property
    def open(self) -> int:
        return self.count("pending") + self.count("in_flight")


class Ledger:
    """One SQLite connection, used from one thread (the pusher's coordinator)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else settings.ledger_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = sqlite3.connect(self.path, isolation_level=None)
            self.con.execute("PRAGMA journal_mode=WAL")
            self.con.execute("PRAGMA synchronous=NORMAL")
            self.con.execute("PRAGMA busy_timeout=10000")
            # 256 MB of page cache: random-id index inserts of a 1M-event enqueue stay in memory
            # (the 2 MB default makes them about three times slower).
            self.con.execute("PRAGMA cache_size=-262144")
            self.con.execute("PRAGMA temp_store=MEMORY")
            _setup(self.con)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: not a usable ledger ({exc})") from None
        self._lock_fh: int | None = None
        self._run_id: str | None = None  # the run this connection started (start_run)

    @classmethod
    def in_memory_copy(cls, path: Path | str | None = None) -> Ledger:
        """A private copy (dry runs): the real ledger is read, never written."""
        source = Path(path) if path else settings.ledger_path()
        copy = cls.__new__(cls)
        copy.path = Path(":memory:")
        copy.con = sqlite3.connect(":memory:", isolation_level=None)
        if source.exists():
            with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src:
                src.backup(copy.con)
        _setup(copy.con)
        copy._lock_fh = None
        copy._run_id = None
        return copy

    def close(self) -> None:
        self.unlock()
        self.con.close()

    # -- one pusher at a time -------------------------------------------------------------
    def lock(self) -> None:
        """Refuse a second concurrent push on this ledger (released when the process dies, and
        by an enqueue child holding it too when that child has exited: ``lock_fd``)."""
        if str(self.path) == ":memory:":
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        fh = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        # A push that has just ended may still be releasing it (its enqueue child exiting):
        # wait that long before refusing.
        deadline = time.monotonic() + LOCK_GRACE_SECONDS
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                os.close(fh)
                raise LedgerError(
                    f"{self.path}: another push holds {lock_path}; wait for it to finish"
                ) from None
        os.ftruncate(fh, 0)
        os.write(fh, str(os.getpid()).encode())
        self._lock_fh = fh

    @property
    def lock_fd(self) -> int | None:
        """The descriptor holding the push lock: a child process given it (``pass_fds``)
        keeps the lock held until it exits, also when this process was killed first."""
        return self._lock_fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            os.close(self._lock_fh)
            self._lock_fh = None

    @contextmanager
    def transaction(self):
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # -- enqueue --------------------------------------------------------------------------
    def count_rows(self, connector: str) -> int:
        return self.con.execute(
            "SELECT count(*) FROM ledger_events WHERE connector = ?", (connector,)
        ).fetchone()[0]

    def enqueue(self, rows: Iterable[Sequence[object]]) -> None:
        """Upsert outbox rows (the _UPSERT column order) in one transaction."""
        with self.transaction() as con:
            _unsettle(con, None)  # the upsert can reopen a row (skipped -> pending)
            con.executemany(_UPSERT, rows)

    def enqueue_outbox(
        self,
        connector: str,
        segment_workspace: str,
        segment_source: str,
        queued_at: str,
        rows: Iterable[Sequence[object]],
    ) -> None:
        """Upsert outbox rows in one transaction: each row is (message_id, currents_id,
        currents_event_type, app_group_id, event_timestamp, date_hour, payload_bytes, status,
        reason, error); the connector, Segment workspace and source and queued_at are the same
        for every row (given once, not fetched once per row)."""
        const = (connector, segment_workspace, segment_source, queued_at)
        with self.transaction() as con:
            _unsettle(con, connector)  # the upsert can reopen a row (skipped -> pending)
            con.executemany(_UPSERT_OUTBOX, (tuple(row) + const for row in rows))

    # -- selection ------------------------------------------------------------------------
    @staticmethod
    def _open_filter(
        connector: str,
        event_types: Sequence[str] | None,
        since: str | None,
        until: str | None,
        inline: bool = False,
        after_seq: int | None = None,
    ) -> tuple[str, list[object]]:
        """The open rows of a run's selection, on view ``ledger``: a WHERE clause and its
        parameters, or (``inline``) with its values written in as SQL literals. With
        ``after_seq``, only rows of a larger seq."""
        params: list[object] = []

        def value(v: str) -> str:
            if inline:
                return sql_text(v)
            params.append(v)
            return "?"

        # After a seq, the rows are found by seq range: the unary + keeps SQLite from reading
        # every row of the connector through the (connector, message_id) index instead.
        after_seq = after_seq or None  # 0: nothing settled, every row
        column = "connector" if after_seq is None else "+connector"
        sql = [f"WHERE {column} = {value(connector)} AND status IN ('pending', 'in_flight')"]
        if after_seq is not None:
            sql.append(f"AND seq > {int(after_seq)}")
        if event_types:
            sql.append(f"AND currents_event_type IN ({','.join(map(value, event_types))})")
        if since:
            sql.append(f"AND event_timestamp >= {value(since)}")
        if until:
            sql.append(f"AND event_timestamp < {value(until)}")
        return " ".join(sql), params

    def open_rows(
        self,
        connector: str,
        event_types: Sequence[str] | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[tuple[int, str, str]]:
        """(seq, message_id, currents_id) of rows to send, in-flight ones (resume window) first."""
        where, params = self._open_filter(
            connector, event_types, since, until, after_seq=self.settled_through(connector)
        )
        return self.con.execute(
            f"SELECT seq, message_id, currents_id FROM ledger {where}"
            " ORDER BY status = 'pending', seq",
            params,
        ).fetchall()

    def count_open(
        self,
        connector: str,
        event_types: Sequence[str] | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> int:
        where, params = self._open_filter(
            connector, event_types, since, until, after_seq=self.settled_through(connector)
        )
        return self.con.execute(f"SELECT count(*) FROM ledger {where}", params).fetchone()[0]

    # -- batch lifecycle ------------------------------------------------------------------
    # Several batches are recorded in one transaction, and several outcomes: a commit per batch
    # cost more than the rows it wrote (1,520 batches of 625 rows marked in flight: 6.5 CPU s
    # one per transaction, 3.1 s four per transaction; ad hoc, 2026-12-04).
    def start_batch(self, run_id: str, connector: str, seqs: Sequence[int], body_bytes: int) -> int:
        """Record a batch and mark its rows in flight; committed before the request leaves."""
        return self.start_batches(run_id, connector, [(seqs, body_bytes)])[0]

    def start_batches(
        self, run_id: str, connector: str, batches: Sequence[tuple[Sequence[int], int]]
    ) -> list[int]:
        """Record batches (their rows' seqs and body bytes) and mark their rows in flight, in
        one transaction committed before any of their requests leaves."""
        stamp = now_text()
        ids: list[int] = []
        with self.transaction() as con:
            for seqs, body_bytes in batches:
                cur = con.execute(
                    "INSERT INTO batches (run_id, connector, events, body_bytes, status,"
                    " created_at) VALUES (?, ?, ?, ?, 'in_flight', ?)",
                    (run_id, connector, len(seqs), body_bytes, stamp),
                )
                batch_id = int(cur.lastrowid or 0)
                where, params = _seq_filter(seqs)
                con.execute(
                    "UPDATE ledger_events SET status = 'in_flight', batch_id = ?,"
                    " attempts = attempts + 1,"
                    f" sent_at = ? WHERE {where}",
                    (batch_id, stamp, *params),
                )
                ids.append(batch_id)
        return ids

    def finish_batch(
        self,
        batch_id: int,
        seqs: Sequence[int],
        acknowledged: bool,
        attempts: int,
        http_status: int | None,
        error: str | None,
    ) -> None:
        """Acknowledged: the batch row alone says so (view ``ledger``); otherwise the events go
        back to pending with the error, in their own rows."""
        self.finish_batches([(batch_id, seqs, acknowledged, attempts, http_status, error)])

    def finish_batches(self, outcomes: Sequence[BatchOutcome]) -> None:
        """:meth:`finish_batch` for several batches, in one transaction. ``attempts`` 0: the
        request never left (its connector stopped first), which start_batch counted."""
        stamp = now_text()
        with self.transaction() as con:
            for batch_id, seqs, acknowledged, attempts, http_status, error in outcomes:
                con.execute(
                    "UPDATE batches SET status = ?, attempts = ?, last_http_status = ?,"
                    " error = ?, finished_at = ? WHERE batch_id = ?",
                    (
                        "acknowledged" if acknowledged else "failed",
                        attempts,
                        http_status,
                        error,
                        stamp,
                        batch_id,
                    ),
                )
                if acknowledged:
                    continue
                where, params = _seq_filter(seqs)
                con.execute(
                    "UPDATE ledger_events SET status = 'pending', attempts = attempts + ?,"
                    " last_http_status = ?, error = ?, acked_at = NULL"
                    f" WHERE {where} AND batch_id = ?",
                    (attempts - 1, http_status, error, *params, batch_id),
                )

    def reject(self, seqs: Sequence[int], reason: str, error: str) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE ledger_events SET status = 'rejected', reason = ?, error = ?"
                " WHERE seq IN (SELECT seq FROM ledger WHERE seq IN (SELECT value FROM json_each(?))"
                " AND status IN ('pending', 'in_flight'))",
                (reason, error, _ids_json(seqs)),
            )

    def note_error(self, seqs: Sequence[int], error: str) -> None:
        """Annotate open rows (e.g. missing from the outbox, gate failure) without moving them."""
        with self.transaction() as con:
            con.execute(
                "UPDATE ledger_events SET error = ? WHERE seq IN (SELECT value FROM json_each(?))",
                (error, _ids_json(seqs)),
            )

    def requeue(self, connector: str, message_ids: Iterable[str], why: str) -> int:
        """Send acknowledged events again (e.g. reconcile found them missing at Segment)."""
        ids = list(message_ids)
        with self.transaction() as con:
            _unsettle(con, connector)  # settled rows open again
            # The row takes over what the view derived from its acknowledged batch.
            cur = con.executemany(
                "UPDATE ledger_events SET status = 'pending', error = ?, acked_at = NULL,"
                " attempts = (SELECT l.attempts FROM ledger l WHERE l.seq = ledger_events.seq),"
                " last_http_status ="
                " (SELECT l.last_http_status FROM ledger l WHERE l.seq = ledger_events.seq)"
                " WHERE seq = (SELECT seq FROM ledger"
                " WHERE connector = ? AND message_id = ? AND status = 'acknowledged')",
                ((why, connector, m) for m in ids),
            )
            return cur.rowcount

    # -- runs and reporting ---------------------------------------------------------------
    def start_run(self, run_id: str) -> None:
        with self.transaction() as con:
            con.execute("INSERT INTO runs (run_id, started_at) VALUES (?, ?)", (run_id, now_text()))
        self._run_id = run_id

    # -- what the last complete enqueue saw ------------------------------------------------
    # An idle run (nothing new in the outbox) skips the enqueue: the mark says which outbox the
    # ledger last took in whole and how many rows the connector had then (push._enqueue_mark).
    def enqueue_mark(self, connector: str) -> dict[str, Any] | None:
        return _get_meta(self.con, f"enqueued_outbox:{connector}")

    def set_enqueue_mark(self, connector: str, mark: dict[str, Any]) -> None:
        with self.transaction() as con:
            _put_meta(con, f"enqueued_outbox:{connector}", mark)

    # -- rows that are done for good ------------------------------------------------------
    # A push that leaves nothing open settles its connector: every row up to the ledger's
    # largest seq is acknowledged, rejected or skipped, and stays so until an enqueue that may
    # move rows or a requeue removes the mark (_unsettle). Open rows are then looked for above
    # that seq only, and counts add the settled rows' stored counts to those of the rows above
    # it: a scheduled run reads the rows since the last finished push, not the whole history.
    def settled_through(self, connector: str) -> int:
        """The connector's rows up to this seq are all settled (0: none known to be)."""
        return self._settled(connector)[0]

    def _settled(self, connector: str) -> tuple[int, list[tuple[str, str | None, int]]]:
        mark = _get_meta(self.con, f"settled:{connector}")
        if mark is None:
            return 0, []
        # Valid only while no other run came after the one that settled: a run of an older
        # version (which knows no mark) may have reopened rows (a requeue, an enqueue).
        if mark.get("run_id") != self._run_id:
            last = self.con.execute(
                "SELECT run_id FROM runs WHERE run_id IS NOT ? ORDER BY rowid DESC LIMIT 1",
                (self._run_id,),
            ).fetchone()
            if mark.get("run_id") != (None if last is None else last[0]):
                return 0, []
        return int(mark["through_seq"]), [(s, r, int(n)) for s, r, n in mark["counts"]]

    def unsettle(self, connector: str) -> None:
        """Forget what is settled of one connector: its rows are read again."""
        if _get_meta(self.con, f"settled:{connector}") is not None:
            with self.transaction() as con:  # written only when there is a mark to remove
                _unsettle(con, connector)

    def clear_enqueue_mark(self, connector: str) -> None:
        with self.transaction() as con:
            _delete_meta(con, f"enqueued_outbox:{connector}")

    def finish_run(self, run_id: str, exit_code: int, summary_json: str) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, summary_json = ? WHERE run_id = ?",
                (now_text(), exit_code, summary_json, run_id),
            )

    def counts(
        self,
        connector: str,
        at_risk_hours: float,
        settle: bool = False,
        known: tuple[int, dict[tuple[str, str | None], int]] | None = None,
    ) -> ConnectorCounts:
        """Rows by status and reason, and the open ones at risk. ``settle``: with nothing open,
        mark every row up to the ledger's largest seq settled (a push that finished).
        ``known``: (seq, counts): the connector's rows from that seq on are exactly these, by
        status and reason (a run that inserted them and knows what became of each): they are
        not read."""
        cutoff = (datetime.now(UTC) - timedelta(hours=at_risk_hours)).strftime(
            "%Y-%m-%d %H:%M:%S.%f"
        )
        with self.transaction() if settle else nullcontext(self.con) as con:
            through, stored = self._settled(connector)
            groups: dict[tuple[str, str | None], int] = {}
            for status, reason, n in stored:
                groups[(status, reason)] = groups.get((status, reason), 0) + n
            # Above the settled seq by seq range (the unary + keeps SQLite off the
            # (connector, message_id) index, which would read every row of the connector).
            where = "connector = ?" if not through else f"+connector = ? AND seq > {int(through)}"
            if known is not None:
                known_from, known_counts = known
                where = f"+connector = ? AND seq > {int(through)} AND seq < {int(known_from)}"
                for (status, reason), n in known_counts.items():
                    groups[(status, reason)] = groups.get((status, reason), 0) + n
            for status, reason, n in con.execute(
                f"SELECT status, reason, count(*) FROM ledger WHERE {where} GROUP BY 1, 2",
                (connector,),
            ):
                groups[(status, reason)] = groups.get((status, reason), 0) + n
            by_status: dict[str, int] = {}
            rejected: dict[str, int] = {}
            skipped: dict[str, int] = {}
            for (status, reason), n in groups.items():
                by_status[status] = by_status.get(status, 0) + n
                if status == "rejected":
                    rejected[reason or "unknown"] = rejected.get(reason or "unknown", 0) + n
                elif status == "skipped":
                    skipped[reason or "unknown"] = skipped.get(reason or "unknown", 0) + n
            if not any(by_status.get(s) for s in OPEN_STATUSES):
                if settle:
                    top = con.execute("SELECT coalesce(max(seq), 0) FROM ledger_events").fetchone()
                    mark = {
                        "run_id": self._run_id,
                        "through_seq": int(top[0]),
                        "counts": sorted(
                            ([s, r, n] for (s, r), n in groups.items() if n),
                            key=lambda g: (g[0], g[1] or ""),
                        ),
                    }
                    _put_meta(con, f"settled:{connector}", mark)
                # Nothing open (a finished push): no second pass over the connector's rows.
                return ConnectorCounts(connector, by_status, rejected, skipped, 0, None)
            # At risk: still open and older (by Braze's queue hour, else event time) than the
            # age after which Braze deletes events it holds.
            at_risk, oldest = con.execute(
                "SELECT count(*) FILTER (WHERE coalesce(date_hour, event_timestamp) < ?),"
                " min(coalesce(date_hour, event_timestamp)) FROM ledger"
                f" WHERE {where} AND status IN ('pending', 'in_flight')",
                (cutoff, connector),
            ).fetchone()
        return ConnectorCounts(connector, by_status, rejected, skipped, at_risk or 0, oldest)


def _unsettle(con: sqlite3.Connection, connector: str | None) -> None:
    """Remove the settled mark of one connector, or of all (None)."""
    if connector is None:
        con.execute("DELETE FROM meta WHERE key LIKE 'settled:%'")
    else:
        _delete_meta(con, f"settled:{connector}")


# Table meta: one JSON value per key (per-connector marks; see the sections above).
def _get_meta(con: sqlite3.Connection, key: str) -> Any:
    row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else json.loads(row[0])


def _put_meta(con: sqlite3.Connection, key: str, value: Any) -> None:
    con.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, json.dumps(value, sort_keys=True)),
    )


def _delete_meta(con: sqlite3.Connection, key: str) -> None:
    con.execute("DELETE FROM meta WHERE key = ?", (key,))
