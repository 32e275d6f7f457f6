"""The synthetic export: Braze's layout, cadence, determinism, readable codecs, and a manifest
whose every count is recounted here from the Avro files themselves (not from the generator)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import fastavro
import pytest
from click.testing import CliRunner

from conftest import SCHEMAS
from currents_segment import catalogue, duck
from currents_segment.generate import (
    CATEGORIES,
    UNSUPPORTED_TYPES,
    GenerateError,
    GenerateOptions,
    all_knobs_on,
    cli,
    generate_export,
)

LAYOUT = re.compile(
    r"^(?P<prefix>[^+]+)/dataexport\.(?P<cluster>[^./+]+)\.(?P<conn>S3|AzureBlob|GCS)"
    r"\.integration\.(?P<integration>[0-9a-f]{24})"
    r"/event_type=(?P<event_type>[A-Za-z0-9_.]+)"
    r"/date=(?P<date>\d{4}-\d{2}-\d{2}-\d{2})"
    r"/(?P<schema_id>\d+)/(?P<zone>[^/+]+)"
    r"/dataexport\.(?P=cluster)\.(?P=conn)\.integration\.(?P=integration)"
    r"\+(?P<partition>\d+)\+(?P<offset>\d+)\.avro$"
)
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HEX24 = re.compile(r"^[0-9a-f]{24}$")
REMOVED_DISPATCH = {
    t.event_type for t in catalogue.supported() if any(f.lifecycle == "removed" for f in t.fields)
}


# --- an independent reader of the export --------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos


def block_record_counts(path: Path) -> int:
    """Records a file's block headers announce (readable even when the data is not)."""
    blob = path.read_bytes()
    with path.open("rb") as fh:
        fastavro.reader(fh)  # parses the header only
        pos = fh.tell()
    total = 0
    while pos < len(blob):
        count, pos = _varint(blob, pos)
        size, pos = _varint(blob, pos)
        total += count
        pos += size + 16
    return total


def read_records(path: Path) -> tuple[dict, list[dict]]:
    with path.open("rb") as fh:
        reader = fastavro.reader(fh)
        return reader.writer_schema, list(reader)


def is_test_event(record: dict) -> bool:
    return bool(record.get("timezone")) and bool(UUID.match(record["timezone"]))


def recount(out_dir: Path, manifest: dict) -> tuple[Counter, dict[str, int]]:
    """Every manifest category recounted from the files on disk."""
    counts: Counter = Counter()
    per_file: dict[str, int] = {}
    ids: dict[tuple, set[str]] = {}
    content_of: dict[str, tuple] = {}
    listed = {f["path"]: f for f in manifest["files"]}
    for path in sorted(out_dir.rglob("*.avro")):
        rel = path.relative_to(out_dir).as_posix()
        m = LAYOUT.match(rel)
        assert m, rel
        event_type, date_hour = m["event_type"], m["date"]
        try:
            _, records = read_records(path)
        except Exception:  # noqa: BLE001 - any failure makes the file unreadable
            # Corrupt or truncated: the workspace is only known from the manifest.
            n = block_record_counts(path)
            counts[(listed[rel]["app_group_id"], event_type, date_hour, "unreadable_records")] += n
            per_file[rel] = n
            continue
        per_file[rel] = len(records)
        hour_start = int(
            datetime.strptime(date_hour, "%Y-%m-%d-%H").replace(tzinfo=UTC).timestamp()
        )
        for rec in records:
            # canvas.experimentstep.* have no app_group_id: the manifest's file row says it.
            ws = rec.get("app_group_id") or listed[rel]["app_group_id"]
            key = (ws, event_type, date_hour)
            counts[(*key, "records_written")] += 1
            seen = ids.setdefault(key, set())
            body = tuple(sorted(rec.items()))
            if rec["id"] in content_of:
                assert content_of[rec["id"]] == body, "a re-delivered copy differs"
            content_of[rec["id"]] = body
            if rec["id"] in seen:
                counts[(*key, "duplicate_records")] += 1
                continue
            seen.add(rec["id"])
            counts[(*key, "distinct_events")] += 1
            if not catalogue.is_supported(event_type):
                counts[(*key, "unsupported")] += 1
            elif is_test_event(rec):
                counts[(*key, "test_events")] += 1
            elif rec["external_user_id"] is None:
                counts[(*key, "anonymous")] += 1
            else:
                counts[(*key, "sendable")] += 1
            if catalogue.is_supported(event_type) and not is_test_event(rec):
                if rec["time"] < hour_start:
                    counts[(*key, "late")] += 1
                else:
                    assert rec["time"] < hour_start + 3600, "on-time event outside its hour"
    all_ids = [i for s in ids.values() for i in s]
    assert len(all_ids) == len(set(all_ids)), "one id under two keys"
    return +counts, per_file


