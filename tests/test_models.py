"""dbt build on landed data: the Segment shape of every Braze sample, integrity, incrementality.

Each dbt invocation costs seconds here, so one module-scoped warehouse is built once from Braze's
samples (landed by the real landing) and a small generated export; the tests then read it.
Tests that break things (seeded defects) work on a copy of the warehouse file.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import fastavro
import pytest

from conftest import SAMPLES
from currents_segment import catalogue, landing, transform
from currents_segment.generate import GenerateOptions, generate_export, load_manifest

pytestmark = pytest.mark.skipif(not SAMPLES.exists(), reason=f"{SAMPLES} is not there")

# The domain rules (shared/domain/currents.md, "How Braze shapes each event for Segment"):
# these fields never become properties; traits/device sources and per-type exclusions neither.
ALWAYS_EXCLUDED = {"id", "user_id", "external_user_id", "time", "timezone"}
SEGMENT_LIMIT_BYTES = 32768
ANONYMOUS_SAMPLE = "users.messages.whatsapp.InboundReceive"  # its external_user_id is nulled
DUPLICATED_SAMPLE = "users.messages.email.Send"  # landed twice (an at-least-once re-delivery)
# A type outside the catalogue, landed twice the same way.
REDELIVERED_UNSUPPORTED = SAMPLES / "users.messages.banner.Click.avro"
# This project's nodes (the reconcile models in models/reports have their own tests).
OUR_NODES = (
    "path:seeds path:models/staging/currents path:models/intermediate path:models/marts "
    "path:tests/dbt"
)


def sample_records(event_type: str) -> list[dict]:
    with (SAMPLES / f"{event_type}.avro").open("rb") as fh:
        return list(fastavro.reader(fh))


def sample_id(event: catalogue.EventType, row_in_file: int) -> str:
    """Samples share one id: the test lands them with ids made distinct per type and row."""
    return f"{event.table_name}-{row_in_file}"


def expected_track_call(event: catalogue.EventType, record: dict, message_id: str) -> dict:
    """The track call Braze's connector would send, from the domain rules and the catalogue."""
    moved = {*event.context_traits.values(), *event.context_device.values()}
    skipped = ALWAYS_EXCLUDED | moved | set(event.excluded_properties)
    properties = {}
    for f in event.fields:
        if f.name in skipped or record.get(f.name) is None:
            continue
        properties[event.property_renames.get(f.name, f.name)] = record[f.name]
    call: dict = {"messageId": message_id, "type": "track", "event": event.segment_event}
    if record.get("external_user_id") is not None:
        call["userId"] = record["external_user_id"]
    if record.get("user_id") is not None:
        call["anonymousId"] = record["user_id"]
    call["timestamp"] = datetime.fromtimestamp(record["time"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    call["context"] = {
        "device": {k: record[v] for k, v in event.context_device.items() if record.get(v)},
        "traits": {k: record[v] for k, v in event.context_traits.items() if record.get(v)},
    }
    call["properties"] = properties
    return call


def supported_samples() -> list[catalogue.EventType]:
    return [t for t in catalogue.supported() if (SAMPLES / f"{t.event_type}.avro").exists()]


def _outbox(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CURRENTS_SEGMENT_HOME", str(base / "home"))
        mp.delenv("CURRENTS_SEGMENT_DB", raising=False)
        mp.setenv("DO_NOT_TRACK", "1")
        yield base


@pytest.fixture(scope="module")
def warehouse(home) -> Path:
    """Braze's samples landed (ids made distinct, one re-delivered, one anonymous), then built."""
    db = home / "warehouse.duckdb"
    samples = sorted(str(p) for p in SAMPLES.glob("*.avro"))
    result = landing.ingest(samples, db_path=db)
    assert not [p for p in result.problems if p.kind != "unsupported"], result.problems
    # A re-delivery: the same file again under another name, as Braze's reprocessing writes it.
    redelivered = home / "redelivered" / f"{DUPLICATED_SAMPLE}+0+1.avro"
    redelivered.parent.mkdir()
    shutil.copy(SAMPLES / f"{DUPLICATED_SAMPLE}.avro", redelivered)
    landing.ingest([str(redelivered)], db_path=db)
    # And a file of a type outside the catalogue, re-delivered the same way.
    again = home / "redelivered" / f"{REDELIVERED_UNSUPPORTED.stem}+0+1.avro"
    shutil.copy(REDELIVERED_UNSUPPORTED, again)
    landing.ingest([str(again)], db_path=db)
    con = duckdb.connect(str(db))
    try:
        for event in catalogue.supported():
            con.execute(
                f'update raw_currents."{event.table_name}" '
                "set id = ? || '-' || cast(_row_in_file as varchar)",
                [event.table_name],
            )
        anonymous = catalogue.resolve(ANONYMOUS_SAMPLE).table_name
        con.execute(f'update raw_currents."{anonymous}" set external_user_id = null')
    finally:
        con.close()
    built = transform.build(db_path=db, select=OUR_NODES)
    assert built.exit_code == transform.EXIT_OK, built.failing_nodes or built.exception
    # 51 staging + 15 other models, 2 seeds, data and unit tests.
    assert built.failed == 0 and built.errored == 0 and built.passed > 130
    return db


@pytest.mark.parametrize("event", supported_samples(), ids=lambda t: t.event_type)
def test_sample_track_call_has_brazes_segment_shape(warehouse, event):
    records = sample_records(event.event_type)
    rows = _outbox(
        warehouse,
        "select message_id, payload_json, payload_bytes, event, family, user_id, anonymous_id, "
        "event_timestamp, is_sendable, not_sendable_reason "
        "from marts.fct_segment_outbox where currents_event_type = ? order by row_in_file",
        [event.event_type],
    )
    assert len(rows) == len(records), f"{event.event_type}: {len(rows)} outbox rows"
    for row_in_file, (record, row) in enumerate(zip(records, rows, strict=True)):
        message_id, payload_json, size, name, family, user_id, anonymous_id, ts, ok, reason = row
        assert message_id == sample_id(event, row_in_file)
        if event.event_type == ANONYMOUS_SAMPLE:
            record["external_user_id"] = None
        payload = json.loads(payload_json)
        assert payload == expected_track_call(event, record, message_id)
        assert next(iter(payload)) == "messageId", "messageId must be the first key"
        assert size == len(payload_json.encode())
        assert (name, family) == (event.segment_event, event.family)
        assert user_id == record["external_user_id"] and anonymous_id == record["user_id"]
        assert ts == datetime.fromtimestamp(record["time"], UTC).replace(tzinfo=None)
        if event.event_type == ANONYMOUS_SAMPLE:
            assert (ok, reason) == (False, "no_external_user_id")
            assert "userId" not in payload
        else:
            assert (ok, reason) == (True, None)


def test_renames_traits_and_device_are_in_the_samples(warehouse):
    """The glossary's per-event differences, spelled out on three samples."""
    rows = dict(
        _outbox(
            warehouse,
            "select currents_event_type, payload_json from marts.fct_segment_outbox "
            "where currents_event_type in (?, ?, ?)",
            [
                "users.messages.email.Click",
                "users.messages.contentcard.Click",
                "users.behaviors.subscriptiongroup.StateChange",
            ],
        )
    )
    click = json.loads(rows["users.messages.email.Click"])
    assert click["properties"]["link_url"] == "url" and "url" not in click["properties"]
    assert click["context"]["traits"] == {"email": "example@braze.com"}
    assert click["properties"]["suspected_bot_click_reason"] == ["suspected_bot_click_reason"]
    assert "timezone" not in click["properties"] and "email_address" not in click["properties"]
    card = json.loads(rows["users.messages.contentcard.Click"])
    assert "card_id" in card["properties"] and "content_card_id" not in card["properties"]
    assert set(card["context"]["device"]) == {"model", "type"}
    state = json.loads(rows["users.behaviors.subscriptiongroup.StateChange"])
    assert "phone_number" not in state["properties"] and "phone" not in state["context"]["traits"]


def test_duplicates_are_removed_and_kept_for_counting(warehouse):
    (dupes,) = _outbox(
        warehouse,
        "select count(*) from intermediate.int_currents__duplicate_events "
        "where currents_event_type = ?",
        [DUPLICATED_SAMPLE],
    )
    assert dupes == (1,)
    # The first landed copy is kept: the one from the lower file id.
    kept, removed = _outbox(
        warehouse,
        "select (select file_id from intermediate.int_currents__deduplicated_events "
        "        where currents_event_type = ?), "
        "       (select file_id from intermediate.int_currents__duplicate_events "
        "        where currents_event_type = ?)",
        [DUPLICATED_SAMPLE, DUPLICATED_SAMPLE],
    )[0]
    assert kept < removed


def test_integrity_holds_per_workspace_and_type(warehouse):
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for event in catalogue.supported():
            landed = con.execute(f'select count(*) from raw_currents."{event.table_name}"')
            (landed_rows,) = landed.fetchone()
            counts = [
                con.execute(
                    f"select count(*) from {rel} where currents_event_type = ?", [event.event_type]
                ).fetchone()[0]
                for rel in (
                    "intermediate.int_currents__deduplicated_events",
                    "intermediate.int_currents__duplicate_events",
                    "marts.fct_segment_outbox",
                )
            ]
            assert landed_rows == counts[0] + counts[1], event.event_type
            assert counts[0] == counts[2], event.event_type
    finally:
        con.close()


def test_unsupported_types_are_counted_not_sent(warehouse):
    supported_tables = {t.table_name for t in catalogue.supported()}
    unsupported_samples = [
        p
        for p in SAMPLES.glob("*.avro")
        if catalogue.table_name_for(p.stem) not in supported_tables
    ]
    rows = _outbox(
        warehouse,
        "select currents_event_type, sum(event_count) "
        "from intermediate.int_currents__unsupported_events group by 1",
    )
    counted = dict(rows)
    assert len(counted) == len(unsupported_samples)
    assert all(n >= 1 for n in counted.values())
    assert not set(counted) & {t.event_type for t in catalogue.supported()}
    # The re-delivered file: its records count twice, its events once (as exported events do).
    with REDELIVERED_UNSUPPORTED.open("rb") as fh:
        records = list(fastavro.reader(fh))
    [(records_counted, events_counted)] = _outbox(
        warehouse,
        "select sum(event_count), sum(distinct_event_count) "
        "from intermediate.int_currents__unsupported_events where raw_table_name = ?",
        [catalogue.table_name_for(REDELIVERED_UNSUPPORTED.stem)],
    )
    assert records_counted == 2 * len(records)
    assert events_counted == len({r["id"] for r in records})


def test_engagement_mart_counts_the_samples(warehouse):
    rows = _outbox(
        warehouse,
        "select channel, sum(sends), sum(deliveries), sum(opens), sum(clicks), sum(bounces), "
        "sum(unsubscribes), sum(conversions) from marts.fct_message_engagement_daily "
        "group by 1 order by 1",
    )
    by_channel = {r[0]: r[1:] for r in rows}
    # One sample per type; email has Send, Delivery, Open, Click, Bounce, Unsubscribe.
    assert by_channel["email"] == (1, 1, 1, 1, 1, 1, 0)
    assert by_channel["campaigns"][-1] == 1 and by_channel["canvas"][-1] == 2


def test_seeded_defect_fails_the_integrity_test(warehouse, home):
    """A deleted de-duplicated row must fail the integrity test (it can fail)."""
    # Same file name in another folder: dbt-duckdb's views name the catalog (the file's stem).
    broken = home / "broken" / warehouse.name
    broken.parent.mkdir()
    shutil.copy(warehouse, broken)
    con = duckdb.connect(str(broken))
    try:
        con.execute(
            "delete from intermediate.int_currents__landed_events_flagged "
            "where currents_event_type = 'users.messages.sms.Send' and is_first_copy"
        )
    finally:
        con.close()
    result = transform.build(
        db_path=broken, select="assert_landed_equals_deduplicated_plus_duplicates"
    )
    assert result.exit_code == transform.EXIT_TESTS_FAILED
    assert [n.unique_id for n in result.failing_nodes] == [
        "test.currents_segment.assert_landed_equals_deduplicated_plus_duplicates"
    ]


def test_generated_export_builds_incrementally_and_matches_ground_truth(warehouse, home):
    """Append a generated export: the outbox gains exactly its events, old rows untouched."""
    db = home / "incremental" / warehouse.name
    db.parent.mkdir()
    shutil.copy(warehouse, db)
    con = duckdb.connect(str(db))
    try:
        # A mark on an old row survives only if the run appends instead of rebuilding.
        con.execute(
            "update marts.fct_segment_outbox set integration_id = 'kept-by-incremental' "
            "where currents_event_type = 'users.messages.email.Open'"
        )
        (before,) = con.execute("select count(*) from marts.fct_segment_outbox").fetchone()
    finally:
        con.close()
    export = home / "export"
    options = GenerateOptions(
        events=400,
        seed=7,
        workspaces=2,
        duplicate_record_rate=0.05,
        anonymous_rate=0.1,
        test_events=5,
        unsupported_events=10,
    )
    generate_export(export, options)
    truth = load_manifest(export)
    landing.ingest([str(export)], db_path=db)
    result = transform.build(db_path=db, select=OUR_NODES)
    assert result.exit_code == transform.EXIT_OK, result.failing_nodes or result.exception

    supported = {t.event_type for t in catalogue.supported()}
    expected: dict[str, int] = {}
    for row in truth["counts"]:
        if row["event_type"] in supported:
            expected[row["category"]] = expected.get(row["category"], 0) + row["records"]
    (mark,) = _outbox(
        db,
        "select count(*) from marts.fct_segment_outbox "
        "where integration_id = 'kept-by-incremental'",
    )[0:1]
    assert mark == (1,)
    new = dict(
        _outbox(
            db,
            "select coalesce(not_sendable_reason, 'sendable'), count(*) "
            "from marts.fct_segment_outbox where source_file like ? group by 1",
            [f"{export}%"],
        )
    )
    assert sum(new.values()) == expected["distinct_events"]
    assert new.get("sendable", 0) == expected["sendable"]
    assert new.get("test_event", 0) == expected["test_events"]
    assert new.get("no_external_user_id", 0) == expected["anonymous"]
    ((total,),) = _outbox(db, "select count(*) from marts.fct_segment_outbox")
    assert total == before + expected["distinct_events"]
    ((dupes,),) = _outbox(
        db,
        "select count(*) from intermediate.int_currents__duplicate_events where source_file like ?",
        [f"{export}%"],
    )
    assert dupes == expected["duplicate_records"]
    ((oversize,),) = _outbox(
        db,
        "select count(*) from marts.fct_segment_outbox where payload_bytes > ?",
        [SEGMENT_LIMIT_BYTES],
    )
    assert oversize == 0


def test_unknown_excluded_event_type_is_a_clear_dbt_error(warehouse):
    result = transform.build(
        db_path=warehouse,
        select="fct_segment_outbox",
        vars={"outbox_excluded_event_types": ["users.messages.email.Sent"]},
    )
    assert result.exit_code == transform.EXIT_DBT_ERROR
    messages = " ".join(n.message for n in result.failing_nodes) + (result.exception or "")
    assert "outbox_excluded_event_types" in messages and "users.messages.email.Sent" in messages


def _copy_with_new_export(warehouse: Path, home: Path, name: str, seed: int) -> tuple[Path, Path]:
    """A copy of the built warehouse with a small generated export landed (not yet built)."""
    db = home / name / warehouse.name
    db.parent.mkdir()
    shutil.copy(warehouse, db)
    export = home / f"{name}-export"
    generate_export(export, GenerateOptions(events=200, seed=seed, workspaces=2))
    landing.ingest([str(export)], db_path=db)
    return db, export


def _failing(result: transform.BuildResult) -> set[str]:
    return {n.unique_id.split(".")[2] for n in result.failing_nodes}


def test_incremental_build_tests_new_rows_and_all_rows_on_request(warehouse, home):
    """Scoped data tests skip an old row's defect; data_tests_scope=all still finds it."""
    db, _ = _copy_with_new_export(warehouse, home, "scope-old-defect", seed=11)
    con = duckdb.connect(str(db))
    try:
        con.execute(
            "update marts.fct_segment_outbox set not_sendable_reason = 'bogus', is_sendable = false "
            "where currents_event_type = 'users.messages.email.Open'"
        )
    finally:
        con.close()
    scoped = transform.build(db_path=db, select=OUR_NODES, exclude="test_type:unit")
    assert scoped.exit_code == transform.EXIT_OK, scoped.failing_nodes or scoped.exception
    everything = transform.build(
        db_path=db,
        select=OUR_NODES,
        exclude="test_type:unit",
        vars={"data_tests_scope": "all"},
    )
    assert everything.exit_code == transform.EXIT_TESTS_FAILED
    assert any(n.startswith("accepted_values_fct_segment_outbox") for n in _failing(everything))


def test_incremental_build_fails_on_a_new_rows_defect_until_fixed(warehouse, home):
    """A defect in newly landed rows fails the build, and the next build tests them again."""
    db, export = _copy_with_new_export(warehouse, home, "scope-new-defect", seed=12)
    table = catalogue.resolve("users.messages.email.Send").table_name
    con = duckdb.connect(str(db))
    try:
        (nulled,) = con.execute(
            f'update raw_currents."{table}" set id = null where _source_file like ?',
            [f"{export}%"],
        ).fetchone()
    finally:
        con.close()
    assert nulled > 0
    first = transform.build(db_path=db, select=OUR_NODES, exclude="test_type:unit")
    assert first.exit_code == transform.EXIT_TESTS_FAILED
    assert "not_null_int_currents__landed_events_flagged_currents_id" in _failing(first)
    # Nothing new lands: a failed build did not move the watermark, so the rows are tested again.
    again = transform.build(db_path=db, select=OUR_NODES, exclude="test_type:unit")
    assert again.exit_code == transform.EXIT_TESTS_FAILED
    assert "not_null_int_currents__landed_events_flagged_currents_id" in _failing(again)


def _engagement(db: Path) -> list[tuple]:
    return _outbox(db, "select * from marts.fct_message_engagement_daily order by all")


def test_engagement_mart_incremental_equals_a_full_rebuild(warehouse, home):
    """Two incremental builds, the second landing late events into a day already counted, leave
    the daily mart equal row for row to a --full-refresh rebuild of it."""
    db = home / "engagement" / warehouse.name
    db.parent.mkdir()
    shutil.copy(warehouse, db)
    first = home / "engagement-export-1"
    generate_export(first, GenerateOptions(events=300, seed=21, workspaces=2, days=2))
    landing.ingest([str(first)], db_path=db)
    built = transform.build(db_path=db, select=OUR_NODES, exclude="test_type:unit")
    assert built.exit_code == transform.EXIT_OK, built.failing_nodes or built.exception
    days_before = {
        r[0] for r in _outbox(db, "select event_date from marts.fct_message_engagement_daily")
    }

    late = home / "engagement-export-2"
    options = GenerateOptions(
        events=300, seed=22, workspaces=2, start="2026-11-02", late_rate=0.5, test_events=3
    )
    generate_export(late, options)
    landing.ingest([str(late)], db_path=db)
    touched = {
        r[0]
        for r in _outbox(
            db,
            "select distinct cast(time_ as date) from ("
            "select event_timestamp as time_ from intermediate.int_currents__landed_events "
            "where source_file like ?)",
            [f"{late}%"],
        )
    }
    assert touched & days_before, "the late events land into a day already counted"
    built = transform.build(db_path=db, select=OUR_NODES, exclude="test_type:unit")
    assert built.exit_code == transform.EXIT_OK, built.failing_nodes or built.exception
    incremental = _engagement(db)

    rebuilt = transform.build(db_path=db, select="fct_message_engagement_daily", full_refresh=True)
    assert rebuilt.exit_code == transform.EXIT_OK, rebuilt.failing_nodes or rebuilt.exception
    assert incremental == _engagement(db)
    assert len(incremental) > 0


def _tested_through(db: Path):
    return _outbox(db, "select tested_through from intermediate.cs_data_tests_scope")[0][0]


def test_watermark_moves_only_when_every_new_rows_data_test_ran(warehouse, home):
    """A passing build that left out one data test on a new-row model (here by --exclude) keeps
    the watermark, so the next full build tests those rows; that build moves it."""
    db, _ = _copy_with_new_export(warehouse, home, "scope-partial", seed=13)
    before = _tested_through(db)
    partial = transform.build(
        db_path=db,
        select=OUR_NODES,
        exclude="test_type:unit not_null_int_currents__landed_events_flagged_currents_id",
    )
    assert partial.exit_code == transform.EXIT_OK, partial.failing_nodes or partial.exception
    assert _tested_through(db) == before
    downstream = transform.build(
        db_path=db, select="fct_segment_outbox+", exclude="path:models/reports test_type:unit"
    )
    assert downstream.exit_code == transform.EXIT_OK, downstream.failing_nodes
    assert _tested_through(db) == before
    complete = transform.build(db_path=db, select=OUR_NODES, exclude="test_type:unit")
    assert complete.exit_code == transform.EXIT_OK, complete.failing_nodes or complete.exception
    ((newest,),) = _outbox(db, "select max(loaded_at) from marts.fct_segment_outbox")
    assert _tested_through(db) == newest > before


def _staging_messages(db: Path) -> dict[str, str]:
    """What the last build said about each staging view (from dbt's run_results.json)."""
    results = json.loads(
        (transform.dbt_artifacts_dir(db) / "target" / "run_results.json").read_text()
    )
    return {
        r["unique_id"].split(".")[-1]: r["message"]
        for r in results["results"]
        if r["unique_id"].split(".")[-1].startswith("stg_currents__")
    }


def _comments(db: Path) -> dict[str, str | None]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(
            con.execute(
                "select view_name, comment from duckdb_views() "
                "where not internal and view_name like 'stg_currents__%'"
            ).fetchall()
        )
    finally:
        con.close()


def test_unchanged_views_are_kept_and_changed_ones_rebuilt(warehouse, home):
    """The project's view materialization skips a view whose definition has not changed."""
    db, _ = _copy_with_new_export(warehouse, home, "views", seed=41)
    before = _comments(db)
    assert len(before) == len(catalogue.supported())
    assert all((c or "").startswith("cs_view_fingerprint:") for c in before.values())
    built = transform.build(db_path=db, select=OUR_NODES)
    assert built.exit_code == transform.EXIT_OK, built.failing_nodes or built.exception
    assert set(_staging_messages(db).values()) == {"view unchanged"}
    assert _comments(db) == before
    # A view whose recorded definition differs (as after an upgrade) is rebuilt, alone.
    stale = sorted(before)[0]
    con = duckdb.connect(str(db))
    try:
        schema = con.execute(
            "select schema_name from duckdb_views() where view_name = ?", [stale]
        ).fetchone()[0]
        con.execute(f"comment on view {schema}.{stale} is 'a definition from an older version'")
    finally:
        con.close()
    built = transform.build(db_path=db, select=OUR_NODES)
    assert built.exit_code == transform.EXIT_OK, built.failing_nodes or built.exception
    messages = _staging_messages(db)
    assert messages[stale] != "view unchanged"
    assert {m for k, m in messages.items() if k != stale} == {"view unchanged"}
    assert _comments(db) == before
    # --full-refresh rebuilds every view.
    built = transform.build(db_path=db, select=OUR_NODES, full_refresh=True)
    assert built.exit_code == transform.EXIT_OK, built.failing_nodes or built.exception
    assert "view unchanged" not in set(_staging_messages(db).values())
    # The kept views read the rows landed after they were built.
    new_rows = _outbox(db, "select count(*) from marts.fct_segment_outbox")[0][0]
    old_rows = _outbox(warehouse, "select count(*) from marts.fct_segment_outbox")[0][0]
    assert new_rows > old_rows
