"""Load what Segment holds into the warehouse (schema ``received``), and snapshot the send ledger.

Sources of "received":

- a Segment-warehouse-shaped directory: ``<dir>/<source_slug>/tracks/*.parquet|*.csv[.gz]`` (the
  emulator's store, or Parquet/CSV exports of a Snowflake, BigQuery or Redshift destination);
- another DuckDB file holding Segment warehouse schemas (one schema per source, each with ``tracks``);
- Segment's Public API ``GET /events/volume`` (counts per event name, source and hour; no ids).

Every load is idempotent: directory parts already loaded (same size and mtime) are skipped, a
changed or vanished part reloads its whole source, a DuckDB source is replaced as a whole, and API
volumes replace the same source/hours. Older Segment spellings map to the catalogue's canonical name.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import duckdb

from currents_segment import catalogue, duck, settings

RECEIVED_SCHEMA = "received"
LEDGER_SCHEMA = "ledger"
TOKEN_ENV = "SEGMENT_PUBLIC_API_TOKEN"
VOLUME_API_URL = "https://api.segmentapis.com"
ORIGINS = ("warehouse", "emulator", "volume_api", "file")

# The contract tables (docs/architecture.md). macros/rpt_received_tables.sql mirrors them so dbt can
# run before any receive; tests/test_receive.py checks both agree.
TABLES: dict[str, list[tuple[str, str]]] = {
    f"{RECEIVED_SCHEMA}.tracks": [
        ("segment_workspace", "VARCHAR"),
        ("segment_source", "VARCHAR"),
        ("message_id", "VARCHAR"),
        ("event", "VARCHAR"),  # canonical catalogue name; null when the name is not in it
        ("currents_event_type", "VARCHAR"),
        ("event_text", "VARCHAR"),  # the name as Segment holds it
        ("user_id", "VARCHAR"),
        ("anonymous_id", "VARCHAR"),
        ("event_timestamp", "TIMESTAMP"),
        ("received_at", "TIMESTAMP"),
        ("origin", "VARCHAR"),
        ("part", "VARCHAR"),
        ("loaded_at", "TIMESTAMP"),
    ],
    f"{RECEIVED_SCHEMA}.event_volumes": [
        ("segment_workspace", "VARCHAR"),
        ("segment_source", "VARCHAR"),
        ("source_id", "VARCHAR"),
        ("event", "VARCHAR"),
        ("currents_event_type", "VARCHAR"),
        ("event_text", "VARCHAR"),
        ("period_start", "TIMESTAMP"),
        ("granularity", "VARCHAR"),
        ("event_count", "BIGINT"),
        ("origin", "VARCHAR"),
        ("loaded_at", "TIMESTAMP"),
    ],
    f"{RECEIVED_SCHEMA}.loaded_parts": [
        ("segment_workspace", "VARCHAR"),
        ("segment_source", "VARCHAR"),
        ("origin", "VARCHAR"),
        ("part", "VARCHAR"),
        ("fingerprint", "VARCHAR"),
        ("row_count", "BIGINT"),
        ("loaded_at", "TIMESTAMP"),
    ],
    # Where each Braze workspace's events are expected (connectors config); empty = derive.
    f"{RECEIVED_SCHEMA}.routes": [
        ("connector", "VARCHAR"),
        ("connector_kind", "VARCHAR"),
        ("app_group_id", "VARCHAR"),
        ("family", "VARCHAR"),
        ("currents_event_type", "VARCHAR"),
        ("segment_workspace", "VARCHAR"),
        ("segment_source", "VARCHAR"),
    ],
    f"{LEDGER_SCHEMA}.events": [
        ("connector", "VARCHAR"),
        ("message_id", "VARCHAR"),
        ("currents_id", "VARCHAR"),
        ("currents_event_type", "VARCHAR"),
        ("app_group_id", "VARCHAR"),
        ("segment_workspace", "VARCHAR"),
        ("segment_source", "VARCHAR"),
        ("batch_id", "VARCHAR"),
        ("status", "VARCHAR"),
        ("attempts", "BIGINT"),
        ("last_http_status", "BIGINT"),
        ("reason", "VARCHAR"),  # why skipped/rejected (ledger.py's extension)
        ("error", "VARCHAR"),
        ("queued_at", "TIMESTAMP"),
        ("sent_at", "TIMESTAMP"),
        ("acked_at", "TIMESTAMP"),
    ],
}
CONNECTOR_KINDS = ("message_engagement", "customer_behavior")


class ReceiveError(RuntimeError):
    """A received source cannot be read; the message names the file, table or setting at fault."""


@dataclass
class ReceiveSummary:
    """What one receive did, per source."""

    rows_loaded: int = 0
    parts_loaded: int = 0
    parts_skipped: int = 0
    sources: dict[str, int] = field(default_factory=dict)  # "workspace/source" -> rows now held
    unknown_event_names: dict[str, int] = field(default_factory=dict)  # kept, event is null
    routes: int | None = None  # routes loaded (None: left as they were)
    ledger_rows: int | None = None  # rows in the ledger snapshot (None: not taken)

    def merge(self, other: ReceiveSummary) -> None:
        self.rows_loaded += other.rows_loaded
        self.parts_loaded += other.parts_loaded
        self.parts_skipped += other.parts_skipped
        self.sources.update(other.sources)
        for k, v in other.unknown_event_names.items():
            self.unknown_event_names[k] = self.unknown_event_names.get(k, 0) + v


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the received and ledger snapshot tables when missing (receive, reconcile, dbt)."""
    for table, columns in TABLES.items():
        schema = table.split(".", 1)[0]
        con.execute(f"create schema if not exists {schema}")
        cols = ", ".join(f"{_q(n)} {t}" for n, t in columns)
        con.execute(f"create table if not exists {table} ({cols})")


