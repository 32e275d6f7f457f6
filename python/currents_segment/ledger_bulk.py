"""Enqueue in bulk: DuckDB copies a connector's new outbox rows into the SQLite ledger, while
the pusher already sends the rows it has been handed.

Through Python's sqlite3 an enqueue costs a Python tuple and fourteen bound values per event,
inside the pusher's GIL-bound process; DuckDB's SQLite extension writes the same rows from the
outbox query in C (``bench/bench_enqueue.py``: 1.3 times less CPU for 1M new rows, 1.9 times for
a run with nothing new, first rows ready 2.6 times sooner). It runs in a **child process** on
purpose: the extension carries its own copy of SQLite, and two copies of SQLite in one process
do not see each other's POSIX locks, so one copy closing the file would checkpoint and drop the
WAL under the other's open connection (SQLite's "How To Corrupt An SQLite Database File", 2.2.1;
seen here as "database disk image is malformed"). Across processes SQLite's locking holds.

What the child does, in order (``python -m currents_segment.ledger_bulk <parent pid>``, a JSON
request line on stdin, JSON lines on stdout):

1. the connector's outbox rows as ledger rows (``push._enqueue_sql``); an outbox holding a
   messageId twice is refused before anything is written; an appending enqueue
   (``Request.older_ids_sql``) gets only the rows loaded since the last complete one and reads
   none of the ledger's rows but the open ones;
2. unsent rows that the outbox now marks differently move (``ledger._UPSERT_CONFLICT``'s
   rule), in one transaction;
3. ``{"event": "total"}``: how many open rows the run will be handed and how many rows are new;
4. the open rows already in the ledger (in-flight first, then pending, by seq) as an Arrow IPC
   file, ``{"event": "rows"}``; then the new rows in key order, the ``FIRST_CHUNK_ROWS``
   smallest keys first (before the rest is sorted), then ``CHUNK_ROWS`` at a time, each chunk
   in its own transaction and then handed over the same way. The pusher sends each file's rows
   while the next chunk is being inserted: in-flight first, then by seq, as
   ``Ledger.open_rows``.

The process may be started before its request (``Child``): it imports what it needs, then waits
for the request line on stdin; no line (stdin closed) and it ends.
5. ``{"status": "ok"}``, or a failure status with the error.

The child retries a transaction that finds the ledger locked (the pusher commits a batch's
in-flight mark while the child inserts; DuckDB's extension has no busy timeout of its own).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from currents_segment.duck import ensure_sqlite, sql_text, sql_text_list
from currents_segment.ledger import open_rows_sql

OPEN_ROWS_SCHEMA = pa.schema(
    [("seq", pa.int64()), ("sent_id", pa.string()), ("currents_id", pa.string())]
)
CHUNK_ROWS = 100_000
# The first chunk: the rows that start the sending, and the first piece of it (see _child).
FIRST_CHUNK_ROWS = 100_000
FIRST_PIECE_ROWS = 10_000
LOCK_RETRY_SECONDS = 120.0
# Statuses of the child's answer besides "ok".
DUPLICATE = "duplicate_message_id"  # the outbox holds a messageId twice; nothing was written
UNAVAILABLE = "unavailable"  # DuckDB's SQLite extension cannot load; nothing was written
FAILED = "failed"


class BulkError(RuntimeError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class OpenFilter:
    """The open rows a run sends: event types and a time range (ledger time text)."""

    event_types: list[str] | None = None
    since: str | None = None
    until: str | None = None


@dataclass(frozen=True)
class Request:
    warehouse: str
    ledger: str
    rows_sql: str  # push._enqueue_sql: the connector's outbox rows as ledger rows (no params)
    connector: str
    segment_workspace: str
    segment_source: str
    queued_at: str
    open_filter: OpenFilter | None = None  # None: hand over no open rows
    chunk_rows: int = 0  # new rows per transaction and per hand-over; 0: CHUNK_ROWS
    first_chunk_rows: int = 0  # the first chunk's rows; 0: FIRST_CHUNK_ROWS
    out_dir: str = ""
    # Appending (push._appended_after): rows_sql holds only rows the ledger does not have, and
    # this query the ids of the outbox's other rows, which they must not repeat. "": a whole
    # enqueue, checked against the ledger's rows.
    older_ids_sql: str = ""
    # The connector's rows up to this seq are settled (Ledger.settled_through): open rows are
    # looked for above it only. 0: every row.
    open_after_seq: int = 0


@dataclass(frozen=True)
class NewRows:
    """The rows an enqueue inserted: every row from ``first_seq`` on, by (status, reason) as
    inserted, and how many of the pending ones it handed over to be sent."""

    first_seq: int
    counts: dict[tuple[str, str | None], int]
    handed: int


class OpenRowsTable:
    """Open rows already in memory (the Python path)."""

    def __init__(self, table: pa.Table) -> None:
        self.total = table.num_rows
        self._table = table

    def tables(self) -> Iterator[pa.Table]:
        if self._table.num_rows:
            yield self._table

    def close(self) -> None:
        """Nothing to wait for: the Python path enqueued every row before handing any over."""


class Child:
    """An enqueue process started ahead of its request: Python, DuckDB and pyarrow are imported
    (half a second of CPU) while the pusher computes what to ask of it. Closed unused, it exits
    without doing anything."""

    def __init__(self, hold_fds: Sequence[int] = ()) -> None:
        """``hold_fds``: descriptors the child keeps open until it exits (the push lock: a
        pusher killed where the child cannot die with it, which needs Linux's PDEATHSIG, leaves
        the lock held until the child has finished, so no resumed push races it)."""
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by its user
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "currents_segment.ledger_bulk", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            pass_fds=tuple(hold_fds),
        )

    def close(self) -> None:
        """Not needed after all: no request, and the process ends."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        self.proc.wait()
        self.stderr.close()


