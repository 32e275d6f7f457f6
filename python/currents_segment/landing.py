"""``currents-segment ingest``: land Braze Currents Avro exports in the DuckDB warehouse.

Every Avro file found under the sources (local directories or files, ``s3://bucket/prefix``)
lands once, in one transaction with its row in the ``landing.files`` manifest, into
``raw_currents.<table_name_for(event_type)>`` with provenance columns (docs/architecture.md,
"Landing"). Files already in the manifest with the same fingerprint are skipped, so a run can be
repeated and picks up only new files.

Reading: DuckDB's native ``read_avro`` over groups of files that share one writer schema (it has
no ``union_by_name`` and takes the first file's columns), inserted by column name. A file's
record count is taken from its Avro block headers before it is read and checked against the rows
that land, because ``read_avro`` reads a truncated or corrupt file partially without an error.
fastavro reads where the extension cannot load, for codecs the extension lacks, and on request
(``--reader fastavro``), with the same SQL and the same result.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click
import duckdb

from currents_segment import catalogue, duck, raw_tables, settings

MANIFEST_SCHEMA = "landing"
MANIFEST = f"{MANIFEST_SCHEMA}.files"
READERS = ("auto", "duckdb", "fastavro")
READER_ENV = "CURRENTS_SEGMENT_READER"
WORKERS_ENV = "CURRENTS_SEGMENT_INGEST_WORKERS"
COMPRESSION_ENV = "CURRENTS_SEGMENT_INGEST_DISABLED_COMPRESSION"
DEFAULT_DISABLED_COMPRESSION = "fsst"

LOADED = "loaded"
LOADED_UNSUPPORTED = "loaded_unsupported"
LOADED_SCHEMA_DRIFT = "loaded_schema_drift"
FAILED = "failed"

# Codecs DuckDB's avro extension 1.5.5 reads; fastavro reads the rest (bzip2, xz, ...).
DUCKDB_CODECS = frozenset({"null", "deflate", "snappy"})
# read_avro expands glob patterns: a path holding one is read with fastavro instead.
_GLOB_CHARS = re.compile(r"[*?\[\]{}]")

# One read_avro call (and one transaction) takes at most this many files / records.
_FILES_PER_READ = 4096
_RECORDS_PER_READ = 4_000_000
_FASTAVRO_RECORDS_PER_READ = 250_000
# A read of many files is several INSERT statements (one read_avro per file) in its transaction.
_FILES_PER_STATEMENT = 128
# Files planned (inspected, downloaded from S3) at a time, which bounds the temporary disk.
_FILES_PER_CHUNK = 4096
_S3_FILES_PER_CHUNK = 256

_MANIFEST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("file_id", "BIGINT"),
    ("path", "VARCHAR"),
    ("size_bytes", "BIGINT"),
    ("fingerprint", "VARCHAR"),
    ("event_type", "VARCHAR"),
    ("table_name", "VARCHAR"),
    ("schema_id", "BIGINT"),
    ("integration_id", "VARCHAR"),
    ("cluster", "VARCHAR"),
    ("date_hour", "TIMESTAMP"),
    ("codec", "VARCHAR"),
    ("reader", "VARCHAR"),
    ("rows_loaded", "BIGINT"),
    ("status", "VARCHAR"),
    ("error", "VARCHAR"),
    ("loaded_at", "TIMESTAMP"),
    # Extensions of the contract (additive): what the file's blocks declare, and test events.
    ("records_declared", "BIGINT"),
    ("test_events", "BIGINT"),
)

# Braze's "Send Test Events" placeholder records carry a UUID in `timezone`.
_UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class IngestError(RuntimeError):
    """The run could not start or go on (database, reader, configuration): exit code 2."""


class AvroFileError(ValueError):
    """A file is not a complete Avro object container file; the message says why."""


# --------------------------------------------------------------------------------------------
# Object layout: what the path says about a file


@dataclass(frozen=True)
class Location:
    """What an export path tells about its file (every part optional: naming may change)."""

    event_type: str | None = None
    date_hour: datetime | None = None
    schema_id: int | None = None
    integration_id: str | None = None
    cluster: str | None = None


_INTEGRATION = re.compile(
    r"dataexport\.(?:(?P<cluster>[^./+]+)\.)?(?:S3|AzureBlob|GCS)\.integration\.(?P<id>[^./+]+)"
)
_DATE = re.compile(r"date=(\d{4})-(\d{2})-(\d{2})(?:-(\d{2}))?")


def parse_location(path: str) -> Location:
    """Event type, ``date=`` hour, schema id, integration id and cluster from an export path.

    ``.../dataexport.<cluster>.S3.integration.<id>/event_type=<type>/date=<YYYY-MM-DD-HH>/
    <schema_id>/<zone>/dataexport.<cluster>.S3.integration.<id>+<partition>+<offset>.avro`` and
    the 2017 form ``dataexport.S3.integration.<24 hex>+<partition>+<offset>.avro``.
    """
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    event_type = date_hour = schema_id = None
    for i, part in enumerate(parts):
        if part.startswith("event_type=") and len(part) > len("event_type="):
            event_type = part[len("event_type=") :]
        match = _DATE.fullmatch(part)
        if match:
            year, month, day, hour = match.groups()
            try:
                date_hour = datetime(int(year), int(month), int(day), int(hour or 0))
            except ValueError:
                date_hour = None
            following = parts[i + 1] if i + 1 < len(parts) - 1 else ""
            schema_id = int(following) if following.isdigit() else None
    integration_id = cluster = None
    # The file name first (it always carries the integration), then the folders, deepest first.
    for part in reversed(parts):
        match = _INTEGRATION.search(part)
        if match:
            integration_id, cluster = match.group("id"), match.group("cluster")
            break
    return Location(event_type, date_hour, schema_id, integration_id, cluster)


def event_type_from_schema(schema: object) -> str | None:
    """``dataexport.S3.inner.users.messages.email`` + ``Send`` -> ``users.messages.email.Send``."""
    if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
        return None
    name, namespace = schema["name"], schema.get("namespace")
    full = name if "." in name or not namespace else f"{namespace}.{name}"
    if ".inner." in full:
        full = full.split(".inner.", 1)[1]
    elif full.startswith("dataexport."):
        full = full.split(".", 2)[2] if full.count(".") >= 2 else ""
    return full if "." in full else None


# --------------------------------------------------------------------------------------------
# Avro container files: the header and the block structure, read without decoding records

_MAGIC = b"Obj\x01"


@dataclass(frozen=True)
class AvroFile:
    schema: dict
    codec: str
    records: int  # sum of the record counts its blocks declare
    blocks: int
    schema_json: bytes = b""  # the header's schema as written


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode one zig-zag varint at ``pos``; IndexError when the buffer ends first."""
    shift = acc = 0
    while True:
        byte = buf[pos]
        pos += 1
        acc |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (acc >> 1) ^ -(acc & 1), pos
        shift += 7
        if shift > 63:
            raise AvroFileError("corrupt: malformed variable-length integer")