def connect_warehouse(path: Path | None = None) -> duckdb.DuckDBPyConnection:
    con = duck.connect(path or settings.warehouse_path())
    # Segment timestamps are UTC; naive values and casts must not pick up the machine's zone.
    con.execute("set TimeZone = 'UTC'")
    ensure_tables(con)
    return con


def snake_case(name: str) -> str:
    """Segment's warehouse table/event spelling ("WhatsApp Sent" -> whats_app_sent)."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return re.sub(r"[^0-9a-zA-Z]+", "_", s).strip("_").lower()


def event_names() -> list[tuple[str, str, str]]:
    """(lower-cased received spelling, canonical Segment name, Currents type) for every spelling
    the received side accepts: Braze's name, older aliases, and their snake_cased forms."""
    rows: dict[str, tuple[str, str, str]] = {}
    for t in catalogue.supported():
        for name in (t.segment_event, *t.segment_event_aliases):
            for spelling in (name.lower(), snake_case(name)):
                rows.setdefault(spelling, (spelling, t.segment_event, t.event_type))
    return list(rows.values())


def _register_names(con: duckdb.DuckDBPyConnection) -> None:
    import pandas as pd

    frame = pd.DataFrame(event_names(), columns=["spelling", "event", "currents_event_type"])
    con.register("_cs_event_names", frame)


def _columns(con: duckdb.DuckDBPyConnection, relation_sql: str) -> dict[str, str]:
    """lower-cased column name -> the name as the relation spells it (Snowflake upper-cases)."""
    described = con.execute(f"describe select * from {relation_sql}").fetchall()
    return {row[0].lower(): row[0] for row in described}


def _normalised_select(
    con: duckdb.DuckDBPyConnection,
    relation_sql: str,
    workspace: str,
    source: str,
    origin: str,
    where_label: str,
) -> str:
    """SQL selecting the contract columns from a Segment ``tracks`` relation."""
    cols = _columns(con, relation_sql)
    if "id" not in cols and "message_id" not in cols:
        raise ReceiveError(f"{where_label}: no id column (Segment's tracks table has 'id')")
    if "event_text" not in cols and "event" not in cols:
        raise ReceiveError(f"{where_label}: neither event_text nor event column")

    def col(*names: str) -> str:
        for n in names:
            if n in cols:
                return f"src.{_q(cols[n])}"
        return "null"

    def ts(*names: str) -> str:
        c = col(*names)
        return "cast(null as timestamp)" if c == "null" else f"{_ts_expr(c)}"

    name_text = col("event_text", "event")
    part = "src.filename" if "filename" in cols else "null"
    return f"""
        select
            $workspace as segment_workspace,
            $source as segment_source,
            cast({col("id", "message_id")} as varchar) as message_id,
            coalesce(names_text.event, names_snake.event) as event,
            coalesce(names_text.currents_event_type, names_snake.currents_event_type)
                as currents_event_type,
            cast({name_text} as varchar) as event_text,
            cast({col("user_id")} as varchar) as user_id,
            cast({col("anonymous_id")} as varchar) as anonymous_id,
            {ts("timestamp", "original_timestamp")} as event_timestamp,
            {ts("received_at")} as received_at,
            $origin as origin,
            cast({part} as varchar) as part,
            $loaded_at as loaded_at
        from {relation_sql} as src
        left join _cs_event_names as names_text
            on lower(trim(cast({name_text} as varchar))) = names_text.spelling
        left join _cs_event_names as names_snake
            on lower(trim(cast({col("event")} as varchar))) = names_snake.spelling
    """


def _ts_expr(column: str) -> str:
    # Parquet keeps TIMESTAMP/TIMESTAMPTZ, CSV keeps text like 2034-06-14T09:48:24.000Z; both
    # end as naive UTC. try_cast keeps a bad value as null instead of failing the whole load.
    return f"cast(try_cast(cast({column} as varchar) as timestamptz) as timestamp)"


