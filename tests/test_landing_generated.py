"""Acceptance: a generated export with every knob on lands exactly as its manifest says."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from currents_segment import catalogue, landing
from currents_segment.generate import GenerateOptions, all_knobs_on, generate_export


def _expected(manifest: dict, category: str) -> Counter:
    """records of one category per (app_group_id, event_type, date_hour)."""
    out: Counter = Counter()
    for row in manifest["counts"]:
        if row["category"] == category:
            out[(row["app_group_id"], row["event_type"], row["date_hour"])] += row["records"]
    return out


def _landed(db: Path, manifest: dict, test_events: bool = False, distinct: bool = False) -> Counter:
    """Landed rows (or distinct ids) per (app_group_id, event_type, date_hour), all tables."""
    workspace_of = {
        integration: ws["app_group_id"]
        for ws in manifest["workspaces"]
        for integration in ws["integration_ids"]
    }
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [
            t
            for (t,) in con.execute(
                "select table_name from information_schema.tables "
                "where table_schema = 'raw_currents'"
            ).fetchall()
        ]
        out: Counter = Counter()
        for table in tables:
            flag = "where _is_test_event" if test_events else ""
            count = "count(distinct id)" if distinct else "count(*)"
            for integration, event_type, hour, n in con.execute(
                "select _integration_id, _event_type, strftime(_date_hour, '%Y-%m-%d-%H'), "
                f"{count} from raw_currents.{table} {flag} group by all"
            ).fetchall():
                if integration in workspace_of:  # rows of this manifest's export only
                    out[(workspace_of[integration], event_type, hour)] += n
        return out
    finally:
        con.close()


def _manifest_rows(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "select file_id, path, fingerprint, status, rows_loaded, error "
            "from landing.files order by file_id"
        ).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict, Path, landing.IngestResult]:
    root = tmp_path_factory.mktemp("generated")
    export = root / "export"
    manifest = generate_export(export, all_knobs_on(events=2_000, seed=7))
    db = root / "warehouse.duckdb"
    return export, manifest, db, landing.ingest([str(export)], db_path=db)


def test_every_readable_record_lands_counted_like_the_manifest(generated):
    export, manifest, db, result = generated
    written = _expected(manifest, "records_written")
    assert _landed(db, manifest) == written
    assert sum(result.rows_per_type.values()) == manifest["totals"]["records_written"]


def test_broken_files_fail_and_only_they(generated):
    export, manifest, db, result = generated
    broken = {
        str(export / f["path"]) for f in manifest["files"] if f["kind"] in ("corrupt", "truncated")
    }
    assert len(broken) == 2
    assert {f.path for f in result.files if f.status == "failed"} == broken
    assert {p.path for p in result.problems if p.kind == "failed"} == broken
    reasons = " ".join(p.message for p in result.problems if p.kind == "failed")
    assert "truncated" in reasons and "corrupt" in reasons


def test_unsupported_types_land_and_are_counted(generated):
    export, manifest, db, result = generated
    unsupported = _expected(manifest, "unsupported")  # distinct events
    assert sum(unsupported.values()) == manifest["options"]["unsupported_events"]
    written = _expected(manifest, "records_written")  # with at-least-once copies
    landed, distinct = _landed(db, manifest), _landed(db, manifest, distinct=True)
    for key, n in unsupported.items():
        assert not catalogue.is_supported(key[1])
        assert (landed[key], distinct[key]) == (written[key], n)
    files = [f for f in manifest["files"] if f["kind"] == "unsupported"]
    statuses = {f.path: f.status for f in result.files}
    assert {statuses[str(export / f["path"])] for f in files} == {"loaded_unsupported"}
    assert {p.path for p in result.problems if p.kind == "unsupported"} == {
        str(export / f["path"]) for f in files
    }


def test_test_events_are_flagged(generated):
    export, manifest, db, result = generated
    tests = _expected(manifest, "test_events")
    assert sum(tests.values()) == manifest["options"]["test_events"]
    # Distinct ids: a test event can be written twice like any other (at-least-once).
    assert _landed(db, manifest, test_events=True, distinct=True) == +tests


def test_every_file_is_in_the_manifest_table(generated):
    export, manifest, db, result = generated
    rows = _manifest_rows(db)
    assert sorted(r[1] for r in rows) == sorted(str(export / f["path"]) for f in manifest["files"])
    records = {str(export / f["path"]): f["records"] for f in manifest["files"]}
    for _, path, _, status, rows_loaded, _ in rows:
        assert rows_loaded == (0 if status == "failed" else records[path])


def test_a_second_run_changes_nothing_and_new_files_load_alone(generated, tmp_path):
    export, manifest, db, _ = generated
    db_copy = tmp_path / "warehouse.duckdb"
    shutil.copy(db, db_copy)
    before_rows, before_files = _landed(db_copy, manifest), _manifest_rows(db_copy)
    again = landing.ingest([str(export)], db_path=db_copy)
    assert again.files == [] and again.clean
    assert again.previously_failed == 2
    assert _landed(db_copy, manifest) == before_rows
    assert _manifest_rows(db_copy) == before_files

    # A later export of the same kind appended under the same prefix (another day, seed).
    later = generate_export(  # its own workspaces and integrations (another seed)
        tmp_path / "later",
        GenerateOptions(events=300, seed=8, start="2026-11-02", codec="snappy"),
    )
    copied = []
    for f in later["files"]:
        target = export / f["path"]
        assert not target.exists()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "later" / f["path"], target)
        copied.append(target)
    try:
        third = landing.ingest([str(export)], db_path=db_copy)
        assert sorted(f.path for f in third.files) == sorted(str(p) for p in copied)
        assert third.clean
        assert sum(third.rows_per_type.values()) == later["totals"]["records_written"]
        assert not set(later["workspaces"][0]["integration_ids"]) & {
            i for ws in manifest["workspaces"] for i in ws["integration_ids"]
        }
        assert _landed(db_copy, later) == _expected(later, "records_written")
        assert _landed(db_copy, manifest) == before_rows
    finally:
        for path in copied:
            path.unlink()
