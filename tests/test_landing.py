"""`currents-segment ingest`: Braze's samples and small exports written here land exactly."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path

import duckdb
import fastavro
import pytest
from click.testing import CliRunner

from conftest import SAMPLES
from currents_segment import catalogue, landing
from currents_segment.cli import main
from test_landing_support import (
    CLUSTER,
    INTEGRATION,
    PROVENANCE,
    braze_path,
    landed,
    manifest,
    query,
    read_fastavro,
    records,
    schema_of,
    write_avro,
)

EMAIL_SEND = "users.messages.email.Send"
CARD_CLICK = "users.messages.contentcard.Click"
BANNER_CLICK = "users.messages.banner.Click"  # outside the catalogue
TEST_TIMEZONE = "3f2b8c1e-7d4a-4e9b-9c1d-2a6f8e0b5c7d"


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _dump(db: Path) -> dict[str, list[tuple]]:
    """Every raw table's rows (load time aside), sorted."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = con.execute(
            "select table_name from information_schema.tables "
            "where table_schema = 'raw_currents' order by 1"
        ).fetchall()
        return {
            t: con.execute(
                f"select * exclude (_loaded_at) from raw_currents.{t} order by all"
            ).fetchall()
            for (t,) in tables
        }
    finally:
        con.close()


# ---------------------------------------------------------------------------- Braze's samples


@pytest.fixture(scope="module")
def samples_db(tmp_path_factory) -> tuple[Path, landing.IngestResult]:
    if not SAMPLES.exists():
        pytest.skip(f"{SAMPLES} is not there")
    db = tmp_path_factory.mktemp("samples") / "warehouse.duckdb"
    return db, landing.ingest([str(SAMPLES)], db_path=db, reader="duckdb")


def test_every_sample_lands_equal_to_fastavro(samples_db):
    db, result = samples_db
    sample_files = sorted(SAMPLES.glob("*.avro"))
    assert len(result.files) == len(sample_files)
    assert not [p for p in result.problems if p.kind not in ("unsupported",)]
    con = duckdb.connect(str(db), read_only=True)
    by_path = {row["path"]: row for row in manifest(con)}
    for path in sample_files:
        event_type = path.stem
        supported = catalogue.is_supported(event_type)
        entry = by_path[str(path)]
        assert entry["status"] == ("loaded" if supported else "loaded_unsupported"), path
        assert entry["reader"] == "duckdb"
        expected = read_fastavro(path)
        assert entry["rows_loaded"] == entry["records_declared"] == len(expected)
        rows = landed(con, catalogue.table_name_for(event_type), f"_file_id = {entry['file_id']}")
        assert len(rows) == len(expected)
        schema_fields = {f["name"] for f in schema_of(event_type)["fields"]}
        for position, (row, want) in enumerate(zip(rows, expected, strict=True)):
            for name, value in want.items():
                assert _same(row[name], value), (path.name, name, row[name], value)
            extra = set(row) - schema_fields - set(PROVENANCE)
            assert all(row[name] is None for name in extra), path.name
            assert row["_row_in_file"] == position
            assert row["_event_type"] == event_type
            assert row["_source_file"] == str(path)
            assert row["_is_test_event"] is False
            assert row["_loaded_at"] is not None
    con.close()


def test_every_supported_table_exists_typed_from_the_catalogue(samples_db):
    db, _ = samples_db
    tables: dict[str, dict[str, str]] = {}
    for table, column, dtype in query(
        db,
        "select table_name, column_name, data_type from information_schema.columns "
        "where table_schema = 'raw_currents'",
    ):
        tables.setdefault(table, {})[column] = dtype
    for event in catalogue.supported():
        columns = tables[event.table_name]
        for f in event.fields:
            assert columns[f.name] == f.duckdb_type, (event.event_type, f.name)
        assert set(PROVENANCE) <= set(columns)


def test_fastavro_reader_lands_the_samples_identically(samples_db, tmp_path):
    db, _ = samples_db
    other = tmp_path / "fastavro.duckdb"
    result = landing.ingest([str(SAMPLES)], db_path=other, reader="fastavro")
    assert {f.reader for f in result.files} == {"fastavro"}
    assert _dump(other) == _dump(db)


# ---------------------------------------------------------------------------- exports of ours