def _params(workspace: str, source: str, origin: str) -> dict[str, Any]:
    return {
        "workspace": workspace,
        "source": source,
        "origin": origin,
        "loaded_at": datetime.now(UTC).replace(tzinfo=None),
    }


def _count_unknown(
    con: duckdb.DuckDBPyConnection, workspace: str, source: str, origin: str
) -> dict[str, int]:
    rows = con.execute(
        f"select coalesce(event_text, '(null)'), count(*) from {RECEIVED_SCHEMA}.tracks "
        "where segment_workspace = ? and segment_source = ? and origin = ? and event is null "
        "group by 1",
        [workspace, source, origin],
    ).fetchall()
    return {name: n for name, n in rows}


# ---------------------------------------------------------------------------------------------
# Warehouse-shaped directories (the emulator's store, Parquet/CSV exports)


def _tracks_parts(source_dir: Path) -> list[Path]:
    """The part files of a source's tracks table: tracks/*.parquet|csv[.gz] or tracks.<ext>."""
    patterns = ("*.parquet", "*.csv", "*.csv.gz")
    parts: list[Path] = []
    tracks_dir = source_dir / "tracks"
    if tracks_dir.is_dir():
        for pattern in patterns:
            parts.extend(tracks_dir.rglob(pattern))
    for pattern in patterns:
        parts.extend(source_dir.glob(f"tracks{pattern[1:]}"))
    return sorted(set(parts))


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def store_sources(store_dir: Path) -> list[str]:
    """Source slugs in a warehouse-shaped directory (folders holding a tracks table)."""
    if (store_dir / "store").is_dir():
        store_dir = store_dir / "store"
    if not store_dir.is_dir():
        raise ReceiveError(f"{store_dir}: no such directory (expected <dir>/<source>/tracks/)")
    return sorted(
        p.name
        for p in store_dir.iterdir()
        if p.is_dir() and not p.name.startswith("_") and _tracks_parts(p)
    )


def receive_directory(
    con: duckdb.DuckDBPyConnection,
    store_dir: Path,
    workspaces: Mapping[str, str],
    origin: str = "emulator",
    default_workspace: str | None = None,
    sources: Iterable[str] | None = None,
) -> ReceiveSummary:
    """Load ``<store_dir>/<source>/tracks`` parts not loaded yet; ``workspaces`` maps source slug
    to Segment workspace (``default_workspace`` for the rest)."""
    if origin not in ORIGINS:
        raise ReceiveError(f"origin {origin!r} is not one of {ORIGINS}")
    root = store_dir / "store" if (store_dir / "store").is_dir() else store_dir
    summary = ReceiveSummary()
    _register_names(con)
    for source in sources or store_sources(store_dir):
        workspace = workspaces.get(source, default_workspace)
        if not workspace:
            raise ReceiveError(
                f"source {source!r} in {root} has no Segment workspace: pass --workspace or "
                f"--source-workspace {source}=<workspace>"
            )
        summary.merge(_receive_source_dir(con, root / source, workspace, source, origin))
    return summary


def _receive_source_dir(
    con: duckdb.DuckDBPyConnection, source_dir: Path, workspace: str, source: str, origin: str
) -> ReceiveSummary:
    summary = ReceiveSummary()
    parts = {str(p.resolve()): _fingerprint(p) for p in _tracks_parts(source_dir)}
    known = dict(
        con.execute(
            f"select part, fingerprint from {RECEIVED_SCHEMA}.loaded_parts "
            "where segment_workspace = ? and segment_source = ? and origin = ?",
            [workspace, source, origin],
        ).fetchall()
    )
    changed = [p for p, fp in known.items() if parts.get(p) != fp]
    con.execute("begin")
    try:
        if changed:
            # A part was rewritten or removed: its rows cannot be told apart reliably, reload all.
            for table in ("tracks", "loaded_parts"):
                con.execute(
                    f"delete from {RECEIVED_SCHEMA}.{table} "
                    "where segment_workspace = ? and segment_source = ? and origin = ?",
                    [workspace, source, origin],
                )
            known = {}
        new = sorted(p for p in parts if p not in known)
        summary.parts_skipped = len(parts) - len(new)
        for group in _by_format(new):
            rows = _load_parts(con, group, workspace, source, origin)
            summary.rows_loaded += rows
            summary.parts_loaded += len(group)
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        # One pass for every new part's row count (an empty part counts 0: still loaded).
        counts = dict(
            con.execute(
                f"select part, count(*) from {RECEIVED_SCHEMA}.tracks where "
                "segment_workspace = ? and segment_source = ? and origin = ? and part in "
                "(select unnest(?::varchar[])) group by part",
                [workspace, source, origin, new],
            ).fetchall()
        )
        if new:
            con.executemany(
                f"insert into {RECEIVED_SCHEMA}.loaded_parts values (?, ?, ?, ?, ?, ?, ?)",
                [
                    [workspace, source, origin, p, parts[p], counts.get(p, 0), loaded_at]
                    for p in new
                ],
            )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    held = con.execute(
        f"select count(*) from {RECEIVED_SCHEMA}.tracks "
        "where segment_workspace = ? and segment_source = ? and origin = ?",
        [workspace, source, origin],
    ).fetchone()[0]
    summary.sources[f"{workspace}/{source}"] = held
    summary.unknown_event_names = _count_unknown(con, workspace, source, origin)
    return summary


