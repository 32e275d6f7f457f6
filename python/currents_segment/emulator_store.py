"""The emulator's Segment-warehouse-shaped store: Parquet parts, one schema per source.

Layout (see docs/architecture.md, "Emulator store")::

    <store>/<source_slug>/tracks/part-*.parquet        every kept track call
    <store>/<source_slug>/<snake_event>/part-*.parquet  the same calls + one column per property
    <store>/_emulator/dropped/part-*.parquet           accepted with 200 but not kept, and why
    <store>/_emulator/duplicated/part-*.parquet        injected duplicate deliveries

Rows are buffered in memory and written in bulk by DuckDB (JSON -> Parquet), each part under
a temporary name first and renamed, so a reader never sees a half-written file.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson

from .emulator_config import EMULATOR_SCHEMA

# Common columns of `tracks` and every per-event table, in Segment's warehouse names.
TRACK_COLUMNS = (
    "id",
    "anonymous_id",
    "user_id",
    "event",
    "event_text",
    "received_at",
    "sent_at",
    "timestamp",
    "original_timestamp",
    "uuid_ts",
)
_TIME_COLUMNS = ("received_at", "sent_at", "timestamp", "original_timestamp")
DROPPED_COLUMNS = (
    "message_id",
    "reason",
    "workspace",
    "source",
    "received_at",
    "event",
    "timestamp",
    "write_key_fingerprint",
)
DUPLICATED_COLUMNS = ("message_id", "reason", "workspace", "source", "received_at", "event")
# A property whose snake_cased name collides with a common column gets this prefix.
PROPERTY_COLLISION_PREFIX = "property_"


def snakecase(name: str) -> str:
    """Segment's go-snakecase (segmentio/go-snakecase), ported byte for byte.

    "Email Link Clicked" -> ``email_link_clicked``, "WhatsApp Sent" -> ``whats_app_sent``,
    "In-App Message Viewed" -> ``in_app_message_viewed``, ``messageId`` -> ``message_id``.
    Characters outside ASCII letters and digits separate words and are dropped.
    """
    s = name
    n = len(s)
    idx = 0
    while idx < n and (
        _lower(s[idx])
        or _digit(s[idx])
        or (s[idx] == "_" and idx < n - 1 and (_lower(s[idx + 1]) or _digit(s[idx + 1])))
    ):
        idx += 1
    if idx == n:
        return s
    if idx > 0 and _digit(s[idx - 1]):
        idx -= 1
    out = [s[:idx]]
    length = idx
    while idx < n:
        c = s[idx]
        if not (_lower(c) or _upper(c) or _digit(c)):
            idx += 1
            continue
        if length > 0:
            out.append("_")
            length += 1
        start = idx
        while idx < n and (_upper(s[idx]) or _digit(s[idx])):
            idx += 1
        while idx < n and (_lower(s[idx]) or _digit(s[idx])):
            idx += 1
        out.append(s[start:idx].lower())
        length += idx - start
    return "".join(out)


def _lower(c: str) -> bool:
    return "a" <= c <= "z"


def _upper(c: str) -> bool:
    return "A" <= c <= "Z"


def _digit(c: str) -> bool:
    return "0" <= c <= "9"


_SNAKE_CACHE: dict[str, str] = {}


def snake_cached(name: str) -> str:
    found = _SNAKE_CACHE.get(name)
    if found is None:
        found = snakecase(name)
        if len(_SNAKE_CACHE) < 100_000:  # bounded: keys come from clients
            _SNAKE_CACHE[name] = found
    return found


# prefix -> (key -> column name): the same few keys recur in every event.
_FLAT_NAMES: dict[str, dict[str, str]] = {}


def flatten(prefix: str, obj: dict[str, Any], out: dict[str, Any]) -> None:
    """Nested objects -> ``prefix_key_subkey`` columns; arrays are kept as JSON text.

    Segment's warehouses flatten objects the same way and store arrays as strings.
    """
    names = _FLAT_NAMES.get(prefix)
    if names is None:
        names = {}
        if len(_FLAT_NAMES) < 10_000:  # bounded: prefixes come from clients' keys
            _FLAT_NAMES[prefix] = names
    for key, value in obj.items():
        name = names.get(key)
        if name is None:
            name = prefix + snakecase(str(key))
            if len(names) < 10_000:  # bounded: keys come from clients
                names[key] = name
        kind = type(value)
        if kind is dict:
            flatten(name + "_", value, out)
        elif kind is list:
            out[name] = orjson.dumps(value).decode()
        else:
            out[name] = value


@dataclass
class PendingWrites:
    """What the server buffered since the last flush."""

    kept: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    duplicated: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.kept) + len(self.dropped) + len(self.duplicated)


class StoreWriter:
    """Writes buffered rows as Parquet parts; one flush at a time."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / EMULATOR_SCHEMA / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._run = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
        self._seq = 0
        self.parts_written = 0
        self.rows_written = 0

    def write(self, pending: PendingWrites) -> dict[str, int]:
        """Write every buffered row; returns rows written per table (``schema.table``)."""
        with self._lock:
            by_source: dict[str, dict[str, list[dict[str, Any]]]] = {}
            for slug, row, props in pending.kept:
                event_row = dict(row)
                for key, value in props.items():
                    if key in row or key == "uuid_ts" or key.startswith("context_"):
                        key = PROPERTY_COLLISION_PREFIX + key
                    event_row[key] = value
                by_source.setdefault(slug, {}).setdefault(row["event"], []).append(event_row)
            written: dict[str, int] = {}
            if not (by_source or pending.dropped or pending.duplicated):
                return written
            con = duckdb.connect()
            try:
                con.execute("SET threads TO 1")  # the event loop needs the other core
                for slug, tables in by_source.items():
                    loaded = []
                    for table, rows in tables.items():
                        columns = self._load(con, "_rows_" + str(len(loaded)), rows)
                        self._copy(con, slug, table, "_rows_" + str(len(loaded)), columns)
                        loaded.append(columns)
                        written[f"{slug}.{table}"] = len(rows)
                    # tracks = the common and context columns of every per-event table
                    union = " UNION ALL BY NAME ".join(
                        "SELECT "
                        + ", ".join(_ident(c) for c in cols if _is_track_column(c))
                        + f" FROM _rows_{i}"
                        for i, cols in enumerate(loaded)
                    )
                    columns = sorted({c for cols in loaded for c in cols if _is_track_column(c)})
                    self._copy(con, slug, "tracks", f"({union})", columns)
                    written[f"{slug}.tracks"] = sum(len(r) for r in tables.values())
                    for i in range(len(loaded)):
                        con.execute(f"DROP TABLE _rows_{i}")
                for table, rows in (
                    ("dropped", pending.dropped),
                    ("duplicated", pending.duplicated),
                ):
                    if rows:
                        columns = self._load(con, "_rows_emu", rows)
                        self._copy(con, EMULATOR_SCHEMA, table, "_rows_emu", columns)
                        con.execute("DROP TABLE _rows_emu")
                        written[f"{EMULATOR_SCHEMA}.{table}"] = len(rows)
            finally:
                con.close()
            return written

    def rescue(self, pending: PendingWrites) -> Path:
        """Rows a flush could not write, saved as NDJSON so that nothing is lost silently."""
        path = self.root / EMULATOR_SCHEMA / "unflushed" / f"rows-{self._run}.ndjson"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as fh:
            for slug, row, props in pending.kept:
                fh.write(
                    orjson.dumps({"table": "kept", "source": slug, "row": row, "properties": props})
                    + b"\n"
                )
            for table, rows in (("dropped", pending.dropped), ("duplicated", pending.duplicated)):
                for row in rows:
                    fh.write(orjson.dumps({"table": table, "row": row}) + b"\n")
        return path

    def _load(
        self, con: duckdb.DuckDBPyConnection, name: str, rows: list[dict[str, Any]]
    ) -> list[str]:
        """Rows -> a temporary DuckDB table (through JSON, parsed once); its columns."""
        self._seq += 1
        # One JSON array: a single orjson call costs a fraction of one call per row.
        array = self._tmp / f"rows-{self._run}-{self._seq:06d}.json"
        array.write_bytes(orjson.dumps(rows))
        try:
            con.execute(
                f"CREATE TEMP TABLE {name}_raw AS SELECT * FROM read_json('{_sql_str(array)}', "
                "format='array', sample_size=-1, maximum_object_size=67108864)"
            )
        finally:
            array.unlink(missing_ok=True)
        described = con.execute(f"DESCRIBE {name}_raw").fetchall()
        typed = ", ".join(_typed_sql(column, str(kind)) for column, kind, *_ in described)
        con.execute(f"CREATE TEMP TABLE {name} AS SELECT {typed} FROM {name}_raw")
        con.execute(f"DROP TABLE {name}_raw")
        return [d[0] for d in described]

    def _copy(
        self,
        con: duckdb.DuckDBPyConnection,
        schema: str,
        table: str,
        relation: str,
        columns: list[str],
    ) -> None:
        """One Parquet part, written under a temporary name and renamed when complete."""
        self._seq += 1
        stem = f"part-{self._run}-{self._seq:06d}"
        select = ", ".join(_column_sql(schema, c) for c in _ordered(schema, columns))
        out_dir = self.root / schema / table
        out_dir.mkdir(parents=True, exist_ok=True)
        partial = out_dir / f".{stem}.parquet.tmp"
        con.execute(
            f"COPY (SELECT {select} FROM {relation}) "
            f"TO '{_sql_str(partial)}' (FORMAT parquet, COMPRESSION zstd)"
        )
        os.replace(partial, out_dir / f"{stem}.parquet")
        self.parts_written += 1
        self.rows_written += con.execute(
            f"SELECT count(*) FROM read_parquet('{_sql_str(out_dir / f'{stem}.parquet')}')"
        ).fetchone()[0]