def _parse_header(buf: bytes) -> tuple[dict[str, bytes], bytes, int]:
    """(metadata, sync marker, header length); IndexError when ``buf`` is too short."""
    pos = len(_MAGIC)
    meta: dict[str, bytes] = {}
    while True:
        count, pos = _read_long(buf, pos)
        if count == 0:
            break
        if count < 0:  # a negative count is followed by the block's byte size
            count = -count
            _, pos = _read_long(buf, pos)
        for _ in range(count):
            klen, pos = _read_long(buf, pos)
            key = buf[pos : pos + klen]
            pos += klen
            vlen, pos = _read_long(buf, pos)
            value = buf[pos : pos + vlen]
            pos += vlen
            if klen < 0 or vlen < 0 or pos > len(buf):
                raise IndexError
            meta[key.decode("utf-8", "replace")] = value
    sync = buf[pos : pos + 16]
    if len(sync) < 16:
        raise IndexError
    return meta, sync, pos + 16


def inspect_avro(path: Path) -> AvroFile:
    """Writer schema, codec and record count of an Avro file, checking every block's framing.

    Raises AvroFileError for anything but a complete container file (bad magic, truncated
    header or block, sync marker mismatch) and OSError when the file cannot be read.
    """
    size = path.stat().st_size
    if size == 0:
        raise AvroFileError("not an Avro file: empty (0 bytes)")
    with path.open("rb") as fh:
        buf = fh.read(65536)
        if buf[:4] != _MAGIC:
            raise AvroFileError("not an Avro object container file (bad magic bytes)")
        while True:
            try:
                meta, sync, pos = _parse_header(buf)
                break
            except IndexError:
                if len(buf) >= size:
                    raise AvroFileError("truncated: the file ends inside its header") from None
                fh.seek(0)
                buf = fh.read(len(buf) * 4)
        try:
            schema = json.loads(meta["avro.schema"])
        except (KeyError, ValueError) as exc:
            raise AvroFileError(f"corrupt header: no readable avro.schema ({exc})") from None
        codec = meta.get("avro.codec", b"null").decode("utf-8", "replace") or "null"
        records = blocks = 0
        while pos < size:
            fh.seek(pos)
            head = fh.read(20)
            try:
                count, used = _read_long(head, 0)
                length, used = _read_long(head, used)
            except IndexError:
                raise AvroFileError(
                    f"truncated: block {blocks + 1} header cut at byte {pos}"
                ) from None
            if count < 0 or length < 0:
                raise AvroFileError(f"corrupt: block {blocks + 1} at byte {pos} has bad counts")
            end = pos + used + length
            if end + 16 > size:
                raise AvroFileError(
                    f"truncated: block {blocks + 1} at byte {pos} needs {end + 16 - size} "
                    f"bytes more than the file's {size}"
                )
            fh.seek(end)
            if fh.read(16) != sync:
                raise AvroFileError(
                    f"corrupt: sync marker mismatch after block {blocks + 1} (byte {end})"
                )
            records += count
            blocks += 1
            pos = end + 16
    return AvroFile(
        schema=schema,
        codec=codec,
        records=records,
        blocks=blocks,
        schema_json=meta["avro.schema"],
    )


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class FileResult:
    file_id: int
    path: str
    event_type: str | None
    table_name: str | None
    status: str
    rows_loaded: int
    test_events: int
    reader: str | None
    error: str | None


@dataclass
class Problem:
    path: str
    kind: str  # failed | changed | unsupported | schema_drift | source
    message: str
    event_type: str | None = None


@dataclass
class IngestResult:
    db_path: Path
    files: list[FileResult] = field(default_factory=list)  # files this run recorded
    problems: list[Problem] = field(default_factory=list)
    already_landed: int = 0  # in the manifest with the same fingerprint: skipped
    previously_failed: int = 0  # failed in an earlier run, same fingerprint: not retried
    ignored: list[str] = field(default_factory=list)  # not Avro by name (markers, etc.)

    @property
    def clean(self) -> bool:
        return not self.problems

    @property
    def rows_per_type(self) -> dict[str, int]:
        rows: Counter[str] = Counter()
        for f in self.files:
            if f.status != FAILED and f.event_type:
                rows[f.event_type] += f.rows_loaded
        return dict(sorted(rows.items()))

    @property
    def test_events_per_type(self) -> dict[str, int]:
        rows: Counter[str] = Counter()
        for f in self.files:
            if f.test_events and f.event_type:
                rows[f.event_type] += f.test_events
        return dict(sorted(rows.items()))

    @property
    def files_by_status(self) -> dict[str, int]:
        return dict(Counter(f.status for f in self.files))

    def to_json(self) -> dict:
        return {
            "db_path": str(self.db_path),
            "clean": self.clean,
            "files_by_status": self.files_by_status,
            "rows_per_type": self.rows_per_type,
            "test_events_per_type": self.test_events_per_type,
            "already_landed": self.already_landed,
            "previously_failed": self.previously_failed,
            "ignored": self.ignored,
            "problems": [asdict(p) for p in self.problems],
            "files": [asdict(f) for f in self.files],
        }


# --------------------------------------------------------------------------------------------
# Discovery


@dataclass
class SourceFile:
    path: str  # what the manifest and _source_file say: absolute path or s3:// URL
    size: int | None
    fingerprint: str  # mtime_ns:<n> locally, etag:<etag> on S3
    local: Path | None = None  # where it is read from (set for S3 once downloaded)
    s3_key: tuple[str, str] | None = None  # (bucket, key)
    error: str | None = None  # why it could not be fetched