def manifest_counts(manifest: dict) -> Counter:
    return Counter(
        {
            (r["app_group_id"], r["event_type"], r["date_hour"], r["category"]): r["records"]
            for r in manifest["counts"]
        }
    )


def assert_identities(manifest: dict) -> None:
    """The identities docs/generate.md states."""
    o, totals, files = manifest["options"], manifest["totals"], manifest["files"]
    per_key: dict[tuple, Counter] = {}
    for (ws, t, dh, cat), n in manifest_counts(manifest).items():
        per_key.setdefault((ws, t, dh), Counter())[cat] = n
    for (_, event_type, _), c in per_key.items():
        assert c["records_written"] == c["distinct_events"] + c["duplicate_records"]
        if catalogue.is_supported(event_type):
            assert c["distinct_events"] == c["sendable"] + c["anonymous"] + c["test_events"]
            assert c["late"] <= c["distinct_events"] - c["test_events"]
            assert c["unsupported"] == 0
        else:
            assert c["distinct_events"] == c["unsupported"]
    assert totals["sendable"] + totals["anonymous"] == o["events"]
    assert totals["test_events"] == o["test_events"]
    assert totals["unsupported"] == o["unsupported_events"]
    assert totals["distinct_events"] == o["events"] + o["test_events"] + o["unsupported_events"]
    readable = [f for f in files if f["kind"] not in ("corrupt", "truncated")]
    assert totals["records_written"] == sum(f["records"] for f in readable)
    assert totals["unreadable_records"] == sum(
        f["records"] for f in files if f["kind"] in ("corrupt", "truncated")
    )
    assert sorted(totals) == sorted(CATEGORIES)