class Stream:
    """The child's open rows as they are handed over; ``close`` waits until it has enqueued
    every row (also when the pusher stopped reading early)."""

    def __init__(
        self, request: Request, hold_fds: Sequence[int] = (), child: Child | None = None
    ) -> None:
        """``child``: a process started ahead (else one is started here with ``hold_fds``)."""
        self._tmp = tempfile.TemporaryDirectory(prefix="cs-enqueue-")
        payload = asdict(request) | {"out_dir": self._tmp.name}
        child = child or Child(hold_fds)
        self._stderr = child.stderr
        self._proc = child.proc
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(payload) + "\n")
        self._proc.stdin.close()
        self._lines: IO[str] = self._proc.stdout
        self.finished: dict[str, Any] | None = None
        first = self._next()  # UNAVAILABLE and DUPLICATE arrive before anything is written
        if first.get("event") != "total":
            self.close()
            self._raise(first)
        self.total = int(first["open"])

    def _next(self) -> dict[str, Any]:
        for line in self._lines:
            if line.startswith("{"):
                message = json.loads(line)
                if "status" in message:
                    self.finished = message
                return message
        self._proc.wait()
        self._stderr.seek(0)
        detail = self._stderr.read().strip()[-500:] or f"exit code {self._proc.returncode}"
        self.finished = {"status": FAILED, "error": f"the enqueue process ended: {detail}"}
        return self.finished

    @staticmethod
    def _raise(message: dict[str, Any]) -> None:
        raise BulkError(message.get("status", FAILED), message.get("error") or "no detail")

    def tables(self) -> Iterator[pa.Table]:
        while self.finished is None:
            message = self._next()
            if message.get("event") == "rows":
                path = message["path"]
                with pa.memory_map(path) as source:
                    table = pa.ipc.open_file(source).read_all()
                Path(path).unlink()
                if table.num_rows:
                    yield table.cast(OPEN_ROWS_SCHEMA)
        if self.finished.get("status") != "ok":
            self._raise(self.finished)

    @property
    def new_rows(self) -> NewRows | None:
        """What the child inserted (once it has finished well and inserted any), else None."""
        done = self.finished
        if done is None or done.get("status") != "ok" or not done.get("new"):
            return None
        counts = {(status, reason): int(n) for status, reason, n in done["new_counts"]}
        return NewRows(int(done["first_seq"]), counts, int(done["handed_new"]))

    @property
    def inserted(self) -> int | None:
        """How many rows the child inserted (once it has finished well), else None."""
        if self.finished is None or self.finished.get("status") != "ok":
            return None
        return int(self.finished["new"])

    def close(self) -> None:
        """Wait for the child to enqueue every row; raises BulkError when it failed."""
        try:
            while self.finished is None:
                self._next()
            self._proc.wait()
        finally:
            self._stderr.close()
            self._tmp.cleanup()
        if self.finished.get("status") != "ok":
            self._raise(self.finished)


# ---------------------------------------------------------------------------------------------
# The child


