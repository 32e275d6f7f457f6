"""DuckDB connections, DuckDB's Avro and SQLite extensions loaded offline from their wheels, and
SQL literals for values written into SQL text."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb

# extension -> whether it loaded in this process (None: not tried yet)
_ready: dict[str, bool] = {}


def _ensure(con: duckdb.DuckDBPyConnection, extension: str, wheel_name: str) -> bool:
    """Load a DuckDB extension: already installed (``LOAD``), else from its
    duckdb-extension-* wheel (offline), else ``INSTALL`` from DuckDB's repository."""
    if _ready.get(extension) is False:
        return False

    def from_wheel(c: duckdb.DuckDBPyConnection) -> None:
        from duckdb_extensions import import_extension

        import_extension(wheel_name, con=c)
        c.execute(f"LOAD {extension}")

    def from_repository(c: duckdb.DuckDBPyConnection) -> None:
        c.execute(f"INSTALL {extension}")
        c.execute(f"LOAD {extension}")

    for attempt in (lambda c: c.execute(f"LOAD {extension}"), from_wheel, from_repository):
        try:
            attempt(con)
            _ready[extension] = True
            return True
        except Exception:  # noqa: BLE001 - each way may fail for its own reason; try the next
            continue
    _ready[extension] = False
    return False


def ensure_avro(con: duckdb.DuckDBPyConnection) -> bool:
    """Load DuckDB's Avro extension; True when ``read_avro`` is usable (the
    duckdb-extension-avro wheel works offline). False means callers use the fastavro path."""
    return _ensure(con, "avro", "avro")


def ensure_sqlite(con: duckdb.DuckDBPyConnection) -> bool:
    """Load DuckDB's SQLite extension (``ATTACH ... (TYPE sqlite)``; the
    duckdb-extension-sqlite-scanner wheel works offline); True when it loaded."""
    return _ensure(con, "sqlite", "sqlite_scanner")


def sql_text(value: str) -> str:
    """A SQL string literal (quotes doubled), for values written into SQL text."""
    return "'" + value.replace("'", "''") + "'"


def sql_text_list(values: Iterable[str]) -> str:
    """A VARCHAR[] literal."""
    return "CAST([" + ", ".join(sql_text(str(v)) for v in values) + "] AS VARCHAR[])"


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), read_only=read_only)