def check_export(out_dir: Path, manifest: dict) -> Counter:
    recounted, per_file = recount(out_dir, manifest)
    assert recounted == manifest_counts(manifest)
    assert per_file == {f["path"]: f["records"] for f in manifest["files"]}
    assert json.loads((out_dir / "manifest.json").read_text()) == manifest
    assert_identities(manifest)
    return recounted


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def knobs_export(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("knobs") / "export"
    return out, generate_export(out, all_knobs_on(events=3_000, seed=7))


def small(**overrides) -> GenerateOptions:
    base = {
        "events": 1_500,
        "seed": 3,
        "event_types": [
            "users.messages.email.Send",
            "users.campaigns.Conversion",
            "users.canvas.experimentstep.SplitEntry",
            "users.messages.whatsapp.Send",
        ],
    }
    return GenerateOptions(**{**base, **overrides})


# --- layout, cadence, determinism ---------------------------------------------------------


def test_every_path_matches_brazes_key_layout(knobs_export):
    out, manifest = knobs_export
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.avro")}
    assert on_disk == {f["path"] for f in manifest["files"]}
    integrations = {
        i: ws["app_group_id"] for ws in manifest["workspaces"] for i in ws["integration_ids"]
    }
    for f in manifest["files"]:
        m = LAYOUT.match(f["path"])
        assert m, f["path"]
        assert m["prefix"] == "currents" and m["cluster"] == "prod-01" and m["conn"] == "S3"
        assert m["zone"] == "us-01"
        assert m["event_type"] == f["event_type"]
        assert m["date"] == f["date_hour"]
        assert int(m["schema_id"]) == f["schema_id"]
        assert m["integration"] == f["integration_id"]
        assert integrations[f["integration_id"]] == f["app_group_id"]
    for ws in manifest["workspaces"]:
        assert HEX24.match(ws["app_group_id"])


def test_file_cadence_caps_records_and_never_writes_an_empty_file(tmp_path):
    manifest = generate_export(tmp_path / "x", small(max_events_per_file=40, events=2_000))
    sizes = [f["records"] for f in manifest["files"]]
    assert max(sizes) == 40 and min(sizes) >= 1
    _, per_file = recount(tmp_path / "x", manifest)
    assert max(per_file.values()) == 40 and min(per_file.values()) >= 1
    # A stream over the cap is split into several files of one date= hour.
    per_hour = Counter((f["event_type"], f["date_hour"]) for f in manifest["files"])
    assert max(per_hour.values()) > 1


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    def digest(out: Path) -> dict[str, str]:
        return {
            p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*"))
            if p.is_file()
        }

    options = all_knobs_on(events=800, seed=11)
    a = generate_export(tmp_path / "a", options)
    b = generate_export(tmp_path / "b", all_knobs_on(events=800, seed=11))
    c = generate_export(tmp_path / "c", all_knobs_on(events=800, seed=12))
    assert a == b
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert c["files"] != a["files"]
    assert set(digest(tmp_path / "c").values()).isdisjoint(set(digest(tmp_path / "a").values()))


# --- the manifest is the ground truth -----------------------------------------------------


def test_all_knobs_manifest_matches_a_recount_of_the_data(knobs_export):
    out, manifest = knobs_export
    check_export(out, manifest)
    totals = manifest["totals"]
    for category in CATEGORIES:
        assert totals[category] > 0, category
    kinds = Counter(f["kind"] for f in manifest["files"])
    assert kinds["duplicate_file"] == 2 and kinds["corrupt"] == 1 and kinds["truncated"] == 1
    assert kinds["unsupported"] > 0 and {f["codec"] for f in manifest["files"]} == {
        "null",
        "deflate",
        "snappy",
    }


def test_knobs_off_by_default(tmp_path):
    manifest = generate_export(tmp_path / "x", small())
    check_export(tmp_path / "x", manifest)
    t = manifest["totals"]
    assert t["distinct_events"] == t["records_written"] == t["sendable"] == 1_500
    for category in ("duplicate_records", "anonymous", "test_events", "late", "unsupported"):
        assert t[category] == 0
    assert t["unreadable_records"] == 0
    assert {f["kind"] for f in manifest["files"]} == {"ok"}
    assert len({f["schema_id"] for f in manifest["files"]}) == 4  # one schema per type


# knob -> the categories it may change (everything else must stay exactly as without it)
KNOBS = {
    "duplicate_record_rate": (0.1, {"records_written", "duplicate_records"}),
    "duplicate_files": (3, {"records_written", "duplicate_records"}),
    "anonymous_rate": (0.2, {"anonymous", "sendable"}),
    "late_rate": (0.2, {"late"}),
    "test_events": (7, {"test_events", "distinct_events", "records_written"}),
    "unsupported_events": (25, {"unsupported", "distinct_events", "records_written"}),
    "corrupt_files": (2, {"unreadable_records"}),
    "truncated_files": (2, {"unreadable_records"}),
    "schema_versions": (True, set()),
}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> dict:
    return generate_export(tmp_path_factory.mktemp("base") / "x", small())


@pytest.mark.parametrize("knob", sorted(KNOBS))
def test_each_knob_changes_exactly_what_the_manifest_says(knob, baseline, tmp_path):
    value, changes = KNOBS[knob]
    out = tmp_path / "x"
    manifest = generate_export(out, small(**{knob: value}))
    check_export(out, manifest)
    t, base = manifest["totals"], baseline["totals"]
    for category in CATEGORIES:
        if category in changes:
            assert t[category] != base[category], category
        else:
            assert t[category] == base[category], category
    files = manifest["files"]
    if knob == "duplicate_files":
        copies = [f for f in files if f["kind"] == "duplicate_file"]
        assert len(copies) == 3
        originals = {f["path"]: f for f in files if f["kind"] == "ok"}
        for copy in copies:
            twin = [
                p
                for p, f in originals.items()
                if (out / p).read_bytes() == (out / copy["path"]).read_bytes()
            ]
            assert len(twin) == 1 and twin[0] != copy["path"]
            assert Path(twin[0]).parent == Path(copy["path"]).parent  # same folder, new offset
    if knob == "unsupported_events":
        kinds = {f["event_type"] for f in files if f["kind"] == "unsupported"}
        assert kinds and kinds <= set(UNSUPPORTED_TYPES)
        assert not any(catalogue.is_supported(k) for k in kinds)
    if knob in ("corrupt_files", "truncated_files"):
        broken = [f for f in files if f["kind"] != "ok"]
        assert len(broken) == 2 and {f["kind"] for f in broken} == {knob.split("_")[0]}
        for f in broken:
            with pytest.raises(Exception):  # noqa: B017 - any reader error will do
                read_records(out / f["path"])
    if knob == "schema_versions":
        by_type: dict[str, set[int]] = {}
        for f in files:
            by_type.setdefault(f["event_type"], set()).add(f["schema_id"])
        assert all(len(ids) == 2 for ids in by_type.values()), by_type
        for f in files:
            schema, _ = read_records(out / f["path"])
            names = {fld["name"] for fld in schema["fields"]}
            old = f["schema_id"] == min(by_type[f["event_type"]])
            if f["event_type"] in REMOVED_DISPATCH:
                assert ("dispatch_id" in names) == old
            current = {fld.name for fld in catalogue.load()[f["event_type"]].current_fields}
            if old:
                assert 1 <= len(current - names) <= 2  # newer optional fields missing
            else:
                assert names == current


def test_late_and_test_events_look_like_brazes(knobs_export):
    out, manifest = knobs_export
    late = tests = 0
    seen: set[str] = set()
    for f in manifest["files"]:
        if f["kind"] not in ("ok", "unsupported"):
            continue
        _, records = read_records(out / f["path"])
        start = datetime.strptime(f["date_hour"], "%Y-%m-%d-%H").replace(tzinfo=UTC).timestamp()
        for rec in records:
            if rec["id"] in seen:  # a re-delivered copy
                continue
            seen.add(rec["id"])
            if is_test_event(rec):
                tests += 1
                assert rec["external_user_id"] is not None  # never also anonymous
            elif rec["time"] < start:
                late += 1
                assert start - 3 * 86400 <= rec["time"] <= start - 3600
    assert tests == manifest["totals"]["test_events"]
    assert late == manifest["totals"]["late"]


def test_values_are_plausible(knobs_export):
    out, manifest = knobs_export
    external: Counter = Counter()
    ok = [f for f in manifest["files"] if f["kind"] == "ok"]
    for f in ok[:300]:
        schema, records = read_records(out / f["path"])
        names = {fld["name"] for fld in schema["fields"]}
        for rec in records:
            assert UUID.match(rec["id"])
            if is_test_event(rec):
                continue
            if rec.get("user_id") is not None:
                assert HEX24.match(rec["user_id"])
            if rec["external_user_id"] is not None:
                assert re.match(r"^user-\d+$", rec["external_user_id"])
                external[rec["external_user_id"]] += 1
            if "app_group_id" in names:
                assert rec["app_group_id"] == f["app_group_id"]
            if rec.get("email_address"):
                assert re.match(r"^[a-z]+\.[a-z]+\d+@[a-z.]+$", rec["email_address"])
            if rec.get("to_phone_number"):
                assert re.match(r"^\+1[2-9]\d{9}$", rec["to_phone_number"])
            if rec.get("timezone"):
                assert "/" in rec["timezone"]
            if rec.get("platform"):
                assert rec["platform"] in ("ios", "android", "web")
    assert max(external.values()) > 1, "users should repeat"


# --- schemas and readers ------------------------------------------------------------------


def _catalogue_shape(fields) -> list[tuple]:
    return [(f.name, f.type, f.nullable) for f in fields]


def _header_shape(schema: dict) -> list[tuple]:
    return [(f["name"], *catalogue.avro_field_type(f["type"])) for f in schema["fields"]]


def test_file_schemas_agree_with_the_catalogue(knobs_export):
    out, manifest = knobs_export
    seen: dict[int, dict] = {}
    for f in manifest["files"]:
        if f["kind"] in ("corrupt", "truncated") or f["schema_id"] in seen:
            continue
        with (out / f["path"]).open("rb") as fh:
            seen[f["schema_id"]] = (f["event_type"], fastavro.reader(fh).writer_schema)
    assert len({t for t, _ in seen.values()}) > 40
    for _, (event_type, schema) in seen.items():
        namespace, _, name = event_type.rpartition(".")
        assert schema["name"] == f"dataexport.S3.inner.{namespace}.{name}"
        shape = _header_shape(schema)
        if event_type in UNSUPPORTED_TYPES:
            published = SCHEMAS / f"{event_type}.avsc"
            if published.exists():
                assert shape == _header_shape(json.loads(published.read_text()))
            continue
        event = catalogue.load()[event_type]
        if shape != _catalogue_shape(event.current_fields):
            # An older schema: a subsequence of every field the type ever had.
            everything = _catalogue_shape(event.fields)
            assert shape == [f for f in everything if f in shape]
            assert all(f in shape for f in everything if not f[2])  # required ones all there


@pytest.mark.parametrize("codec", ["null", "deflate", "snappy"])
def test_codecs_are_readable_by_fastavro_and_duckdb(codec, tmp_path):
    out = tmp_path / "x"
    manifest = generate_export(
        out, small(codec=codec, events=600, corrupt_files=1, truncated_files=1)
    )
    con = duckdb.connect()
    if not duck.ensure_avro(con):
        pytest.skip("DuckDB's avro extension is not available here")
    for f in manifest["files"]:
        path = out / f["path"]
        with path.open("rb") as fh:
            assert fastavro.reader(fh).codec == codec
        if f["kind"] in ("corrupt", "truncated"):
            # fastavro fails; DuckDB 1.5.5 fails on truncation but returns NO rows and no
            # error for a garbage block: readers must compare with the block counts.
            with pytest.raises(Exception):  # noqa: B017
                read_records(path)
            try:
                got = con.execute("select count(*) from read_avro(?)", [str(path)]).fetchone()[0]
            except duckdb.Error:
                continue
            assert got < f["records"]
            continue
        _, records = read_records(path)
        rows = con.execute("select id, time from read_avro(?)", [str(path)]).fetchall()
        assert rows == [(r["id"], r["time"]) for r in records]


# --- errors and CLI -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"anonymous_rate": 1.5}, "anonymous_rate"),
        ({"codec": "zstd"}, "codec"),
        ({"workspaces": 0}, "workspaces"),
        ({"start": "01/11/2026"}, "start"),
        ({"event_types": ["users.messages.email.Nope"]}, "event_types"),
        ({"cluster": "prod+01"}, "cluster"),
        ({"events": 0, "duplicate_files": 1}, "duplicate_files"),
        ({"event_types": ["users.behaviors.Uninstall"], "test_events": 3}, "test_events"),
    ],
)
def test_bad_options_name_the_option_and_write_nothing(overrides, named, tmp_path):
    with pytest.raises(GenerateError, match=named):
        generate_export(tmp_path / "x", small(**overrides))
    assert not (tmp_path / "x").exists()