@pytest.fixture
def export(tmp_path) -> Path:
    """Three types, several files per schema, two schema versions, two codecs, test events."""
    root = tmp_path / "export"
    send = schema_of(EMAIL_SEND)
    for i in range(3):
        rows = records(EMAIL_SEND, 700 + i, start=i * 1000)
        rows[5]["timezone"] = TEST_TIMEZONE
        write_avro(
            braze_path(root, EMAIL_SEND, offset=i * 1000),
            send,
            rows,
            codec="deflate",
            sync_interval=2000,  # many blocks per file
        )
    click = schema_of(CARD_CLICK)
    # An older file of the type: dispatch_id was removed from the schema in 2025.
    older = dict(click, fields=[*click["fields"], {"name": "dispatch_id", "type": ["null", "string"], "default": None}])  # fmt: skip
    write_avro(
        braze_path(root, CARD_CLICK, schema_id=1500, date_hour="2025-01-01-00"),
        older,
        [dict(r, dispatch_id=f"d{i}") for i, r in enumerate(records(CARD_CLICK, 40))],
        codec="snappy",
    )
    write_avro(braze_path(root, CARD_CLICK), click, records(CARD_CLICK, 30, start=100))
    write_avro(braze_path(root, BANNER_CLICK), schema_of(BANNER_CLICK), records(BANNER_CLICK, 25))
    return root


def test_export_lands_with_provenance(export, tmp_path):
    db = tmp_path / "w.duckdb"
    result = landing.ingest([str(export)], db_path=db)
    assert result.rows_per_type == {BANNER_CLICK: 25, CARD_CLICK: 70, EMAIL_SEND: 2103}
    assert result.test_events_per_type == {EMAIL_SEND: 3}
    assert [p.kind for p in result.problems] == ["unsupported"]
    assert not result.clean
    rows = landed(db, "users_messages_email_send")
    assert len(rows) == 2103
    first = rows[0]
    assert first["_integration_id"] == INTEGRATION
    assert first["_cluster"] == CLUSTER
    assert first["_date_hour"] == datetime(2026, 11, 1, 9)
    assert first["_schema_id"] == 1701
    assert first["_event_type"] == EMAIL_SEND
    assert first["_source_file"].endswith("+0+0.avro")
    assert sum(r["_is_test_event"] for r in rows) == 3
    assert {r["timezone"] for r in rows if r["_is_test_event"]} == {TEST_TIMEZONE}
    # Each record's position in its file, as fastavro reads the file.
    for entry in manifest(db):
        if entry["event_type"] != EMAIL_SEND:
            continue
        ids = [r["id"] for r in read_fastavro(Path(entry["path"]))]
        got = [r["id"] for r in rows if r["_file_id"] == entry["file_id"]]
        assert got == ids
    statuses = {(m["event_type"], m["status"]) for m in manifest(db)}
    assert statuses == {
        (EMAIL_SEND, "loaded"),
        (CARD_CLICK, "loaded"),
        (BANNER_CLICK, "loaded_unsupported"),
    }
    assert landed(db, "users_messages_banner_click")[0]["_event_type"] == BANNER_CLICK


def test_files_of_two_schema_versions_load_by_name(export, tmp_path):
    db = tmp_path / "w.duckdb"
    landing.ingest([str(export)], db_path=db)
    rows = landed(db, "users_messages_contentcard_click")
    old = [r for r in rows if r["_schema_id"] == 1500]
    new = [r for r in rows if r["_schema_id"] == 1701]
    assert len(old) == 40 and len(new) == 30
    assert [r["dispatch_id"] for r in old] == [f"d{i}" for i in range(40)]
    assert all(r["dispatch_id"] is None for r in new)


def test_a_field_the_catalogue_does_not_know_adds_a_column(tmp_path):
    root, db = tmp_path / "export", tmp_path / "w.duckdb"
    send = schema_of(EMAIL_SEND)
    write_avro(braze_path(root, EMAIL_SEND), send, records(EMAIL_SEND, 3))
    newer = dict(send, fields=[*send["fields"], {"name": "inbox_provider", "type": ["null", "string"], "default": None}])  # fmt: skip
    write_avro(
        braze_path(root, EMAIL_SEND, schema_id=1800, offset=9),
        newer,
        records(EMAIL_SEND, 2, start=10, inbox_provider="Gmail"),
    )
    result = landing.ingest([str(root)], db_path=db)
    drift = [p for p in result.problems if p.kind == "schema_drift"]
    assert len(drift) == 1 and "inbox_provider" in drift[0].message
    assert [r["inbox_provider"] for r in landed(db, "users_messages_email_send")] == [
        None,
        None,
        None,
        "Gmail",
        "Gmail",
    ]
    statuses = sorted(m["status"] for m in manifest(db))
    assert statuses == ["loaded", "loaded_schema_drift"]