def _is_track_column(column: str) -> bool:
    return column in TRACK_COLUMNS or column.startswith("context_")


def _sql_str(path: Path) -> str:
    return str(path).replace("'", "''")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ordered(schema: str, columns: list[str]) -> list[str]:
    if schema == EMULATOR_SCHEMA:
        return columns
    common = [c for c in TRACK_COLUMNS if c in columns or c == "uuid_ts"]
    context = sorted(c for c in columns if c.startswith("context_"))
    rest = sorted(c for c in columns if c not in TRACK_COLUMNS and not c.startswith("context_"))
    return common + context + rest


def _column_sql(schema: str, column: str) -> str:
    if column == "uuid_ts" and schema != EMULATOR_SCHEMA:
        return "CAST(now() AT TIME ZONE 'UTC' AS TIMESTAMP) AS uuid_ts"
    return _ident(column)


def _typed_sql(column: str, kind: str) -> str:
    """Warehouse types: times from epoch microseconds, ids as text, mixed JSON as text."""
    ident = _ident(column)
    if column in _TIME_COLUMNS:
        return f"make_timestamp(CAST({ident} AS BIGINT)) AS {ident}"
    if kind == "JSON":
        # all-null or mixed-type values: unquoted text (a string stays a plain string)
        return f"json_extract_string({ident}, '$') AS {ident}"
    if column in TRACK_COLUMNS or column in DROPPED_COLUMNS:
        return f"CAST({ident} AS VARCHAR) AS {ident}"
    return ident