def test_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "old.avro").write_bytes(b"x")
    with pytest.raises(GenerateError, match="not empty"):
        generate_export(tmp_path / "x", small())


def test_cli_writes_the_export_and_prints_a_summary(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    args = [str(out), "--events", "400", "--seed", "5", "--workspaces", "2"]
    args += ["--integrations", "2", "--days", "2", "--codec", "snappy", "--all-knobs"]
    args += ["--duplicate-files", "1", "--no-progress"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "records_written" in result.output and "unreadable_records" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    o = manifest["options"]
    assert (o["events"], o["seed"], o["workspaces"], o["days"]) == (400, 5, 2, 2)
    assert o["duplicate_files"] == 1 and o["schema_versions"] and o["codec"] == "snappy"
    assert len({f["date_hour"][:10] for f in manifest["files"]}) == 2
    check_export(out, manifest)
    again = runner.invoke(cli, [str(out), "--events", "10"])
    assert again.exit_code != 0 and "not empty" in again.output
    knobs = runner.invoke(cli, [str(tmp_path / "k"), "--all-knobs", "--events", "300"])
    assert knobs.exit_code == 0, knobs.output
    o = json.loads((tmp_path / "k" / "manifest.json").read_text())["options"]
    assert o == {**vars(all_knobs_on()), "events": 300}
    bad = runner.invoke(cli, [str(tmp_path / "bad"), "--late-rate", "2"])
    assert bad.exit_code != 0 and "late_rate" in bad.output


def test_same_bytes_across_processes_with_other_hash_seeds(tmp_path):
    """No set or hash order leaks into the output (PYTHONHASHSEED differs per process)."""
    import os
    import subprocess
    import sys

    def run(out: Path, hash_seed: str) -> dict[str, str]:
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        args = [sys.executable, "-m", "currents_segment.cli", "generate", str(out)]
        args += ["--events", "200", "--all-knobs", "--no-progress"]
        args += [
            "--event-type",
            "users.messages.email.Send",
            "--event-type",
            "users_messages_sms_send",
        ]
        subprocess.run(args, env=env, check=True, capture_output=True)
        return {
            p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*"))
            if p.is_file()
        }

    assert run(tmp_path / "a", "1") == run(tmp_path / "b", "2")