def test_duckdb_and_fastavro_paths_land_identical_tables(export, tmp_path, monkeypatch):
    native, fallback = tmp_path / "native.duckdb", tmp_path / "fastavro.duckdb"
    landing.ingest([str(export)], db_path=native, reader="duckdb")
    monkeypatch.setenv(landing.READER_ENV, "fastavro")  # the environment forces it under auto
    result = landing.ingest([str(export)], db_path=fallback)
    assert {f.reader for f in result.files} == {"fastavro"}
    assert _dump(fallback) == _dump(native)
    strip = ("reader", "loaded_at")
    assert [{k: v for k, v in m.items() if k not in strip} for m in manifest(fallback)] == [
        {k: v for k, v in m.items() if k not in strip} for m in manifest(native)
    ]


def test_second_run_loads_nothing_and_new_files_load_alone(export, tmp_path):
    db = tmp_path / "w.duckdb"
    first = landing.ingest([str(export)], db_path=db)
    before_rows, before_manifest = _dump(db), manifest(db)
    again = landing.ingest([str(export)], db_path=db)
    assert again.files == [] and again.clean
    assert again.already_landed == len(first.files)
    assert _dump(db) == before_rows and manifest(db) == before_manifest
    write_avro(
        braze_path(export, EMAIL_SEND, offset=5000, date_hour="2026-11-01-10"),
        schema_of(EMAIL_SEND),
        records(EMAIL_SEND, 11, start=5000),
    )
    third = landing.ingest([str(export)], db_path=db)
    assert [(f.status, f.rows_loaded) for f in third.files] == [("loaded", 11)]
    assert third.files[0].file_id == max(m["file_id"] for m in before_manifest) + 1
    assert len(landed(db, "users_messages_email_send")) == 2103 + 11


# ---------------------------------------------------------------------------- bad input


def _corrupt_inside_a_block(path: Path) -> None:
    """Scramble compressed bytes in the middle of the file, leaving the block framing intact."""
    info = landing.inspect_avro(path)
    assert info.blocks > 3
    data = bytearray(path.read_bytes())
    with path.open("rb") as fh:
        reader = fastavro.block_reader(fh)
        next(reader)
        second = next(reader)
    middle = len(data) // 2
    for i in range(middle, middle + 40):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    assert second.num_records > 0