def _looks_like_avro(name: str) -> bool:
    return name.lower().endswith(".avro")


def _discover_local(source: str, result: IngestResult) -> list[SourceFile]:
    root = Path(source).expanduser()
    if not root.exists():
        result.problems.append(Problem(source, "source", "source path does not exist"))
        return []
    # Absolute, but symlinks kept: the manifest records the path the way the user names it.
    root = Path(os.path.abspath(root))
    found: list[SourceFile] = []

    def add(path: Path) -> None:
        try:
            stat = path.stat()
        except OSError as exc:  # a dangling link, a vanished file: recorded as failed
            reason = f"unreadable: {exc.strerror or exc}"
            found.append(SourceFile(str(path), None, "unreadable", None, error=reason))
            return
        found.append(SourceFile(str(path), stat.st_size, f"mtime_ns:{stat.st_mtime_ns}", path))

    if root.is_file():
        add(root)
        return found

    def walk_error(exc: OSError) -> None:
        result.problems.append(
            Problem(exc.filename or source, "source", f"cannot list: {exc.strerror}")
        )

    for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if _looks_like_avro(name):
                add(path)
            else:
                result.ignored.append(str(path))
    return found


def _s3_client(endpoint: str | None):  # noqa: ANN202 - boto3 clients are untyped
    import boto3

    endpoint = (
        endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    return boto3.client("s3", endpoint_url=endpoint or None)


def _discover_s3(source: str, client, result: IngestResult) -> list[SourceFile]:  # noqa: ANN001
    bucket, _, prefix = source[len("s3://") :].partition("/")
    if not bucket:
        result.problems.append(Problem(source, "source", "no bucket in the s3:// URL"))
        return []
    found: list[SourceFile] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                url = f"s3://{bucket}/{key}"
                if key.endswith("/"):
                    continue  # a folder marker, not an object
                if not _looks_like_avro(key):
                    result.ignored.append(url)
                    continue
                etag = str(obj.get("ETag", "")).strip('"')
                found.append(SourceFile(url, int(obj["Size"]), f"etag:{etag}", None, (bucket, key)))
    except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; all mean "cannot list"
        result.problems.append(Problem(source, "source", f"cannot list: {_short(exc)}"))
    return found


# --------------------------------------------------------------------------------------------
# Planning: what each new file is and where it goes


@dataclass
class _Planned:
    source: SourceFile
    file_id: int
    location: Location
    codec: str | None = None
    records: int = 0
    event_type: str | None = None
    table: str | None = None
    fields: tuple[tuple[str, str], ...] = ()  # (name, DuckDB type) from the writer schema
    table_columns: tuple[tuple[str, str], ...] = ()  # what the raw table must have
    signature: str = ""
    status: str = FAILED
    note: str | None = None  # the error, or why a landed file is not plain "loaded"
    reader: str | None = None
    rows_loaded: int = 0
    test_events: int = 0

    def fail(self, reason: str) -> _Planned:
        self.status, self.note = FAILED, reason
        return self


@dataclass(frozen=True)
class _SchemaPlan:
    error: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    signature: str = ""
    event_type: str | None = None
    table: str | None = None
    table_columns: tuple[tuple[str, str], ...] = ()
    status: str = FAILED
    note: str | None = None


_schema_plans: dict[tuple[bytes, str | None], _SchemaPlan] = {}


def _schema_plan(schema_json: bytes, folder_type: str | None, schema: object) -> _SchemaPlan:
    key = (schema_json, folder_type)
    plan = _schema_plans.get(key)
    if plan is None:
        plan = _schema_plans[key] = _plan_schema(folder_type, schema)
    return plan


def _plan_schema(folder_type: str | None, schema: object) -> _SchemaPlan:
    """Where files of this writer schema (in this ``event_type=`` folder) land, and how."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return _SchemaPlan("the writer schema is not an Avro record")
    schema_type = event_type_from_schema(schema)
    if (
        folder_type
        and schema_type
        and (catalogue.table_name_for(folder_type) != catalogue.table_name_for(schema_type))
    ):
        return _SchemaPlan(
            f"event_type={folder_type} folder holds a file whose schema is {schema_type}"
        )
    event_type = folder_type or schema_type
    if not event_type:
        return _SchemaPlan(
            f"unknown event type: no event_type= folder and the schema name "
            f"{schema.get('name')!r} does not name one"
        )
    fields: list[tuple[str, str]] = []
    for f in schema.get("fields", []):
        try:
            fields.append((f["name"], raw_tables.duckdb_type_for_avro(f["type"])))
        except (catalogue.CatalogueError, KeyError, TypeError) as exc:
            return _SchemaPlan(f"field {f.get('name')!r}: {exc}")
    signature = json.dumps(
        [[f.get("name"), f.get("type")] for f in schema["fields"]], sort_keys=True
    )
    if not catalogue.is_supported(event_type):
        return _SchemaPlan(
            None,
            tuple(fields),
            signature,
            event_type,
            catalogue.table_name_for(event_type),
            tuple(fields),
            LOADED_UNSUPPORTED,
            f"not a supported event type: landed in {raw_tables.SCHEMA}."
            f"{catalogue.table_name_for(event_type)}, not sent to Segment",
        )
    event = catalogue.resolve(event_type)
    known = {f.name: f.duckdb_type for f in event.fields}
    unknown = [n for n, _ in fields if n not in known]
    retyped = [f"{n} ({t}, catalogue {known[n]})" for n, t in fields if known.get(n, t) != t]
    notes = []
    if unknown:
        notes.append("fields not in the catalogue: " + ", ".join(unknown))
    if retyped:
        notes.append("fields typed differently: " + ", ".join(retyped))
    return _SchemaPlan(
        None,
        tuple(fields),
        signature,
        event.event_type,
        event.table_name,
        (*raw_tables.catalogue_columns(event), *((n, t) for n, t in fields if n in unknown)),
        LOADED_SCHEMA_DRIFT if notes else LOADED,
        "; ".join(notes) or None,
    )


def _plan(src: SourceFile, file_id: int, native: bool, reader_mode: str) -> _Planned:
    planned = _Planned(src, file_id, parse_location(src.path))
    if src.local is None:
        return planned.fail(src.error or "unreadable: not fetched")
    try:
        info = inspect_avro(src.local)
    except OSError as exc:
        return planned.fail(f"unreadable: {exc.strerror or exc}")
    except AvroFileError as exc:
        return planned.fail(str(exc))
    planned.codec, planned.records = info.codec, info.records
    # Files of one writer schema and folder plan alike: worked out once per schema.
    plan = _schema_plan(info.schema_json, planned.location.event_type, info.schema)
    if plan.error:
        return planned.fail(plan.error)
    planned.fields, planned.signature = plan.fields, plan.signature
    planned.event_type, planned.table = plan.event_type, plan.table
    planned.table_columns, planned.status, planned.note = plan.table_columns, plan.status, plan.note
    readable_natively = info.codec in DUCKDB_CODECS and not _GLOB_CHARS.search(str(src.local))
    if native and readable_natively:
        planned.reader = "duckdb"
    elif reader_mode == "duckdb":
        why = (
            f"codec {info.codec!r}"
            if info.codec not in DUCKDB_CODECS
            else "a path with glob characters"
        )
        return planned.fail(f"DuckDB's read_avro cannot read {why}; use --reader auto")
    else:
        planned.reader = "fastavro"
    return planned


# --------------------------------------------------------------------------------------------
# Loading


def _ensure_manifest(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"create schema if not exists {MANIFEST_SCHEMA}")
    cols = ", ".join(f"{name} {dtype}" for name, dtype in _MANIFEST_COLUMNS)
    con.execute(f"create table if not exists {MANIFEST} ({cols})")
    have = {
        r[0]
        for r in con.execute(
            # No Python parameters on the path of a run with nothing new: DuckDB imports
            # pandas (seconds) the first time it binds one.
            "select column_name from information_schema.columns "
            f"where table_schema = '{MANIFEST_SCHEMA}' and table_name = 'files'"
        ).fetchall()
    }
    for name, dtype in _MANIFEST_COLUMNS:
        if name not in have:  # a manifest from an older version: extend it
            con.execute(f"alter table {MANIFEST} add column {name} {dtype}")
    _ensure_meta(con)


def _ensure_meta(con: duckdb.DuckDBPyConnection) -> None:
    """The per-connection temp table of a read's file provenance."""
    cols = ", ".join(f"{name} {dtype}" for name, dtype in _META_COLUMNS)
    con.execute(f"create temp table if not exists _cs_meta ({cols})")


# Per-file provenance of one read, joined to the rows by the path read_avro reports.
_META_COLUMNS: tuple[tuple[str, str], ...] = (
    ("read_path", "VARCHAR"),
    ("file_id", "BIGINT"),
    ("row_offset", "BIGINT"),
    ("source_file", "VARCHAR"),
    ("integration_id", "VARCHAR"),
    ("cluster", "VARCHAR"),
    ("date_hour", "TIMESTAMP"),
    ("schema_id", "BIGINT"),
    ("loaded_at", "TIMESTAMP"),
    ("event_type", "VARCHAR"),
)


def _manifest_row(p: _Planned, loaded_at: datetime | None) -> tuple:
    loc = p.location
    return (
        p.file_id,
        p.source.path,
        p.source.size,
        p.source.fingerprint,
        p.event_type or loc.event_type,
        p.table,
        loc.schema_id,
        loc.integration_id,
        loc.cluster,
        loc.date_hour,
        p.codec,
        p.reader,
        p.rows_loaded,
        p.status,
        p.note,
        loaded_at,
        p.records if p.codec is not None else None,
        p.test_events,
    )


def _insert_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[tuple],
) -> None:
    """Insert Python rows in one statement: a typed list per column, unnested.

    (``executemany`` costs about a millisecond a row here; this is one statement.)
    """
    if not rows:
        return
    values = [list(column) for column in zip(*rows, strict=True)]
    select = ", ".join(f"unnest(${i + 1}::{dtype}[])" for i, (_, dtype) in enumerate(columns))
    names = ", ".join(name for name, _ in columns)
    con.execute(f"insert into {table} ({names}) select {select}", values)


