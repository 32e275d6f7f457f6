"""DuckDB connections with the Avro extension available offline where the wheel is installed."""

from __future__ import annotations

from pathlib import Path

import duckdb

_avro_ready: bool | None = None


def ensure_avro(con: duckdb.DuckDBPyConnection) -> bool:
    """Load DuckDB's Avro extension; True when ``read_avro`` is usable.

    Tries ``LOAD avro`` (already installed), then the ``duckdb-extension-avro`` wheel (offline),
    then ``INSTALL avro`` from DuckDB's repository. False means callers use the fastavro path.
    """
    global _avro_ready
    if _avro_ready is False:
        return False
    for attempt in (_load, _install_from_wheel, _install_from_repository):
        try:
            attempt(con)
            _avro_ready = True
            return True
        except Exception:  # noqa: BLE001 - each way may fail for its own reason; try the next
            continue
    _avro_ready = False
    return False


def _load(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("LOAD avro")


def _install_from_wheel(con: duckdb.DuckDBPyConnection) -> None:
    from duckdb_extensions import import_extension

    import_extension("avro", con=con)
    con.execute("LOAD avro")


def _install_from_repository(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("INSTALL avro")
    con.execute("LOAD avro")


_sqlite_ready: bool | None = None


def ensure_sqlite(con: duckdb.DuckDBPyConnection) -> bool:
    """Load DuckDB's SQLite extension (``ATTACH ... (TYPE sqlite)``); True when it loaded.

    Same order as ``ensure_avro``: installed already, the duckdb-extension-sqlite-scanner wheel
    (offline), DuckDB's repository.
    """
    global _sqlite_ready
    if _sqlite_ready is False:
        return False
    for attempt in (
        lambda c: c.execute("LOAD sqlite"),
        _sqlite_from_wheel,
        lambda c: (c.execute("INSTALL sqlite"), c.execute("LOAD sqlite")),
    ):
        try:
            attempt(con)
            _sqlite_ready = True
            return True
        except Exception:  # noqa: BLE001 - each way may fail for its own reason; try the next
            continue
    _sqlite_ready = False
    return False


def _sqlite_from_wheel(con: duckdb.DuckDBPyConnection) -> None:
    from duckdb_extensions import import_extension

    import_extension("sqlite_scanner", con=con)
    con.execute("LOAD sqlite")


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), read_only=read_only)