def test_bad_files_are_recorded_and_the_rest_lands(tmp_path):
    root, db = tmp_path / "export", tmp_path / "w.duckdb"
    send = schema_of(EMAIL_SEND)
    good = [
        write_avro(
            braze_path(root, EMAIL_SEND, offset=i),
            send,
            records(EMAIL_SEND, 50, start=i * 100),
            codec="deflate",
            sync_interval=1500,
        )  # fmt: skip
        for i in range(4)
    ]
    # Same schema and folder as the good files, so they share one read_avro call.
    truncated = write_avro(braze_path(root, EMAIL_SEND, offset=90), send, records(EMAIL_SEND, 400, start=9000), codec="deflate", sync_interval=1500)  # fmt: skip
    truncated.write_bytes(truncated.read_bytes()[:-700])
    scrambled = write_avro(braze_path(root, EMAIL_SEND, offset=91), send, records(EMAIL_SEND, 400, start=20000), codec="deflate", sync_interval=1500)  # fmt: skip
    _corrupt_inside_a_block(scrambled)
    bad_sync = write_avro(braze_path(root, EMAIL_SEND, offset=92), send, records(EMAIL_SEND, 400, start=30000), sync_interval=1500)  # fmt: skip
    data = bytearray(bad_sync.read_bytes())
    data[-1] ^= 0xFF  # the last sync marker
    bad_sync.write_bytes(bytes(data))
    not_avro = braze_path(root, EMAIL_SEND, offset=93)
    not_avro.write_text("<html>AccessDenied</html>")
    empty = braze_path(root, EMAIL_SEND, offset=94)
    empty.write_bytes(b"")
    dangling = braze_path(root, EMAIL_SEND, offset=95)
    dangling.symlink_to(tmp_path / "gone.avro")
    nameless = dict(send, name="Send", namespace=None)
    unknown = write_avro(root / "misc" / "part-0.avro", nameless, records(EMAIL_SEND, 2))
    mismatch = write_avro(braze_path(root, "users.messages.email.Open", offset=96), send, records(EMAIL_SEND, 2))  # fmt: skip
    (root / "_SUCCESS").write_text("")

    result = landing.ingest([str(root)], db_path=db)

    failed = {Path(p.path): p.message for p in result.problems if p.kind == "failed"}
    assert set(failed) == {truncated, scrambled, bad_sync, not_avro, empty, dangling, unknown, mismatch}  # fmt: skip
    assert failed[truncated].startswith("truncated: block")
    assert "records its blocks declare" in failed[scrambled] or "Error" in failed[scrambled]
    assert failed[bad_sync].startswith("corrupt: sync marker mismatch")
    assert "bad magic" in failed[not_avro]
    assert "empty" in failed[empty]
    assert failed[dangling].startswith("unreadable")
    assert failed[unknown].startswith("unknown event type")
    assert "users.messages.email.Send" in failed[mismatch]
    assert result.ignored == [str(root / "_SUCCESS")]
    # The good files landed whole, the bad ones not at all.
    rows = landed(db, "users_messages_email_send")
    assert len(rows) == 200
    assert {r["_source_file"] for r in rows} == {str(p) for p in good}
    entries = {Path(m["path"]): m for m in manifest(db)}
    for path in failed:
        assert entries[path]["status"] == "failed"
        assert entries[path]["rows_loaded"] == 0
        assert entries[path]["error"] == failed[path]
    # A second run does not try them again (same fingerprint) and is clean.
    again = landing.ingest([str(root)], db_path=db)
    assert again.clean and again.previously_failed == len(failed)
    assert again.already_landed == len(good)


def test_a_corrupt_block_in_a_group_fails_only_its_file(tmp_path):
    """DuckDB's read_avro reads such a file partially without an error: the count check."""
    root, db = tmp_path / "export", tmp_path / "w.duckdb"
    send = schema_of(EMAIL_SEND)
    paths = [
        write_avro(
            braze_path(root, EMAIL_SEND, offset=i),
            send,
            records(EMAIL_SEND, 300, start=i * 1000),
            codec="deflate",
            sync_interval=1500,
        )  # fmt: skip
        for i in range(3)
    ]
    _corrupt_inside_a_block(paths[1])
    result = landing.ingest([str(root)], db_path=db, reader="duckdb")
    assert [(f.path, f.status) for f in result.files if f.status == "failed"] == [
        (str(paths[1]), "failed")
    ]
    assert len(landed(db, "users_messages_email_send")) == 600


def test_a_changed_file_is_reported_not_loaded_twice(tmp_path):
    root, db = tmp_path / "export", tmp_path / "w.duckdb"
    path = write_avro(braze_path(root, EMAIL_SEND), schema_of(EMAIL_SEND), records(EMAIL_SEND, 5))
    landing.ingest([str(root)], db_path=db)
    write_avro(path, schema_of(EMAIL_SEND), records(EMAIL_SEND, 8))
    os.utime(path, ns=(1, 1))
    result = landing.ingest([str(root)], db_path=db)
    assert [(p.kind, p.path) for p in result.problems] == [("changed", str(path))]
    assert "changed since it was loaded" in result.problems[0].message
    assert len(landed(db, "users_messages_email_send")) == 5
    assert landing.ingest([str(root)], db_path=db).clean  # reported once


def test_retry_failed_lands_a_repaired_file(tmp_path):
    root, db = tmp_path / "export", tmp_path / "w.duckdb"
    path = braze_path(root, EMAIL_SEND)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"Obj\x01 cut short")
    first = landing.ingest([str(root)], db_path=db)
    assert [f.status for f in first.files] == ["failed"]
    stat = path.stat()
    write_avro(path, schema_of(EMAIL_SEND), records(EMAIL_SEND, 4))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same fingerprint as the bad copy
    assert landing.ingest([str(root)], db_path=db).previously_failed == 1
    retried = landing.ingest([str(root)], db_path=db, retry_failed=True)
    assert [(f.status, f.rows_loaded) for f in retried.files] == [("loaded", 4)]
    assert [m["status"] for m in manifest(db)] == ["loaded"]