def _record(con: duckdb.DuckDBPyConnection, planned: Sequence[_Planned], when: datetime) -> None:
    _insert_rows(
        con,
        MANIFEST,
        _MANIFEST_COLUMNS,
        [_manifest_row(p, when if p.status != FAILED else None) for p in planned],
    )


class _FilesFailed(RuntimeError):
    """Some files of a read are bad (file_id -> reason); the others can be read again."""

    def __init__(self, reasons: dict[int, str], note: str = "") -> None:
        super().__init__("; ".join(reasons.values()) or note)
        self.reasons = reasons


def _test_flag(names: set[str]) -> str:
    """SQL flagging Braze test events (see the module constants) in read ``r``."""
    if "timezone" not in names:
        return "false"
    # The LIKE shape check is cheap and rules out almost every row before the regex runs.
    return (
        "coalesce(cast(r.timezone as VARCHAR) like '________-____-____-____-____________' "
        f"and regexp_full_match(cast(r.timezone as VARCHAR), '{_UUID_PATTERN}'), false)"
    )


def _insert_sql(group: Sequence[_Planned], source_sql: str, cast: bool) -> str:
    first = group[0]
    names = {n for n, _ in first.fields}
    select = [
        f"cast(r.{raw_tables.quote(n)} as {t}) as {raw_tables.quote(n)}"
        if cast
        else f"r.{raw_tables.quote(n)}"
        for n, t in first.fields
    ]
    test_flag = _test_flag(names)
    return (
        f"insert into {raw_tables.SCHEMA}.{raw_tables.quote(first.table or '')} by name "
        f"select {', '.join(select)}, m.file_id as _file_id, "
        "r._cs_row - m.row_offset as _row_in_file, m.source_file as _source_file, "
        "m.integration_id as _integration_id, m.cluster as _cluster, "
        "m.date_hour as _date_hour, m.schema_id as _schema_id, m.loaded_at as _loaded_at, "
        f"{test_flag} as _is_test_event, m.event_type as _event_type "
        f"from {source_sql} r join _cs_meta m on r._cs_file = m.read_path"
    )


