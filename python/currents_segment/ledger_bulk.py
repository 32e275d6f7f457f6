"""Enqueue in bulk: DuckDB copies a connector's new outbox rows into the SQLite ledger.

Through Python's sqlite3 an enqueue costs a Python tuple and fourteen bound values per event
(about 19 CPU seconds per million events on a slow core); DuckDB's SQLite extension writes the
same rows from the outbox query in C (about 7). It runs in a **child process** on purpose: the
extension carries its own copy of SQLite, and two copies of SQLite in one process do not see
each other's POSIX locks, so one copy closing the file would checkpoint and drop the WAL under
the other's open connection (SQLite's "How To Corrupt An SQLite Database File", 2.2.1; seen
here as "database disk image is malformed"). Across processes SQLite's locking holds.

The child inserts the rows the ledger lacks and moves unsent rows that the outbox now marks
differently (the rules of ``ledger._UPSERT_CONFLICT``) in one SQLite transaction, then writes
the connector's open rows (in-flight first, then pending, by seq) as an Arrow IPC file, so the
parent never builds a Python object per event either. ``python -m currents_segment.ledger_bulk``
reads its request as JSON on stdin and answers one JSON line on stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

OPEN_ROWS_SCHEMA = pa.schema(
    [("seq", pa.int64()), ("sent_id", pa.string()), ("currents_id", pa.string())]
)
# The outbox holds a messageId twice: the ledger's unique key refuses the insert.
DUPLICATE = "duplicate_message_id"
UNAVAILABLE = "unavailable"


class BulkError(RuntimeError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class OpenFilter:
    event_types: list[str] | None = None
    since: str | None = None  # ledger time text, see ledger.now_text
    until: str | None = None


@dataclass(frozen=True)
class Request:
    warehouse: str
    ledger: str
    rows_sql: str  # push._enqueue_sql: the connector's outbox rows as ledger rows
    params: list[Any]
    connector: str
    segment_workspace: str
    segment_source: str
    queued_at: str
    open_filter: OpenFilter | None = None  # None: do not read open rows
    open_rows_path: str = ""


def run(request: Request, timeout: float = 3600) -> pa.Table | None:
    """Enqueue in a child process; the open rows (None when not asked for).

    Raises BulkError(UNAVAILABLE) when DuckDB's SQLite extension cannot load there (the caller
    enqueues through Python instead; nothing was written), BulkError(DUPLICATE) for an outbox
    with a messageId twice (nothing was written), BulkError("failed") otherwise.
    """
    with tempfile.TemporaryDirectory(prefix="cs-enqueue-") as tmp:
        path = Path(tmp) / "open_rows.arrow"
        payload = asdict(request) | {"open_rows_path": str(path)}
        done = subprocess.run(
            [sys.executable, "-m", "currents_segment.ledger_bulk"],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        answer: dict[str, Any] = {}
        for line in reversed(done.stdout.splitlines()):
            if line.startswith("{"):
                answer = json.loads(line)
                break
        if done.returncode != 0 or answer.get("status") != "ok":
            kind = answer.get("status") or "failed"
            detail = answer.get("error") or done.stderr.strip()[-500:] or f"exit {done.returncode}"
            raise BulkError(kind, detail)
        if request.open_filter is None:
            return None
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_file(source).read_all().cast(OPEN_ROWS_SCHEMA)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _child(req: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    from currents_segment import duck

    con = duckdb.connect()
    if not duck.ensure_sqlite(con):
        return {"status": UNAVAILABLE, "error": "DuckDB's SQLite extension cannot load"}
    con.execute(f"ATTACH {_literal(req['warehouse'])} AS cs_warehouse (READ_ONLY)")
    con.execute("USE cs_warehouse")
    con.execute(f"ATTACH {_literal(req['ledger'])} AS cs_ledger (TYPE sqlite)")
    con.execute(f"CREATE TEMP TABLE cs_enqueue AS {req['rows_sql']}", req["params"])
    consts = {
        "connector": req["connector"],
        "workspace": req["segment_workspace"],
        "source": req["segment_source"],
        "queued_at": req["queued_at"],
    }
    con.execute("BEGIN")
    try:
        con.execute(
            """
            INSERT INTO cs_ledger.ledger_events (connector, message_id, currents_id,
                currents_event_type, app_group_id, segment_workspace, segment_source,
                event_timestamp, date_hour, payload_bytes, status, reason, error, queued_at)
            SELECT $connector, r.sent_id, r.message_id, r.currents_event_type, r.app_group_id,
                $workspace, $source, r.event_ts, r.date_hour, r.bytes, r.status, r.reason,
                r.error, $queued_at
            FROM cs_enqueue r
            WHERE r.sent_id NOT IN (
                SELECT e.message_id FROM cs_ledger.ledger_events e WHERE e.connector = $connector
            )
            -- In key order, the ledger's unique index grows at its end.
            ORDER BY r.sent_id
            """,
            consts,
        )
        # Unsent rows follow the outbox's sendable flag (ledger._UPSERT_CONFLICT's rule).
        con.execute(
            """
            CREATE TEMP TABLE cs_changed AS
            SELECT e.seq, r.status, r.reason, r.error, r.bytes
            FROM cs_enqueue r JOIN cs_ledger.ledger_events e ON e.message_id = r.sent_id
            WHERE e.connector = ? AND e.status IN ('pending', 'skipped')
                AND (e.status IS DISTINCT FROM r.status OR e.reason IS DISTINCT FROM r.reason)
            """,
            [req["connector"]],
        )
        changed = con.execute("SELECT count(*) FROM cs_changed").fetchone()[0]
        if changed:
            con.execute(
                """
                UPDATE cs_ledger.ledger_events SET status = c.status, reason = c.reason,
                    error = c.error, payload_bytes = c.bytes
                FROM cs_changed c WHERE ledger_events.seq = c.seq
                """
            )
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        if "UNIQUE constraint failed" not in str(exc):
            raise
        return {"status": DUPLICATE, "error": str(exc).splitlines()[0][:300]}
    except BaseException:
        con.execute("ROLLBACK")
        raise
    if req.get("open_filter") is not None:
        _write_open_rows(con, req["connector"], req["open_filter"], req["open_rows_path"])
    con.close()
    return {"status": "ok", "changed": changed}


def _write_open_rows(con: Any, connector: str, flt: dict[str, Any], path: str) -> None:
    """The ``ledger`` view's open rows, read from its two tables (DuckDB cannot type a view's
    columns through the extension)."""
    import pyarrow.ipc as ipc

    where = [
        "e.connector = $connector",
        "(e.status = 'pending'"
        " OR (e.status = 'in_flight' AND b.status IS DISTINCT FROM 'acknowledged'))",
    ]
    params: dict[str, Any] = {"connector": connector}
    if flt.get("event_types"):
        where.append("list_contains($types, e.currents_event_type)")
        params["types"] = flt["event_types"]
    if flt.get("since"):
        where.append("e.event_timestamp >= $since")
        params["since"] = flt["since"]
    if flt.get("until"):
        where.append("e.event_timestamp < $until")
        params["until"] = flt["until"]
    table = (
        con.execute(
            f"""
            SELECT CAST(e.seq AS BIGINT) AS seq, e.message_id AS sent_id, e.currents_id
            FROM cs_ledger.ledger_events e
            LEFT JOIN cs_ledger.batches b ON b.batch_id = e.batch_id AND e.status = 'in_flight'
            WHERE {" AND ".join(where)}
            ORDER BY e.status = 'pending', e.seq
            """,
            params,
        )
        .to_arrow_table()
        .cast(OPEN_ROWS_SCHEMA)
    )
    with ipc.new_file(path, OPEN_ROWS_SCHEMA) as writer:
        writer.write_table(table)


def main() -> None:
    request = json.loads(sys.stdin.read())
    try:
        answer = _child(request)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which names the connector
        answer = {"status": "failed", "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