def test_a_codec_duckdb_lacks_is_read_with_fastavro(tmp_path):
    root = tmp_path / "export"
    write_avro(braze_path(root, EMAIL_SEND), schema_of(EMAIL_SEND), records(EMAIL_SEND, 6), codec="bzip2")  # fmt: skip
    auto = landing.ingest([str(root)], db_path=tmp_path / "auto.duckdb")
    assert [(f.reader, f.status, f.rows_loaded) for f in auto.files] == [("fastavro", "loaded", 6)]
    forced = landing.ingest([str(root)], db_path=tmp_path / "duck.duckdb", reader="duckdb")
    assert [f.status for f in forced.files] == ["failed"]
    assert "codec 'bzip2'" in forced.problems[0].message


def test_a_2017_export_takes_its_type_from_the_schema(tmp_path):
    root, db = tmp_path / "export", tmp_path / "w.duckdb"
    old_id = "0123456789abcdef01234567"
    path = root / f"dataexport.S3.integration.{old_id}+3+120.avro"
    write_avro(path, schema_of(EMAIL_SEND), records(EMAIL_SEND, 3))
    result = landing.ingest([str(root)], db_path=db)
    assert result.clean and result.rows_per_type == {EMAIL_SEND: 3}
    row = landed(db, "users_messages_email_send")[0]
    assert (row["_integration_id"], row["_cluster"], row["_date_hour"]) == (old_id, None, None)


# ---------------------------------------------------------------------------- pieces


def test_parse_location():
    loc = landing.parse_location(
        "s3://b/currents/dataexport.prod-03.AzureBlob.integration.abc123/"
        "event_type=users.messages.email.Send/date=2026-11-01-09/1701/zone-b/"
        "dataexport.prod-03.AzureBlob.integration.abc123+2+45000.avro"
    )
    assert loc == landing.Location(
        "users.messages.email.Send", datetime(2026, 11, 1, 9), 1701, "abc123", "prod-03"
    )
    assert landing.parse_location("/x/dataexport.GCS.integration.ff+0+0.avro") == (
        landing.Location(integration_id="ff")
    )
    assert landing.parse_location("/data/part-0.avro") == landing.Location()
    # A schema id folder is only the one right after date=, never the file itself.
    assert landing.parse_location("/e/date=2026-02-30-01/7.avro").date_hour is None


def test_event_type_from_schema():
    assert landing.event_type_from_schema(schema_of(EMAIL_SEND)) == EMAIL_SEND
    assert landing.event_type_from_schema({"name": "dataexport.S3.inner.users.x.Y"}) == "users.x.Y"
    assert landing.event_type_from_schema({"name": "users.messages.sms.Send"}) == (
        "users.messages.sms.Send"
    )
    assert landing.event_type_from_schema({"name": "Send"}) is None


def test_inspect_avro_counts_records_and_blocks(tmp_path):
    path = write_avro(
        tmp_path / "a.avro", schema_of(EMAIL_SEND), records(EMAIL_SEND, 500), "deflate", 1000
    )
    info = landing.inspect_avro(path)
    with path.open("rb") as fh:
        blocks = list(fastavro.block_reader(fh))
    assert (info.records, info.blocks, info.codec) == (500, len(blocks), "deflate")
    assert info.schema["name"] == "Send"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(landing.AvroFileError, match="truncated"):
        landing.inspect_avro(path)


# ---------------------------------------------------------------------------- command line