def _stage_meta(
    con: duckdb.DuckDBPyConnection, group: Sequence[_Planned], loaded_at: datetime
) -> None:
    con.execute("delete from _cs_meta")
    offset, rows = 0, []
    for p in group:
        loc = p.location
        rows.append(
            (
                str(p.source.local),
                p.file_id,
                offset,
                p.source.path,
                loc.integration_id,
                loc.cluster,
                loc.date_hour,
                loc.schema_id,
                loaded_at,
                p.event_type,
            )
        )
        offset += p.records
    _insert_rows(con, "_cs_meta", _META_COLUMNS, rows)


def _check_counts(con: duckdb.DuckDBPyConnection, group: Sequence[_Planned]) -> None:
    """Rows landed per file must equal the records its blocks declare, numbered 0..n-1."""
    table = f"{raw_tables.SCHEMA}.{raw_tables.quote(group[0].table or '')}"
    ids = [p.file_id for p in group]
    got = {
        row[0]: row[1:]
        for row in con.execute(
            "select _file_id, count(*), count(*) filter (where _is_test_event), "
            f"min(_row_in_file), max(_row_in_file) from {table} "
            "where _file_id between ? and ? group by _file_id",
            [min(ids), max(ids)],
        ).fetchall()
    }
    bad: dict[int, str] = {}
    misnumbered = False
    for p in group:
        rows, tests, low, high = got.get(p.file_id, (0, 0, None, None))
        if rows != p.records:
            bad[p.file_id] = (
                f"corrupt: read_avro read {rows} of the {p.records} records its blocks declare"
            )
        elif rows and (low, high) != (0, rows - 1):
            # Each file numbers its own records, so this should not happen; if it does, the
            # group is split until the file whose positions are wrong fails alone.
            misnumbered = True
        p.rows_loaded, p.test_events = rows, tests
    if bad or misnumbered:
        raise _FilesFailed(bad, "record positions did not come out in file order")


def _sql_literal(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return f"cast('{value.isoformat(sep=' ')}' as TIMESTAMP)"
    if isinstance(value, int):
        return str(value)
    return duck.sql_text(str(value))


def _native_sql(group: Sequence[_Planned], loaded_at: datetime) -> str:
    """One read_avro per file, its provenance as constants and its own row numbers.

    (Cheaper than one read_avro over the list joined back to the provenance by file name:
    no per-row file name to carry and join, and a short file cannot shift its neighbours'
    record positions.)
    """
    first = group[0]
    names = {n for n, _ in first.fields}
    branches = []
    for p in group:
        loc = p.location
        provenance = {
            "_file_id": p.file_id,
            "_source_file": p.source.path,
            "_integration_id": loc.integration_id,
            "_cluster": loc.cluster,
            "_schema_id": loc.schema_id,
            "_event_type": p.event_type,
        }
        consts = ", ".join(
            f"cast({_sql_literal(v)} as {t}) as {k}"
            for k, v in provenance.items()
            for t in [("BIGINT" if k in ("_file_id", "_schema_id") else "VARCHAR")]
        )
        branches.append(
            f"select *, row_number() over () - 1 as _row_in_file, {consts}, "
            f"{_sql_literal(loc.date_hour)} as _date_hour "
            f"from read_avro({_sql_literal(str(p.source.local))})"
        )
    select = [f"r.{raw_tables.quote(n)}" for n, _ in first.fields]
    return (
        f"insert into {raw_tables.SCHEMA}.{raw_tables.quote(first.table or '')} by name "
        f"select {', '.join(select)}, r._file_id, r._row_in_file, r._source_file, "
        "r._integration_id, r._cluster, r._date_hour, r._schema_id, "
        f"{_sql_literal(loaded_at)} as _loaded_at, {_test_flag(names)} as _is_test_event, "
        f"r._event_type from ({' union all '.join(branches)}) r"
    )


def _load_native(
    con: duckdb.DuckDBPyConnection, group: Sequence[_Planned], loaded_at: datetime
) -> None:
    for start in range(0, len(group), _FILES_PER_STATEMENT):
        con.execute(_native_sql(group[start : start + _FILES_PER_STATEMENT], loaded_at))


def _read_fastavro(p: _Planned) -> dict[str, list]:
    import fastavro

    names = [n for n, _ in p.fields]
    with (p.source.local or Path()).open("rb") as fh:
        records = list(fastavro.reader(fh))
    if len(records) != p.records:
        raise ValueError(f"read {len(records)} of the {p.records} records its blocks declare")
    return {n: [r.get(n) for r in records] for n in names}


def _load_fastavro(con: duckdb.DuckDBPyConnection, group: Sequence[_Planned]) -> None:
    import pandas as pd

    columns: dict[str, list] = {n: [] for n, _ in group[0].fields}
    files: list[str] = []
    bad: dict[int, str] = {}
    for p in group:
        try:
            data = _read_fastavro(p)
        except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds on bad data
            bad[p.file_id] = f"corrupt: fastavro: {_short(exc)}"
            continue
        for name, values in data.items():
            columns[name].extend(values)
        files.extend([str(p.source.local)] * p.records)
    if bad:
        raise _FilesFailed(bad)
    frame = pd.DataFrame(
        {
            **{n: pd.Series(v, dtype=object) for n, v in columns.items()},
            "_cs_file": pd.Series(files, dtype=object),
            "_cs_row": pd.Series(range(len(files)), dtype="int64"),
        }
    )
    # Object columns are typed by sampling: look at every value, so a long run of nulls
    # ahead of the first value cannot mistype a column.
    con.execute(f"set pandas_analyze_sample = {max(len(frame), 1000)}")
    con.register("_cs_frame", frame)
    try:
        con.execute(_insert_sql(group, "_cs_frame", cast=True))
    finally:
        con.unregister("_cs_frame")


def _land_group(con: duckdb.DuckDBPyConnection, group: Sequence[_Planned]) -> None:
    """All files of ``group`` with their manifest rows in one transaction, or none of them."""
    loaded_at = datetime.now(UTC).replace(tzinfo=None)
    con.begin()
    try:
        if group[0].reader == "duckdb":
            _load_native(con, group, loaded_at)
        else:
            _stage_meta(con, group, loaded_at)
            _load_fastavro(con, group)
        _check_counts(con, group)
        _record(con, group, loaded_at)
        con.commit()
    except BaseException:
        con.rollback()
        for p in group:
            p.rows_loaded = p.test_events = 0
        raise


def _land(con: duckdb.DuckDBPyConnection, group: Sequence[_Planned]) -> list[_Planned]:
    """Land a group; when it fails, only its bad files fail and the others still land."""
    try:
        _land_group(con, group)
        return list(group)
    except _FilesFailed as exc:
        bad = [p for p in group if p.file_id in exc.reasons]
        if bad:
            for p in bad:
                p.fail(exc.reasons[p.file_id])
            _record(con, bad, datetime.now(UTC).replace(tzinfo=None))
            rest = [p for p in group if p.file_id not in exc.reasons]
            return bad + (_land(con, rest) if rest else [])
        error: Exception = exc
    except (duckdb.Error, OSError, ValueError, EOFError, IndexError) as exc:
        error = exc
    if len(group) == 1:
        group[0].fail(_short(error))
        _record(con, group, datetime.now(UTC).replace(tzinfo=None))
        return list(group)
    # A read error does not say which file: halve the group until it does.
    half = len(group) // 2
    return _land(con, group[:half]) + _land(con, group[half:])


def _workers() -> int:
    """Reads run side by side on this many connections, one core each (see ``_tune``);
    ``CURRENTS_SEGMENT_INGEST_WORKERS`` overrides."""
    env = os.environ.get(WORKERS_ENV)
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise IngestError(f"{WORKERS_ENV}={env!r} is not a number") from None
    return max(1, min(8, os.cpu_count() or 1))


def _compression_setting() -> str:
    value = os.environ.get(COMPRESSION_ENV, DEFAULT_DISABLED_COMPRESSION).strip()
    if not re.fullmatch(r"[a-z_]*(,[a-z_]+)*", value):
        raise IngestError(
            f"{COMPRESSION_ENV}={value!r} is not a comma-separated list of DuckDB "
            "compression methods (e.g. 'fsst', or '' for all)"
        )
    return value


def _tune(con: duckdb.DuckDBPyConnection) -> None:
    """Settings for the length of one ingest run (``_untune`` puts them back).

    One DuckDB thread per query with the reads spread over ``_workers()`` connections: a
    read numbers its rows per file, which keeps each query on one core anyway, and DuckDB's
    own threads on top of the workers only contend (measured: about 30% more CPU per event).
    FSST string compression off while landing: its analysis and encoding were about a fifth
    of the CPU of a run; the raw tables take about 1.7 times the disk instead (docs/ingest.md).
    """
    con.execute("set threads = 1")
    con.execute(f"set disabled_compression_methods = '{_compression_setting()}'")


def _untune(con: duckdb.DuckDBPyConnection) -> None:
    # Checkpoint first: what is still in the WAL is compressed under these settings.
    with contextlib.suppress(duckdb.Error):
        con.execute("checkpoint")
    for name in ("threads", "disabled_compression_methods"):
        # The connection may be unusable after a failed run.
        with contextlib.suppress(duckdb.Error):
            con.execute(f"reset {name}")


def _land_all(
    con: duckdb.DuckDBPyConnection, groups: Sequence[list[_Planned]]
) -> Iterator[list[_Planned]]:
    """Land every group, in order of ``groups``; each group is its own transaction."""
    workers = min(_workers(), len(groups))
    if workers <= 1:
        for group in groups:
            yield _land(con, group)
        return
    from concurrent.futures import ThreadPoolExecutor
    from queue import SimpleQueue

    cursors: SimpleQueue[duckdb.DuckDBPyConnection] = SimpleQueue()
    opened = [con.cursor() for _ in range(workers)]
    for cursor in opened:
        _ensure_meta(cursor)
        cursors.put(cursor)

    def land(group: list[_Planned]) -> list[_Planned]:
        cursor = cursors.get()
        try:
            return _land(cursor, group)
        finally:
            cursors.put(cursor)

    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="ingest") as pool:
            yield from pool.map(land, groups)
    finally:
        for cursor in opened:
            cursor.close()