def _by_format(paths: list[str]) -> Iterator[list[str]]:
    parquet = [p for p in paths if p.endswith(".parquet")]
    csv = [p for p in paths if not p.endswith(".parquet")]
    if parquet:
        yield parquet
    if csv:
        yield csv


def _load_parts(
    con: duckdb.DuckDBPyConnection, paths: list[str], workspace: str, source: str, origin: str
) -> int:
    listed = "[" + ", ".join(duck.sql_text(p) for p in paths) + "]"
    if paths[0].endswith(".parquet"):
        relation = f"read_parquet({listed}, union_by_name = true, filename = true)"
    else:
        relation = f"read_csv({listed}, union_by_name = true, filename = true, all_varchar = true)"
    label = f"{workspace}/{source} ({len(paths)} part(s), first {paths[0]})"
    try:
        select = _normalised_select(con, relation, workspace, source, origin, label)
        before = con.execute(f"select count(*) from {RECEIVED_SCHEMA}.tracks").fetchone()[0]
        con.execute(
            f"insert into {RECEIVED_SCHEMA}.tracks by name {select}",
            _params(workspace, source, origin),
        )
    except duckdb.Error as exc:
        raise ReceiveError(f"{label}: cannot read: {exc}") from exc
    return con.execute(f"select count(*) from {RECEIVED_SCHEMA}.tracks").fetchone()[0] - before


# ---------------------------------------------------------------------------------------------
# Another DuckDB file with Segment warehouse schemas


def receive_duckdb(
    con: duckdb.DuckDBPyConnection,
    db_path: Path,
    workspaces: Mapping[str, str],
    default_workspace: str | None = None,
    schemas: Iterable[str] | None = None,
) -> ReceiveSummary:
    """Replace each source (schema with a ``tracks`` table) of ``db_path`` in ``received.tracks``."""
    if not Path(db_path).exists():
        raise ReceiveError(f"{db_path}: no such DuckDB file")
    summary = ReceiveSummary()
    _register_names(con)
    alias = "_cs_segment_wh"
    con.execute(f"attach '{str(db_path).replace(chr(39), chr(39) * 2)}' as {alias} (read_only)")
    try:
        found = [
            r[0]
            for r in con.execute(
                "select table_schema from information_schema.tables "
                "where table_catalog = ? and lower(table_name) = 'tracks' order by 1",
                [alias],
            ).fetchall()
        ]
        wanted = list(schemas) if schemas else found
        for schema in wanted:
            if schema not in found:
                raise ReceiveError(f"{db_path}: schema {schema!r} has no tracks table")
            workspace = workspaces.get(schema, default_workspace)
            if not workspace:
                raise ReceiveError(
                    f"schema {schema!r} in {db_path} has no Segment workspace: pass --workspace "
                    f"or --source-workspace {schema}=<workspace>"
                )
            relation = f"{alias}.{_q(schema)}.tracks"
            select = _normalised_select(
                con, relation, workspace, schema, "warehouse", f"{db_path}:{schema}.tracks"
            )
            con.execute("begin")
            try:
                con.execute(
                    f"delete from {RECEIVED_SCHEMA}.tracks where segment_workspace = ? "
                    "and segment_source = ? and origin = 'warehouse'",
                    [workspace, schema],
                )
                con.execute(
                    f"insert into {RECEIVED_SCHEMA}.tracks by name {select}",
                    _params(workspace, schema, "warehouse"),
                )
                con.execute("commit")
            except Exception:
                con.execute("rollback")
                raise
            n = con.execute(
                f"select count(*) from {RECEIVED_SCHEMA}.tracks where segment_workspace = ? "
                "and segment_source = ? and origin = 'warehouse'",
                [workspace, schema],
            ).fetchone()[0]
            summary.rows_loaded += n
            summary.sources[f"{workspace}/{schema}"] = n
            for k, v in _count_unknown(con, workspace, schema, "warehouse").items():
                summary.unknown_event_names[k] = summary.unknown_event_names.get(k, 0) + v
    finally:
        con.execute(f"detach {alias}")
    return summary


# ---------------------------------------------------------------------------------------------
# Segment Public API: GET /events/volume


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