def test_cli_exit_codes(tmp_path, cs_home):
    root = tmp_path / "export"
    write_avro(braze_path(root, EMAIL_SEND), schema_of(EMAIL_SEND), records(EMAIL_SEND, 3))
    runner = CliRunner()
    clean = runner.invoke(main, ["ingest", str(root), "--progress"])
    assert clean.exit_code == 0, clean.output
    assert "clean run" in clean.output
    assert (cs_home / "warehouse.duckdb").exists()  # the default warehouse

    bad = braze_path(root, EMAIL_SEND, offset=7)
    bad.write_bytes(b"not avro at all")
    dirty = runner.invoke(main, ["ingest", str(root), "--json"])
    assert dirty.exit_code == 1, dirty.output
    report = json.loads(dirty.output)
    assert report["clean"] is False
    assert report["problems"][0]["path"] == str(bad)

    missing = runner.invoke(main, ["ingest", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "does not exist" in missing.output

    not_a_db = tmp_path / "junk.duckdb"
    not_a_db.write_text("this is not a database")
    broken = runner.invoke(main, ["ingest", str(root), "--db", str(not_a_db)])
    assert broken.exit_code == 2
    assert "cannot open the warehouse" in broken.output


def test_one_or_two_workers_land_the_same(export, tmp_path, monkeypatch):
    monkeypatch.setenv(landing.WORKERS_ENV, "1")
    landing.ingest([str(export)], db_path=tmp_path / "one.duckdb")
    monkeypatch.setenv(landing.WORKERS_ENV, "2")
    landing.ingest([str(export)], db_path=tmp_path / "two.duckdb")
    assert _dump(tmp_path / "one.duckdb") == _dump(tmp_path / "two.duckdb")
    strip = ("loaded_at",)
    assert [
        {k: v for k, v in m.items() if k not in strip} for m in manifest(tmp_path / "one.duckdb")
    ] == [  # fmt: skip
        {k: v for k, v in m.items() if k not in strip} for m in manifest(tmp_path / "two.duckdb")
    ]


def test_without_the_extension_auto_reads_with_fastavro(export, tmp_path, monkeypatch):
    # Where DuckDB's avro extension cannot load (no wheel, no network), ensure_avro says so.
    monkeypatch.setattr(landing.duck, "ensure_avro", lambda con: False)
    result = landing.ingest([str(export)], db_path=tmp_path / "w.duckdb")
    assert {f.reader for f in result.files} == {"fastavro"}
    assert sum(result.rows_per_type.values()) == 2103 + 70 + 25
    with pytest.raises(landing.IngestError, match="avro extension cannot load"):
        landing.ingest([str(export)], db_path=tmp_path / "x.duckdb", reader="duckdb")


def test_paths_with_quotes_and_spaces_land_natively(tmp_path):
    # read_avro takes each path as an SQL literal: a quote in a folder name must not break it.
    root = tmp_path / "o'brien's exports" / "braze 2026"
    path = write_avro(braze_path(root, EMAIL_SEND), schema_of(EMAIL_SEND), records(EMAIL_SEND, 7))
    db = tmp_path / "w.duckdb"
    result = landing.ingest([str(root)], db_path=db, reader="duckdb")
    assert result.clean and result.rows_per_type == {EMAIL_SEND: 7}
    rows = landed(db, "users_messages_email_send")
    assert {r["_source_file"] for r in rows} == {str(path)}
    assert [r["_row_in_file"] for r in sorted(rows, key=lambda r: r["_row_in_file"])] == list(
        range(7)
    )


def _string_compressions(db: Path) -> set[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            r[0]
            for r in con.execute(
                "select distinct compression from pragma_storage_info("
                "'raw_currents.users_messages_email_send') where segment_type = 'VARCHAR'"
            ).fetchall()
        }
    finally:
        con.close()


def test_fsst_is_off_while_landing_unless_configured(tmp_path, monkeypatch):
    root = tmp_path / "export"
    # Long, varied strings: the kind FSST is chosen for when it is allowed.
    rows = records(EMAIL_SEND, 3000)
    for i, r in enumerate(rows):
        r["email_address"] = f"someone.with.a.rather.long.name.{i * 7919}@example-{i % 97}.com"
    write_avro(braze_path(root, EMAIL_SEND), schema_of(EMAIL_SEND), rows)
    landing.ingest([str(root)], db_path=tmp_path / "default.duckdb")
    assert "FSST" not in _string_compressions(tmp_path / "default.duckdb")
    monkeypatch.setenv(landing.COMPRESSION_ENV, "")
    landing.ingest([str(root)], db_path=tmp_path / "all.duckdb")
    assert "FSST" in _string_compressions(tmp_path / "all.duckdb")
    assert _dump(tmp_path / "default.duckdb") == _dump(tmp_path / "all.duckdb")
    monkeypatch.setenv(landing.COMPRESSION_ENV, "fsst; drop table x")
    with pytest.raises(landing.IngestError, match=landing.COMPRESSION_ENV):
        landing.ingest([str(root)], db_path=tmp_path / "bad.duckdb")