def _groups(planned: Sequence[_Planned]) -> Iterator[list[_Planned]]:
    """Files of one table, one writer schema and one reader, in bounded read batches."""
    by_key: dict[tuple, list[_Planned]] = {}
    for p in planned:
        by_key.setdefault((p.table, p.signature, p.reader, p.event_type), []).append(p)
    for (_, _, reader, _), members in by_key.items():
        limit = _RECORDS_PER_READ if reader == "duckdb" else _FASTAVRO_RECORDS_PER_READ
        batch: list[_Planned] = []
        records = 0
        for p in members:
            if batch and (len(batch) >= _FILES_PER_READ or records + p.records > limit):
                yield batch
                batch, records = [], 0
            batch.append(p)
            records += p.records
        if batch:
            yield batch


def _short(exc: BaseException) -> str:
    """One line of an exception, without DuckDB's SQL excerpt (no secrets in it either)."""
    text = str(exc).split("\nLINE ", 1)[0].strip()
    text = " ".join(text.split())
    name = type(exc).__name__
    if isinstance(exc, _FilesFailed | AvroFileError | IngestError) and text:
        return text[:500]  # our own messages already say what is wrong
    text = f"{name}: {text}" if text else name
    return text if len(text) <= 500 else text[:497] + "..."


# --------------------------------------------------------------------------------------------
# The run