def fetch_volumes(
    base_url: str,
    token: str,
    start: datetime,
    end: datetime,
    granularity: str = "HOUR",
    source_ids: Iterable[str] = (),
    requests_per_minute: float = 60.0,
    page_size: int = 100,
    timeout: float = 30.0,
    max_retries: int = 5,
) -> list[dict[str, Any]]:
    """Every (source id, event name, period start, count) row the API returns, all pages.

    Requests are spaced to stay under ``requests_per_minute`` (Segment allows 60); a 429 waits for
    ``Retry-After``. The token never appears in errors.
    """
    import requests

    granularity = granularity.upper()
    if granularity not in ("DAY", "HOUR", "MINUTE"):
        raise ReceiveError(f"granularity {granularity!r} is not DAY, HOUR or MINUTE")
    url = base_url.rstrip("/") + "/events/volume"
    interval = 60.0 / requests_per_minute if requests_per_minute > 0 else 0.0
    base_params: list[tuple[str, str]] = [
        ("granularity", granularity),
        ("startTime", _iso(start)),
        ("endTime", _iso(end)),
        ("groupBy", "eventName"),
        ("groupBy", "source"),
        ("pagination.count", str(page_size)),
    ]
    base_params += [("sourceId", s) for s in source_ids]
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    last_request = 0.0
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    while True:
        params = list(base_params)
        if cursor:
            params.append(("pagination.cursor", cursor))
        for attempt in range(max_retries + 1):
            wait = last_request + interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            last_request = time.monotonic()
            try:
                resp = session.get(url, params=params, timeout=timeout)
            except requests.RequestException as exc:
                raise ReceiveError(f"GET {url}: {type(exc).__name__}") from None
            if resp.status_code == 429 and attempt < max_retries:
                time.sleep(min(float(resp.headers.get("Retry-After", "1") or 1), 60.0))
                continue
            if resp.status_code >= 500 and attempt < max_retries:
                time.sleep(min(0.5 * 2**attempt, 30.0))
                continue
            break
        if resp.status_code != 200:
            raise ReceiveError(
                f"GET {url} answered HTTP {resp.status_code}: {resp.text[:200]!r}"
                + (
                    " (check the token in $" + TOKEN_ENV + ")"
                    if resp.status_code in (401, 403)
                    else ""
                )
            )
        try:
            body = resp.json()
        except ValueError:
            raise ReceiveError(f"GET {url}: the answer is not JSON") from None
        data = body.get("data", body)
        for result in data.get("result") or []:
            source = result.get("source")
            source_id = source.get("id") if isinstance(source, dict) else source
            slug = source.get("slug") if isinstance(source, dict) else None
            name = result.get("eventName")
            for point in result.get("series") or []:
                rows.append(
                    {
                        "source_id": None if source_id is None else str(source_id),
                        "source_slug": slug,
                        "event_text": name,
                        "period_start": _parse_time(point["time"]),
                        "event_count": int(point.get("count") or 0),
                    }
                )
        cursor = (data.get("pagination") or {}).get("next")
        if not cursor:
            return rows