# ---------------------------------------------------------------------------------------------
# Reading what the emulator kept


def store_tables(store_dir: Path | str) -> dict[str, list[str]]:
    """Schema -> tables that hold at least one part, e.g. ``{"braze_prod": ["tracks", ...]}``."""
    root = Path(store_dir)
    out: dict[str, list[str]] = {}
    if not root.exists():
        return out
    for schema_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        tables = sorted(
            t.name for t in schema_dir.iterdir() if t.is_dir() and any(t.glob("part-*.parquet"))
        )
        if tables:
            out[schema_dir.name] = tables
    return out


def open_store(
    store_dir: Path | str, con: duckdb.DuckDBPyConnection | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per stored table: ``"<schema>"."<table>"``."""
    con = con or duckdb.connect()
    for schema, tables in store_tables(store_dir).items():
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
        for table in tables:
            glob = Path(store_dir) / schema / table / "part-*.parquet"
            con.execute(
                f"CREATE OR REPLACE VIEW {_ident(schema)}.{_ident(table)} AS "
                f"SELECT * FROM read_parquet('{_sql_str(glob)}', union_by_name=true)"
            )
    return con


def read_table(store_dir: Path | str, schema: str, table: str) -> list[dict[str, Any]]:
    """Every row of one stored table as dicts (empty when the table has no part yet)."""
    if table not in store_tables(store_dir).get(schema, []):
        return []
    con = open_store(store_dir)
    try:
        cur = con.execute(f"SELECT * FROM {_ident(schema)}.{_ident(table)}")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def load_history(
    store_dir: Path | str, since_us: int
) -> tuple[dict[str, int], Counter[tuple[str, str, int]]]:
    """What a restarted emulator must remember from its store.

    Returns the messageIds kept since ``since_us`` (for de-duplication, with their received
    time) and the kept-event counts per (source slug, event name, received minute) for
    ``/events/volume``, injected duplicates subtracted.
    """
    seen: dict[str, int] = {}
    volume: Counter[tuple[str, str, int]] = Counter()
    tables = store_tables(store_dir)
    sources = [s for s, t in tables.items() if s != EMULATOR_SCHEMA and "tracks" in t]
    if not sources:
        return seen, volume
    con = open_store(store_dir)
    try:
        for slug in sources:
            rel = f"{_ident(slug)}.tracks"
            for mid, rec_us in con.execute(
                f"SELECT id, max(epoch_us(received_at)) FROM {rel} "
                "WHERE epoch_us(received_at) >= ? GROUP BY id",
                [since_us],
            ).fetchall():
                if mid is not None:
                    seen[mid] = max(rec_us, seen.get(mid, 0))
            for event_text, minute, n in con.execute(
                f"SELECT event_text, epoch(date_trunc('minute', received_at))::BIGINT, count(*) "
                f"FROM {rel} GROUP BY ALL"
            ).fetchall():
                volume[(slug, event_text, int(minute))] += n
        if "duplicated" in tables.get(EMULATOR_SCHEMA, []):
            for slug, event_text, minute, n in con.execute(
                f"SELECT source, event, epoch(date_trunc('minute', received_at))::BIGINT, "
                f"count(*) FROM {_ident(EMULATOR_SCHEMA)}.duplicated GROUP BY ALL"
            ).fetchall():
                volume[(slug, event_text, int(minute))] -= n
    finally:
        con.close()
    return seen, +volume