def _manifest_state(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """path -> {fingerprint: 'landed' | 'failed'} from the manifest."""
    state: dict[str, dict[str, str]] = {}
    for path, fingerprint, status in con.execute(
        f"select path, fingerprint, status from {MANIFEST}"
    ).fetchall():
        seen = state.setdefault(path, {})
        landed = status != FAILED
        if landed or fingerprint not in seen:
            seen[fingerprint] = "landed" if landed else "failed"
    return state


def _resolve_reader(reader: str | None) -> str:
    mode = reader or "auto"
    if mode == "auto":
        mode = os.environ.get(READER_ENV) or "auto"
    if mode not in READERS:
        raise IngestError(f"reader {mode!r} is not one of {', '.join(READERS)} ({READER_ENV}?)")
    return mode


def ingest(
    sources: list[str],
    db_path: Path | None = None,
    reader: str = "auto",
    progress: bool = False,
    *,
    retry_failed: bool = False,
    s3_endpoint: str | None = None,
) -> IngestResult:
    """Land every new Avro file under ``sources`` into the warehouse; see the module docstring.

    ``reader``: ``auto`` (DuckDB's read_avro where it can, fastavro otherwise; the
    ``CURRENTS_SEGMENT_READER`` variable overrides it), ``duckdb`` or ``fastavro``.
    ``retry_failed``: land again files that failed before with the same fingerprint.
    """
    mode = _resolve_reader(reader)
    db = Path(db_path) if db_path else settings.warehouse_path()
    if not sources:
        raise IngestError("no sources given")
    try:
        con = duck.connect(db)
    except (duckdb.Error, OSError) as exc:
        raise IngestError(f"cannot open the warehouse {db}: {_short(exc)}") from exc
    try:
        _tune(con)
        _schema_plans.clear()  # per run: the catalogue may differ between runs of a process
        native = mode != "fastavro" and duck.ensure_avro(con)
        if mode == "duckdb" and not native:
            raise IngestError("DuckDB's avro extension cannot load here; use --reader auto")
        _ensure_manifest(con)
        tables = _TableColumns(con)
        for event in catalogue.supported():  # every supported table exists from the first run
            tables.ensure(event.table_name, raw_tables.catalogue_columns(event))
        return _run(con, db, sources, mode, native, progress, retry_failed, s3_endpoint, tables)
    finally:
        _untune(con)
        con.close()


def _run(
    con: duckdb.DuckDBPyConnection,
    db: Path,
    sources: list[str],
    mode: str,
    native: bool,
    progress: bool,
    retry_failed: bool,
    s3_endpoint: str | None,
    tables: _TableColumns,
) -> IngestResult:
    result = IngestResult(db_path=db)
    s3 = None
    candidates: list[SourceFile] = []
    for source in sources:
        if source.startswith("s3://"):
            if s3 is None:
                s3 = _s3_client(s3_endpoint)
            candidates.extend(_discover_s3(source, s3, result))
        else:
            candidates.extend(_discover_local(source, result))

    state = _manifest_state(con)
    todo: list[SourceFile] = []
    changed: list[SourceFile] = []
    retried: list[SourceFile] = []
    seen_paths: set[str] = set()
    for src in candidates:
        if src.path in seen_paths:  # overlapping sources list a file twice
            continue
        seen_paths.add(src.path)
        earlier = state.get(src.path, {})
        if earlier.get(src.fingerprint) == "landed":
            result.already_landed += 1
        elif earlier.get(src.fingerprint) == "failed":
            if retry_failed:
                retried.append(src)
                todo.append(src)
            else:
                result.previously_failed += 1
        elif "landed" in earlier.values():
            changed.append(src)
        else:
            todo.append(src)

    next_id = con.execute(f"select coalesce(max(file_id), 0) + 1 from {MANIFEST}").fetchone()[0]
    if retried:
        con.execute(
            f"delete from {MANIFEST} where status = '{FAILED}' and (path, fingerprint) in "
            "(select unnest($1::VARCHAR[]), unnest($2::VARCHAR[]))",
            [[s.path for s in retried], [s.fingerprint for s in retried]],
        )
    if changed:
        # Braze never rewrites a file: a changed one is reported and not loaded a second time.
        rejected = []
        for src in changed:
            p = _Planned(src, next_id, parse_location(src.path))
            next_id += 1
            p.fail("changed since it was loaded (new size/mtime or ETag); not loaded again")
            rejected.append(p)
        _record(con, rejected, datetime.now(UTC).replace(tzinfo=None))
        _collect(result, rejected, kind="changed")

    chunk_size = _S3_FILES_PER_CHUNK if any(s.s3_key for s in todo) else _FILES_PER_CHUNK
    with _progress_bar(progress, len(todo)) as bar:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            tmp = tempfile.mkdtemp(prefix="currents-ingest-") if s3 is not None else None
            try:
                if tmp is not None:
                    _download(s3, chunk, Path(tmp))
                planned = [_plan(s, next_id + i, native, mode) for i, s in enumerate(chunk)]
                next_id += len(chunk)
                failed = [p for p in planned if p.status == FAILED]
                if failed:
                    _record(con, failed, datetime.now(UTC).replace(tzinfo=None))
                    _collect(result, failed)
                    bar.advance(len(failed), 0)
                for p in planned:
                    if p.status != FAILED:
                        tables.ensure(p.table or "", p.table_columns)
                groups = list(_groups([p for p in planned if p.status != FAILED]))
                # Largest reads first, so the workers finish together rather than one of
                # them starting a big read last.
                groups.sort(key=lambda g: -sum(p.records for p in g))
                for group, landed in zip(groups, _land_all(con, groups), strict=True):
                    _collect(result, landed)
                    bar.advance(len(group), sum(p.rows_loaded for p in landed))
            finally:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
    return result


class _TableColumns:
    """The raw tables' columns, read once, so a table is altered only when it lacks one."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._columns: dict[str, set[str]] = {}
        for table, column in con.execute(
            "select table_name, column_name from information_schema.columns "
            f"where table_schema = '{raw_tables.SCHEMA}'"
        ).fetchall():
            self._columns.setdefault(table, set()).add(column)

    def ensure(self, table: str, columns: Sequence[tuple[str, str]]) -> None:
        have = self._columns.get(table)
        wanted = [*columns, *raw_tables.PROVENANCE_COLUMNS]
        if have is not None and all(name in have for name, _ in wanted):
            return
        if have is None:  # not there when the columns were read: create it, no lookup
            raw_tables.create_table(self._con, table, wanted)
        else:
            raw_tables.ensure_table(self._con, table, columns)
        self._columns.setdefault(table, set()).update(name for name, _ in wanted)


def _download(client, chunk: Sequence[SourceFile], into: Path) -> None:  # noqa: ANN001
    for i, src in enumerate(chunk):
        if src.s3_key is None:
            continue
        # A short local name: read_avro must not see glob characters from the key.
        target = into / f"{i:06d}.avro"
        try:
            client.download_file(src.s3_key[0], src.s3_key[1], str(target))
            src.local = target
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds
            src.local, src.error = None, f"unreadable: cannot download: {_short(exc)}"


def _collect(result: IngestResult, planned: Sequence[_Planned], kind: str | None = None) -> None:
    for p in planned:
        result.files.append(
            FileResult(
                file_id=p.file_id,
                path=p.source.path,
                event_type=p.event_type,
                table_name=p.table,
                status=p.status,
                rows_loaded=p.rows_loaded,
                test_events=p.test_events,
                reader=p.reader,
                error=p.note,
            )
        )
        problem_kind = {
            FAILED: kind or "failed",
            LOADED_UNSUPPORTED: "unsupported",
            LOADED_SCHEMA_DRIFT: "schema_drift",
        }.get(p.status)
        if problem_kind:
            result.problems.append(
                Problem(p.source.path, problem_kind, p.note or p.status, p.event_type)
            )


# --------------------------------------------------------------------------------------------
# Progress and summary


class _Bar:
    def __init__(self, progress, task) -> None:  # noqa: ANN001
        self._progress, self._task = progress, task
        self.rows = 0

    def advance(self, files: int, rows: int) -> None:
        self.rows += rows
        if self._progress is not None:
            self._progress.update(self._task, advance=files, rows=self.rows)


class _progress_bar:  # noqa: N801 - used as a context manager, reads like a function
    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._progress = None

    def __enter__(self) -> _Bar:
        if not self.enabled:
            return _Bar(None, None)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("landing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files, {task.fields[rows]:,} rows"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.__enter__()
        task = self._progress.add_task("landing", total=self.total, rows=0)
        return _Bar(self._progress, task)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def render_summary(result: IngestResult, console=None) -> None:  # noqa: ANN001
    """Files and rows per event type, then every problem, as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    per_type: dict[str, list[int]] = {}
    for f in result.files:
        if f.status == FAILED:
            continue
        row = per_type.setdefault(f.event_type or "?", [0, 0, 0, 0])
        row[0] += 1
        row[1] += f.rows_loaded
        row[2] += f.test_events
        row[3] = int(f.status == LOADED_UNSUPPORTED)
    table = Table(title=f"Landed in {result.db_path}")
    for name in ("event type", "files", "rows", "test events", "supported"):
        table.add_column(name, justify="left" if name == "event type" else "right")
    for event_type, (files, rows, tests, unsupported) in sorted(per_type.items()):
        table.add_row(
            event_type, f"{files:,}", f"{rows:,}", f"{tests:,}", "no" if unsupported else "yes"
        )
    table.add_section()
    table.add_row(
        "total",
        f"{sum(r[0] for r in per_type.values()):,}",
        f"{sum(r[1] for r in per_type.values()):,}",
        f"{sum(r[2] for r in per_type.values()):,}",
        "",
    )
    console.print(table)
    by_status = result.files_by_status
    console.print(
        "files: "
        + ", ".join(
            [
                f"{by_status.get(LOADED, 0)} loaded",
                f"{by_status.get(LOADED_SCHEMA_DRIFT, 0)} loaded with schema drift",
                f"{by_status.get(LOADED_UNSUPPORTED, 0)} unsupported (landed)",
                f"{by_status.get(FAILED, 0)} failed (quarantined, nothing landed)",
                f"{result.already_landed} already landed (skipped)",
                f"{result.previously_failed} failed before (not retried; --retry-failed)",
                f"{len(result.ignored)} ignored (not .avro)",
            ]
        )
    )
    if result.problems:
        console.print(_problems_table(result.problems))
    else:
        console.print("[green]clean run[/green]")


_MAX_PROBLEM_ROWS = 200


def _problems_table(problems: Sequence[Problem]):  # noqa: ANN202 - rich is imported lazily
    """Every problem: failed files one per row; landed-with-a-note files grouped by type."""
    from rich.table import Table

    grouped: dict[tuple[str, str | None, str], list[str]] = {}
    singles: list[Problem] = []
    for p in problems:
        if p.kind in ("unsupported", "schema_drift"):
            grouped.setdefault((p.kind, p.event_type, p.message), []).append(p.path)
        else:
            singles.append(p)
    table = Table(title=f"{len(problems)} problem(s): the run was not clean")
    table.add_column("kind")
    table.add_column("file(s)", overflow="fold")
    table.add_column("reason", overflow="fold")
    for p in singles[:_MAX_PROBLEM_ROWS]:
        table.add_row(p.kind, p.path, p.message)
    if len(singles) > _MAX_PROBLEM_ROWS:
        table.add_row("...", f"{len(singles) - _MAX_PROBLEM_ROWS} more", f"see {MANIFEST}")
    for (kind, event_type, message), paths in sorted(grouped.items(), key=str):
        where = paths[0] if len(paths) == 1 else f"{len(paths)} files of {event_type}"
        table.add_row(kind, where, message)
    return table


@click.command()
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Warehouse DuckDB file (default: $CURRENTS_SEGMENT_DB or $CURRENTS_SEGMENT_HOME/warehouse.duckdb).",
)
@click.option(
    "--reader",
    type=click.Choice(READERS),
    default="auto",
    envvar=READER_ENV,
    show_default=True,
    show_envvar=True,
    help="Avro reader: DuckDB's read_avro where it can (auto), only it, or fastavro.",
)
@click.option(
    "--s3-endpoint",
    default=None,
    help="S3-compatible endpoint URL (default: $AWS_ENDPOINT_URL, else AWS).",
)
@click.option("--retry-failed", is_flag=True, help="Try again files that failed in an earlier run.")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: when on a terminal)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def cli(
    sources: tuple[str, ...],
    db_path: Path | None,
    reader: str,
    s3_endpoint: str | None,
    retry_failed: bool,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Land Currents Avro exports (directories, files, s3://bucket/prefix) in DuckDB.

    Exit code 0: clean run; 1: problems recorded (failed, changed, unsupported or drifted
    files: see the summary and landing.files); 2: the run failed.
    """
    try:
        result = ingest(
            list(sources),
            db_path=db_path,
            reader=reader,
            progress=sys.stderr.isatty() if progress is None else progress,
            retry_failed=retry_failed,
            s3_endpoint=s3_endpoint,
        )
    except Exception as exc:  # noqa: BLE001 - any failure to run is exit code 2, said plainly
        click.echo(f"ingest failed: {_short(exc)}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, default=str))
    else:
        render_summary(result)
    sys.exit(0 if result.clean else 1)