def receive_volumes(
    con: duckdb.DuckDBPyConnection,
    workspace: str,
    rows: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    granularity: str = "HOUR",
    source_names: Mapping[str, str] | None = None,
) -> ReceiveSummary:
    """Replace the workspace's API volumes between ``start`` and ``end`` with ``rows``."""
    import pandas as pd

    names = {spelling: (event, etype) for spelling, event, etype in event_names()}
    loaded_at = datetime.now(UTC).replace(tzinfo=None)
    records = []
    unknown: dict[str, int] = {}
    for r in rows:
        text = r["event_text"]
        event, etype = names.get((text or "").strip().lower(), (None, None))
        if event is None:
            unknown[str(text)] = unknown.get(str(text), 0) + r["event_count"]
        sid = r["source_id"]
        records.append(
            {
                "segment_workspace": workspace,
                "segment_source": (source_names or {}).get(sid or "", r.get("source_slug") or sid),
                "source_id": sid,
                "event": event,
                "currents_event_type": etype,
                "event_text": text,
                "period_start": r["period_start"],
                "granularity": granularity.upper(),
                "event_count": r["event_count"],
                "origin": "volume_api",
                "loaded_at": loaded_at,
            }
        )
    columns = [n for n, _ in TABLES[f"{RECEIVED_SCHEMA}.event_volumes"]]
    frame = pd.DataFrame.from_records(records, columns=columns)
    con.register("_cs_volumes", frame)
    con.execute("begin")
    try:
        con.execute(
            f"delete from {RECEIVED_SCHEMA}.event_volumes where segment_workspace = ? and "
            "origin = 'volume_api' and granularity = ? and period_start >= ? and period_start < ?",
            [
                workspace,
                granularity.upper(),
                start.astimezone(UTC).replace(tzinfo=None),
                end.astimezone(UTC).replace(tzinfo=None),
            ],
        )
        con.execute(
            f"insert into {RECEIVED_SCHEMA}.event_volumes by name "
            "select * replace (cast(period_start as timestamp) as period_start, "
            "cast(loaded_at as timestamp) as loaded_at) from _cs_volumes"
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.unregister("_cs_volumes")
    summary = ReceiveSummary(rows_loaded=len(records), unknown_event_names=unknown)
    for r in records:
        key = f"{workspace}/{r['segment_source']}"
        summary.sources[key] = summary.sources.get(key, 0) + r["event_count"]
    return summary


# ---------------------------------------------------------------------------------------------
# The ledger snapshot and the routes


def _ledger_table(db: sqlite3.Connection, path: Path) -> str:
    # ledger.py's "ledger" is a view over its event and batch tables (schema version 2).
    tables = [
        r[0] for r in db.execute("select name from sqlite_master where type in ('table', 'view')")
    ]
    candidates = []
    for t in tables:
        cols = {r[1] for r in db.execute(f"pragma table_info({_q(t)})")}
        if {"connector", "message_id", "currents_id", "status"} <= cols:
            candidates.append(t)
    if not candidates:
        raise ReceiveError(
            f"{path}: no ledger table (one with connector, message_id, currents_id, status) "
            f"among {tables}"
        )
    # ledger.py names its table "ledger"; prefer it when several qualify.
    for preferred in ("ledger", "events", "ledger_events"):
        if preferred in candidates:
            return preferred
    return candidates[0]


def snapshot_ledger(
    con: duckdb.DuckDBPyConnection, ledger_path: Path | None = None, chunk_rows: int = 500_000
) -> int:
    """Copy the SQLite send ledger into ``ledger.events`` (replaced); 0 rows when there is none.

    DuckDB's sqlite extension is not available offline, so rows go through pandas in chunks.
    """
    import pandas as pd

    path = Path(ledger_path or settings.ledger_path())
    contract = TABLES[f"{LEDGER_SCHEMA}.events"]
    con.execute(f"delete from {LEDGER_SCHEMA}.events")
    if not path.exists():
        return 0
    # Read-only URI: the pusher may hold the ledger open; a snapshot must not take its lock long.
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        table = _ledger_table(db, path)
        have = {r[1] for r in db.execute(f"pragma table_info({_q(table)})")}
        select = ", ".join(_q(n) if n in have else f"null as {_q(n)}" for n, _ in contract)
        casts = ", ".join(f"cast({_q(n)} as {t}) as {_q(n)}" for n, t in contract)
        total = 0
        con.execute("begin")
        try:
            for chunk in pd.read_sql_query(
                f"select {select} from {_q(table)}", db, chunksize=chunk_rows, dtype=object
            ):
                for n, t in contract:
                    if t == "TIMESTAMP":
                        chunk[n] = pd.to_datetime(
                            chunk[n], utc=True, errors="coerce", format="mixed"
                        )
                        chunk[n] = chunk[n].dt.tz_localize(None)
                    elif t == "BIGINT":
                        chunk[n] = pd.to_numeric(chunk[n], errors="coerce").astype("Int64")
                    else:
                        chunk[n] = chunk[n].astype("string")
                con.register("_cs_ledger_chunk", chunk)
                con.execute(
                    f"insert into {LEDGER_SCHEMA}.events by name "
                    f"select {casts} from _cs_ledger_chunk"
                )
                con.unregister("_cs_ledger_chunk")
                total += len(chunk)
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
    except sqlite3.Error as exc:
        raise ReceiveError(f"{path}: cannot read the ledger: {exc}") from exc
    finally:
        db.close()
    return total


def connector_kind(family: str | None) -> str:
    """Braze's two connector kinds: customer behaviour events, and message engagement events."""
    return "customer_behavior" if family == "behaviors" else "message_engagement"


def load_routes(con: duckdb.DuckDBPyConnection, routes: list[dict[str, Any]]) -> int:
    """Replace ``received.routes``: where each Braze workspace's events are expected.

    Each route: ``segment_workspace``, ``segment_source`` (required), ``connector``,
    ``connector_kind``, ``app_group_id``, ``family``, ``currents_event_type`` (null = any).
    """
    columns = [n for n, _ in TABLES[f"{RECEIVED_SCHEMA}.routes"]]
    rows = []
    for i, r in enumerate(routes):
        unknown = set(r) - set(columns) - {"event_types"}
        if unknown:
            raise ReceiveError(f"route #{i + 1}: unknown key(s) {sorted(unknown)}")
        for key in ("segment_workspace", "segment_source"):
            if not r.get(key):
                raise ReceiveError(f"route #{i + 1}: {key} is required")
        kind = r.get("connector_kind")
        if kind is not None and kind not in CONNECTOR_KINDS:
            raise ReceiveError(f"route #{i + 1}: connector_kind {kind!r} not in {CONNECTOR_KINDS}")
        types = r.get("event_types") or [r.get("currents_event_type")]
        for t in types:
            etype = catalogue.resolve(t).event_type if t else None
            rows.append([r.get(c) for c in columns[:4]] + [etype] + [r.get(c) for c in columns[5:]])
    con.execute("begin")
    con.execute(f"delete from {RECEIVED_SCHEMA}.routes")
    if rows:
        con.executemany(
            f"insert into {RECEIVED_SCHEMA}.routes values ({', '.join('?' * len(columns))})", rows
        )
    con.execute("commit")
    return len(rows)


def read_routes_file(path: Path) -> list[dict[str, Any]]:
    """Routes YAML: a list of routes, or ``{routes: [...]}``."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ReceiveError(f"{path}: cannot read routes: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("routes")
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ReceiveError(f"{path}: expected a list of routes (or 'routes:' holding one)")
    return data


def routes_from_connectors(path: Path | None = None) -> list[dict[str, Any]]:
    """Routes from the pusher's connectors file: one per connector, Braze workspace and type."""
    from currents_segment import connectors

    config = connectors.load(path)
    types = catalogue.load()
    routes: list[dict[str, Any]] = []
    for c in config.connectors:
        workspaces: list[str | None] = [None] if c.all_workspaces else list(c.braze_workspaces)
        for app_group_id in workspaces:
            for event_type in c.event_types:
                routes.append(
                    {
                        "connector": c.name,
                        "connector_kind": connectors.kind_of(types[event_type]),
                        "app_group_id": app_group_id,
                        "currents_event_type": event_type,
                        "segment_workspace": c.segment_workspace,
                        "segment_source": c.segment_source,
                    }
                )
    return routes


def emulator_workspaces(config_path: Path) -> dict[str, str]:
    """source slug -> Segment workspace, from an emulator config YAML (``workspaces[].sources``)."""
    import yaml

    try:
        data = yaml.safe_load(Path(config_path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ReceiveError(f"{config_path}: cannot read the emulator config: {exc}") from exc
    out: dict[str, str] = {}
    for i, ws in enumerate(data.get("workspaces") or []):
        name = ws.get("name") if isinstance(ws, dict) else None
        if not name:
            raise ReceiveError(f"{config_path}: workspaces[{i}] has no name")
        for src in ws.get("sources") or []:
            if isinstance(src, dict) and src.get("slug"):
                out[str(src["slug"])] = str(name)
    return out


@dataclass(frozen=True)
class VolumeRequest:
    """A Public API volume fetch for one workspace (the token's)."""

    api_url: str
    token: str = field(repr=False)
    start: datetime
    end: datetime
    requests_per_minute: float = 60.0
    source_names: Mapping[str, str] = field(default_factory=dict)


def run_receive(
    store_dirs: Iterable[Path] = (),
    export_dirs: Iterable[Path] = (),
    warehouse_dbs: Iterable[Path] = (),
    workspace: str | None = None,
    workspaces: Mapping[str, str] | None = None,
    emulator_config: Path | None = None,
    volume: VolumeRequest | None = None,
    routes_file: Path | None = None,
    connectors_file: Path | None = None,
    ledger: bool = True,
    ledger_path: Path | None = None,
    db_path: Path | None = None,
) -> ReceiveSummary:
    """Everything ``currents-segment receive`` does, for the pipeline: load each source, the
    routes and the ledger snapshot. With no source at all, the emulator's default store."""
    mapping = dict(workspaces or {})
    if emulator_config:
        mapping = {**emulator_workspaces(emulator_config), **mapping}
    store_dirs, export_dirs, warehouse_dbs = (
        list(store_dirs),
        list(export_dirs),
        list(warehouse_dbs),
    )
    nothing_given = not (store_dirs or export_dirs or warehouse_dbs or volume)
    if nothing_given and settings.emulator_dir().exists():
        store_dirs = [settings.emulator_dir()]
    con = connect_warehouse(db_path)
    try:
        summary = ReceiveSummary()
        for d in store_dirs:
            summary.merge(receive_directory(con, Path(d), mapping, "emulator", workspace))
        for d in export_dirs:
            summary.merge(receive_directory(con, Path(d), mapping, "file", workspace))
        for f in warehouse_dbs:
            summary.merge(receive_duckdb(con, Path(f), mapping, workspace))
        if volume:
            if not workspace:
                raise ReceiveError("the volume API needs --workspace (the token's workspace)")
            rows = fetch_volumes(volume.api_url, volume.token, volume.start, volume.end,
                                 requests_per_minute=volume.requests_per_minute)  # fmt: skip
            summary.merge(receive_volumes(con, workspace, rows, volume.start, volume.end,
                                          source_names=volume.source_names))  # fmt: skip
        if routes_file or connectors_file:
            routes = read_routes_file(routes_file) if routes_file else []
            if connectors_file:
                routes += routes_from_connectors(connectors_file)
            summary.routes = load_routes(con, routes)
        if ledger:
            summary.ledger_rows = snapshot_ledger(con, ledger_path)
        return summary
    finally:
        con.close()


def _mapping(pairs: Iterable[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        out[key.strip()] = value.strip()
    return out


@click.command()
@click.option(
    "--store",
    "store_dirs",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Emulator store (<dir>/<source>/tracks/*.parquet). Default: the emulator dir.",
)
@click.option(
    "--export",
    "export_dirs",
    type=click.Path(path_type=Path, exists=True),
    multiple=True,
    help="Parquet/CSV export of a Segment warehouse: <dir>/<schema>/tracks/*.parquet|csv.",
)
@click.option(
    "--warehouse-db",
    "warehouse_dbs",
    type=click.Path(path_type=Path, exists=True),
    multiple=True,
    help="A DuckDB file holding Segment warehouse schemas (one per source).",
)
@click.option("--workspace", help="Segment workspace of every source not mapped otherwise.")
@click.option(
    "--source-workspace",
    "source_workspace",
    multiple=True,
    metavar="SOURCE=WORKSPACE",
    help="Segment workspace of one source (repeatable).",
)
@click.option("--volume-api", is_flag=True, help="Fetch GET /events/volume for --workspace.")
@click.option("--api-url", default=VOLUME_API_URL, show_default=True)
@click.option("--start", type=click.DateTime(), help="Volume window start (UTC).")
@click.option("--end", type=click.DateTime(), help="Volume window end (UTC, exclusive).")
@click.option(
    "--source-name",
    "source_names",
    multiple=True,
    metavar="SOURCE_ID=SLUG",
    help="Name a Public API source id (repeatable).",
)
@click.option("--requests-per-minute", type=float, default=60.0, show_default=True)
@click.option(
    "--emulator-config",
    type=click.Path(path_type=Path, exists=True),
    help="Emulator config YAML: maps each source slug to its workspace.",
)
@click.option(
    "--routes",
    "routes_file",
    type=click.Path(path_type=Path, exists=True),
    help="Routes YAML: where each Braze workspace's events are expected (audit mode).",
)
@click.option(
    "--connectors",
    "connectors_file",
    type=click.Path(path_type=Path, exists=True),
    help="The pusher's connectors YAML, used as routes.",
)
@click.option(
    "--ledger/--no-ledger", default=True, show_default=True, help="Snapshot the send ledger."
)
@click.option("--db", "db_path", type=click.Path(path_type=Path), help="Warehouse DuckDB file.")
def cli(
    store_dirs: tuple[Path, ...],
    export_dirs: tuple[Path, ...],
    warehouse_dbs: tuple[Path, ...],
    workspace: str | None,
    source_workspace: tuple[str, ...],
    volume_api: bool,
    api_url: str,
    start: datetime | None,
    end: datetime | None,
    source_names: tuple[str, ...],
    requests_per_minute: float,
    emulator_config: Path | None,
    routes_file: Path | None,
    connectors_file: Path | None,
    ledger: bool,
    db_path: Path | None,
) -> None:
    """Load what Segment holds into the warehouse (schema received)."""
    from rich.console import Console

    console = Console(stderr=True)
    try:
        volume = None
        if volume_api:
            token = os.environ.get(TOKEN_ENV)
            if not token:
                raise ReceiveError(f"--volume-api needs a Public API token in ${TOKEN_ENV}")
            end_ = (end or datetime.now(UTC).replace(tzinfo=None)).replace(tzinfo=UTC)
            start_ = start.replace(tzinfo=UTC) if start else end_ - timedelta(days=7)
            volume = VolumeRequest(api_url, token, start_, end_, requests_per_minute,
                                   _mapping(source_names, "--source-name"))  # fmt: skip
        with console.status("receiving..."):
            summary = run_receive(
                store_dirs=store_dirs, export_dirs=export_dirs, warehouse_dbs=warehouse_dbs,
                workspace=workspace, workspaces=_mapping(source_workspace, "--source-workspace"),
                emulator_config=emulator_config, volume=volume, routes_file=routes_file,
                connectors_file=connectors_file, ledger=ledger, db_path=db_path,
            )  # fmt: skip
    except (ReceiveError, catalogue.CatalogueError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(
        f"received: {summary.rows_loaded} rows loaded, {summary.parts_loaded} parts loaded, "
        f"{summary.parts_skipped} parts already loaded; routes {summary.routes}; "
        f"ledger snapshot {summary.ledger_rows} rows"
    )
    for key, n in sorted(summary.sources.items()):
        console.print(f"  {key}: {n}")
    for name, n in sorted(summary.unknown_event_names.items()):
        console.print(f"  [yellow]not a catalogue event name[/]: {name!r} x{n} (kept, event null)")