def _open_where(flt: dict[str, Any]) -> list[str]:
    """The run's filter (``OpenFilter``) as DuckDB conditions on ``cs_new``, the rows this run
    inserts, values as literals: ``ledger.open_rows_sql``'s filter in DuckDB's dialect. With
    ``status = 'pending'`` it selects the new rows the run is handed (and counts them for the
    run's total before they are in the ledger); the rows already in the ledger are selected by
    ``open_rows_sql`` itself, inside SQLite. ``test_push_enqueue`` compares both with the
    Python path, which reads every open row back through ``Ledger.open_rows``."""
    where = []
    if flt.get("event_types"):
        where.append(f"list_contains({sql_text_list(flt['event_types'])}, currents_event_type)")
    if flt.get("since"):
        where.append(f"event_ts >= {sql_text(flt['since'])}")
    if flt.get("until"):
        where.append(f"event_ts < {sql_text(flt['until'])}")
    return where


def _retrying(con: Any, work: Callable[[], None]) -> None:
    """``work`` in one transaction, again while the ledger is locked by the pusher's commit."""
    import duckdb

    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    pause = 0.005
    while True:
        con.execute("BEGIN")
        try:
            work()
            con.execute("COMMIT")
            return
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            if "locked" not in str(exc) and "busy" not in str(exc).lower():
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)  # the pusher's transactions last milliseconds


def _write_rows(con: Any, sql: str, path: Path) -> int:
    import pyarrow.ipc as ipc

    table = con.execute(sql).to_arrow_table().cast(OPEN_ROWS_SCHEMA)
    with ipc.new_file(str(path), OPEN_ROWS_SCHEMA) as writer:
        writer.write_table(table)
    return table.num_rows


