"""Helpers for the landing tests: Avro files in Braze's object layout, written with fastavro.

(Named test_landing_* to stay inside the landing tests' files; it holds no tests itself.)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import duckdb
import fastavro

from conftest import SAMPLES, SCHEMAS
from currents_segment import raw_tables

INTEGRATION = "5f3c2a1b9d8e7f6a5b4c3d2e"
CLUSTER = "prod-01"
PROVENANCE = [name for name, _ in raw_tables.PROVENANCE_COLUMNS]


def schema_of(event_type: str) -> dict:
    return json.loads((SCHEMAS / f"{event_type}.avsc").read_text())


def sample_record(event_type: str) -> dict:
    with (SAMPLES / f"{event_type}.avro").open("rb") as fh:
        return next(iter(fastavro.reader(fh)))


def records(event_type: str, n: int, start: int = 0, **overrides: object) -> list[dict]:
    """``n`` copies of Braze's sample record with distinct ids (the samples share one id)."""
    base = sample_record(event_type)
    out = []
    for i in range(start, start + n):
        rec = copy.deepcopy(base)
        rec["id"] = f"{event_type}-{i:08d}"
        rec["time"] = 2_000_000_000 + i
        rec.update(overrides)
        out.append(rec)
    return out


def braze_path(
    root: Path,
    event_type: str,
    *,
    date_hour: str = "2026-11-01-09",
    schema_id: int = 1701,
    partition: int = 0,
    offset: int = 0,
    cluster: str = CLUSTER,
    integration: str = INTEGRATION,
) -> Path:
    prefix = f"dataexport.{cluster}.S3.integration.{integration}"
    return (
        root
        / prefix
        / f"event_type={event_type}"
        / f"date={date_hour}"
        / str(schema_id)
        / "zone-a"
        / f"{prefix}+{partition}+{offset}.avro"
    )


def write_avro(
    path: Path,
    schema: dict,
    rows: list[dict],
    codec: str = "null",
    sync_interval: int = 16000,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fastavro.writer(fh, schema, rows, codec=codec, sync_interval=sync_interval)
    return path


def read_fastavro(path: Path) -> list[dict]:
    with path.open("rb") as fh:
        return list(fastavro.reader(fh))


def _fetch(db: Path | duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    con = db if isinstance(db, duckdb.DuckDBPyConnection) else duckdb.connect(str(db), True)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        if con is not db:
            con.close()


def landed(db: Path | duckdb.DuckDBPyConnection, table: str, where: str = "true") -> list[dict]:
    """Rows of raw_currents.<table> in landing order, as dicts."""
    return _fetch(
        db, f"select * from raw_currents.{table} where {where} order by _file_id, _row_in_file"
    )


def manifest(db: Path | duckdb.DuckDBPyConnection) -> list[dict]:
    return _fetch(db, "select * from landing.files order by file_id")


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()
