"""DDL of the raw Currents tables: one per event type, typed from the catalogue, plus provenance.

Landing creates them; dbt sources read them. Every supported type's table exists from the first
ingest on (empty until its first file lands), so staging never meets a missing table or column.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from currents_segment import catalogue

SCHEMA = catalogue.RAW_SCHEMA

# Provenance columns on every raw table (see docs/architecture.md).
PROVENANCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_file_id", "BIGINT"),
    ("_row_in_file", "BIGINT"),
    ("_source_file", "VARCHAR"),
    ("_integration_id", "VARCHAR"),
    ("_cluster", "VARCHAR"),
    ("_date_hour", "TIMESTAMP"),
    ("_schema_id", "BIGINT"),
    ("_loaded_at", "TIMESTAMP"),
    ("_is_test_event", "BOOLEAN"),
    ("_event_type", "VARCHAR"),
)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def catalogue_columns(event: catalogue.EventType) -> list[tuple[str, str]]:
    """Every field the type has had (current and removed), as (name, DuckDB type)."""
    return [(f.name, f.duckdb_type) for f in event.fields]


def existing_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [SCHEMA, table],
    ).fetchall()
    return {name: dtype for name, dtype in rows}


def create_table(
    con: duckdb.DuckDBPyConnection, table: str, columns: Iterable[tuple[str, str]]
) -> None:
    """``raw_currents.<table>`` with exactly ``columns`` (provenance included by the caller)."""
    con.execute(f"create schema if not exists {SCHEMA}")
    cols = ", ".join(f"{quote(n)} {t}" for n, t in columns)
    con.execute(f"create table if not exists {SCHEMA}.{quote(table)} ({cols})")


def ensure_table(
    con: duckdb.DuckDBPyConnection, table: str, columns: Iterable[tuple[str, str]]
) -> list[str]:
    """Create ``raw_currents.<table>`` or add the columns it lacks; returns the added names."""
    con.execute(f"create schema if not exists {SCHEMA}")
    wanted = [*columns, *PROVENANCE_COLUMNS]
    have = existing_columns(con, table)
    if not have:
        create_table(con, table, wanted)
        return [n for n, _ in wanted]
    added = []
    for name, dtype in wanted:
        if name not in have:
            con.execute(f"alter table {SCHEMA}.{quote(table)} add column {quote(name)} {dtype}")
            added.append(name)
    return added


def ensure_supported_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create (or complete) the raw table of every supported type."""
    for event in catalogue.supported():
        ensure_table(con, event.table_name, catalogue_columns(event))


# Avro primitive -> DuckDB type, as DuckDB's own read_avro maps them.
_AVRO_PRIMITIVES = {
    "string": "VARCHAR",
    "bytes": "BLOB",
    "int": "INTEGER",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
}


def duckdb_type_for_avro(avro_type: object) -> str:
    """The DuckDB column type of an Avro field type (any type, not only the catalogue's).

    Unsupported event types and fields the catalogue does not know get their columns from
    here, so a raw table of any Currents type can be typed from a file's writer schema. A union
    of several non-null branches has no single column type: it raises ``CatalogueError``.
    """
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            raise catalogue.CatalogueError(f"unsupported Avro union {avro_type!r}")
        return duckdb_type_for_avro(branches[0])
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind == "array":
            return duckdb_type_for_avro(avro_type.get("items")) + "[]"
        if kind == "map":
            return f"MAP(VARCHAR, {duckdb_type_for_avro(avro_type.get('values'))})"
        if kind == "record":
            members = ", ".join(
                f"{quote(f['name'])} {duckdb_type_for_avro(f['type'])}"
                for f in avro_type.get("fields", [])
            )
            return f"STRUCT({members})"
        if kind == "enum":
            return "VARCHAR"
        if kind == "fixed":
            return "BLOB"
        return duckdb_type_for_avro(kind)
    if isinstance(avro_type, str) and avro_type in _AVRO_PRIMITIVES:
        return _AVRO_PRIMITIVES[avro_type]
    raise catalogue.CatalogueError(f"unsupported Avro type {avro_type!r}")