def _child(req: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
    import duckdb

    # One thread: the pusher sends beside this process, and DuckDB's second thread cost about
    # a fifth more CPU for a quarter less time (measured ad hoc at 1M rows, 2026-12-01).
    con = duckdb.connect(config={"threads": 1})
    if not ensure_sqlite(con):
        emit({"status": UNAVAILABLE, "error": "DuckDB's SQLite extension cannot load"})
        return
    # No statement here takes Python parameters; values are SQL literals (sql_text): DuckDB's
    # Python module imports pandas on the first statement with parameters, 2.9 CPU s before the
    # first rows on the 2-core bench host (ad hoc, 2026-12-02), in a process with no use for it.
    con.execute(f"ATTACH {sql_text(req['warehouse'])} AS cs_warehouse (READ_ONLY)")
    con.execute("USE cs_warehouse")
    con.execute(f"ATTACH {sql_text(req['ledger'])} AS cs_ledger (TYPE sqlite)")
    connector = req["connector"]
    connector_sql = sql_text(connector)
    con.execute(f"CREATE TEMP TABLE cs_enqueue AS {req['rows_sql']}")
    twice = con.execute(
        "SELECT sent_id FROM cs_enqueue GROUP BY sent_id HAVING count(*) > 1 ORDER BY 1 LIMIT 3"
    ).fetchall()
    older_ids_sql = req.get("older_ids_sql") or ""
    if not twice and older_ids_sql:
        twice = con.execute(
            f"SELECT sent_id FROM cs_enqueue WHERE sent_id IN ({older_ids_sql}) ORDER BY 1 LIMIT 3"
        ).fetchall()
    if twice:
        emit({"status": DUPLICATE, "error": "e.g. " + ", ".join(str(r[0]) for r in twice)})
        return
    if older_ids_sql:
        # Appending: the ledger holds none of these rows and no row of it changes (the
        # parent's check), so none of its rows is copied here.
        known_sql = (
            "SELECT CAST(NULL AS BIGINT) AS seq, CAST(NULL AS VARCHAR) AS message_id,"
            " CAST(NULL AS VARCHAR) AS status, CAST(NULL AS VARCHAR) AS reason WHERE false"
        )
    else:
        known_sql = (
            "SELECT seq, message_id, status, reason"
            f" FROM cs_ledger.ledger_events WHERE connector = {connector_sql}"
        )
    con.execute(f"CREATE TEMP TABLE cs_known AS {known_sql}")
    is_new = "r.sent_id NOT IN (SELECT message_id FROM cs_known)"
    # The new rows go in key order (the ledger's unique index then grows at its end), each
    # chunk a range of that order. The first FIRST_CHUNK_ROWS are the smallest keys, found
    # without sorting every row (a top-N): they are in the ledger and handed over before the
    # rest is sorted, and their sending covers the sort (about 2 s of each at 1M rows, ad hoc,
    # 2026-12-04).
    first_rows = int(req.get("first_chunk_rows") or FIRST_CHUNK_ROWS)
    con.execute(
        f"CREATE TEMP TABLE cs_first AS SELECT r.* FROM cs_enqueue r WHERE {is_new}"
        f" ORDER BY r.sent_id LIMIT {first_rows}"
    )
    con.execute(
        """
        CREATE TEMP TABLE cs_changed AS
        SELECT k.seq, r.status, r.reason, r.error, r.bytes
        FROM cs_enqueue r JOIN cs_known k ON k.message_id = r.sent_id
        WHERE k.status IN ('pending', 'skipped')
            AND (k.status IS DISTINCT FROM r.status OR k.reason IS DISTINCT FROM r.reason)
        """
    )
    changed = con.execute("SELECT count(*) FROM cs_changed").fetchone()[0]
    if changed:
        _retrying(
            con,
            lambda: con.execute(
                """
                UPDATE cs_ledger.ledger_events SET status = c.status, reason = c.reason,
                    error = c.error, payload_bytes = c.bytes
                FROM cs_changed c
                WHERE ledger_events.seq = c.seq AND ledger_events.status IN ('pending', 'skipped')
                """
            ),
        )
    new = con.execute(f"SELECT count(*) FROM cs_enqueue r WHERE {is_new}").fetchone()[0]
    flt = req.get("open_filter")
    out = Path(req["out_dir"])
    # Ledger.open_rows' rule in DuckDB's dialect, for the new rows (all pending or skipped or
    # rejected): the run's new open rows. A comparison with NULL selects nothing, as in SQLite.
    new_where = ["status = 'pending'", *_open_where(flt or {})]
    handed_new = 0
    if flt is None:
        emit({"event": "total", "open": 0, "new": new})
    else:
        # Open rows already in the ledger: Ledger.open_rows' own statement on its view, run
        # inside SQLite (the batches join a primary-key lookup there, only open rows cross
        # over). Through the extension's table scans, DuckDB ran that join as a nested loop
        # over every row and batch: 7 s with nothing open at 1M rows and 1,522 batches, and
        # growing with rows x batches; this is 0.7 s (ad hoc, 2026-12-02; bench_enqueue's
        # "idle" case).
        inner = open_rows_sql(
            connector,
            flt.get("event_types"),
            flt.get("since"),
            flt.get("until"),
            after_seq=int(req.get("open_after_seq") or 0) or None,
        )
        existing_sql = f"""
            SELECT CAST(seq AS BIGINT) AS seq, message_id AS sent_id, currents_id
            FROM sqlite_query('cs_ledger', {sql_text(inner)})
            -- In flight first (the resume window), then pending, by seq, as Ledger.open_rows.
            -- is_pending has no declared type in SQLite: compared as a number.
            ORDER BY CAST(is_pending AS INTEGER), seq
        """
        path = out / "rows-000000.arrow"
        existing = _write_rows(con, existing_sql, path)
        to_send = con.execute(
            f"SELECT count(*) FROM cs_enqueue r WHERE {is_new} AND {' AND '.join(new_where)}"
        ).fetchone()[0]
        emit({"event": "total", "open": existing + to_send, "new": new})
        handed_new = to_send
        emit({"event": "rows", "path": str(path), "rows": existing})
    step = int(req.get("chunk_rows") or CHUNK_ROWS)
    number = 0
    first_seq: list[int | None] = [None]  # the first new row's seq

    def chunks(table: str, rows: int, lows: Sequence[int]) -> None:
        """Insert ``table``'s rows (in key order, rowid 0 on) from each of ``lows`` to the next,
        each chunk in its own transaction, and hand over the run's open ones after each."""
        nonlocal number
        bounds = [low for low in lows if low < rows]
        for low, end in zip(bounds, [*bounds[1:], rows], strict=False):
            number += 1
            seq = _insert_chunk(con, req, table, low, end - 1, number, new_where, flt, out, emit)
            if first_seq[0] is None:
                first_seq[0] = seq

    first = con.execute("SELECT count(*) FROM cs_first").fetchone()[0]
    # A small piece first: the first batch leaves as soon as it is in.
    chunks("cs_first", first, [0, *range(min(step, FIRST_PIECE_ROWS), first, step)])
    if new > first:
        con.execute(
            f"""
            CREATE TEMP TABLE cs_new AS
            SELECT r.* FROM cs_enqueue r
            WHERE {is_new} AND r.sent_id > (SELECT max(sent_id) FROM cs_first)
            -- Stored in key order, so a row's rowid is its place in that order (no window
            -- function: a fifth of this statement's CPU) and each chunk's scan reads only its
            -- own row groups.
            ORDER BY r.sent_id
            """
        )
        chunks("cs_new", new - first, range(0, new - first, step))
    # What the new rows were inserted as, for the pusher's counts at the end (Ledger.counts'
    # ``known``): by status and reason, from the first new seq on, and how many of the pending
    # ones it was handed.
    new_counts = con.execute(
        f"SELECT status, reason, count(*) FROM cs_enqueue r WHERE {is_new} GROUP BY ALL"
    ).fetchall()
    con.close()
    # Whether pandas was loaded (it must not be; see the note at connect): tests read it.
    emit(
        {
            "status": "ok", "new": new, "changed": changed, "first_seq": first_seq[0],
            "new_counts": [list(row) for row in new_counts], "handed_new": handed_new,
            "pandas_loaded": "pandas" in sys.modules,
        }
    )  # fmt: skip


def _insert_chunk(
    con: Any,
    req: dict[str, Any],
    table: str,
    low: int,
    high: int,
    number: int,
    new_where: list[str],
    flt: dict[str, Any] | None,
    out: Path,
    emit: Callable[[dict[str, Any]], None],
) -> int:
    """Rows ``low``..``high`` (rowids) of ``table`` into the ledger, in one transaction, then
    the run's open ones among them handed over (file ``rows-<number>.arrow``). Returns the
    chunk's first seq."""
    # The chunk's rows with the seqs SQLite gives them: the ledger's largest plus one on (seq
    # is its rowid; while the push lock is held only this process inserts, the pusher only
    # updates rows, and a seq taken meanwhile fails the INSERT on its key). Materialized before
    # the transaction: a retry after the pusher's commit held the lock repeats the INSERT, not
    # this select (67 retries in one 1M push, ad hoc, 2026-12-04).
    top = con.execute(
        "SELECT coalesce(max(CAST(seq AS BIGINT)), 0) FROM sqlite_query('cs_ledger',"
        " 'SELECT max(seq) AS seq FROM ledger_events')"
    ).fetchone()[0]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE cs_chunk AS
        SELECT {int(top)} + 1 + (r.rowid - {int(low)}) AS seq, r.*
        FROM {table} r WHERE r.rowid BETWEEN {int(low)} AND {int(high)}
        """
    )
    constants = {
        k: sql_text(req[k])
        for k in ("connector", "segment_workspace", "segment_source", "queued_at")
    }

    def insert() -> None:
        con.execute(
            f"""
            INSERT INTO cs_ledger.ledger_events (seq, connector, message_id, currents_id,
                currents_event_type, app_group_id, segment_workspace, segment_source,
                event_timestamp, date_hour, payload_bytes, status, reason, error, queued_at)
            SELECT c.seq, {constants["connector"]}, c.sent_id, c.message_id,
                c.currents_event_type, c.app_group_id, {constants["segment_workspace"]},
                {constants["segment_source"]}, c.event_ts, c.date_hour, c.bytes, c.status,
                c.reason, c.error, {constants["queued_at"]}
            -- In key order (the table's, kept by DuckDB's insertion order: no sort here), so
            -- the ledger's unique index grows at its end; each row's seq is its own.
            FROM cs_chunk c
            """
        )

    _retrying(con, insert)
    if flt is None:
        return int(top) + 1
    # The rows just inserted that the run sends: Ledger.open_rows' rule (pending, and the run's
    # filter, _open_where) on the rows as written, not read back from SQLite.
    path = out / f"rows-{number:06d}.arrow"
    rows = _write_rows(
        con,
        "SELECT seq, sent_id, message_id AS currents_id FROM cs_chunk"
        f" WHERE {' AND '.join(new_where)} ORDER BY seq",
        path,
    )
    emit({"event": "rows", "path": str(path), "rows": rows})
    return int(top) + 1


def _die_with_parent(parent_pid: int | None) -> None:
    """A pusher killed with -9 takes this process along (Linux): its open transaction rolls
    back, and a resumed push never races an orphan inserting the same rows."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent waits for this process anyway
        return
    if parent_pid is not None and os.getppid() != parent_pid:  # died before prctl took effect
        os._exit(1)


def main() -> None:
    _die_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else None)
    # What the work needs, imported before the request comes (Child: started ahead of it).
    import duckdb  # noqa: F401
    import pyarrow.ipc  # noqa: F401

    line = sys.stdin.readline()
    if not line.strip():
        return  # started ahead and not needed
    request = json.loads(line)

    def emit(message: dict[str, Any]) -> None:
        print(json.dumps(message), flush=True)

    try:
        _child(request, emit)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which names the connector
        emit({"status": FAILED, "error": f"{type(exc).__name__}: {str(exc)[:500]}"})


if __name__ == "__main__":
    main()
