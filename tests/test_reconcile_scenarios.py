"""End to end: generate -> ingest -> dbt build -> push through the emulator (with faults) ->
receive -> reconcile. The report's numbers must equal what was injected, id for id, and the
exit code must say so.

One export is generated, landed and built once per module; each scenario works on a copy of
that warehouse in its own home (the emulator, ledger and reports are per scenario).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import requests
import yaml

from currents_segment import connectors, generate, landing, push, receive, reconcile, transform
from currents_segment.emulator import read_table, running_emulator

pytestmark = pytest.mark.slow

US_KEY = "reconcile-test-key-us-0001"
US2_KEY = "reconcile-test-key-us-0002"
EU_KEY = "reconcile-test-key-eu-0003"
AS_OF = datetime(2026, 11, 2, 12, 0, 0)  # 36 h after the export's first hour


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A generated export (2 Braze workspaces, every knob that matters here), landed and built."""
    root = tmp_path_factory.mktemp("reconcile_chain")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CURRENTS_SEGMENT_HOME", str(root / "home"))
        for var in ("CURRENTS_SEGMENT_DB", "CURRENTS_SEGMENT_LEDGER", "CURRENTS_SEGMENT_REPORTS"):
            mp.delenv(var, raising=False)
        options = generate.GenerateOptions(
            events=1200,
            seed=11,
            workspaces=2,
            days=1,
            start="2026-11-01",
            anonymous_rate=0.1,
            test_events=6,
            unsupported_events=20,
            duplicate_record_rate=0.02,
        )
        manifest = generate.generate_export(root / "export", options)
        db = root / "home" / "warehouse.duckdb"
        landing.ingest([str(root / "export")], db_path=db)
        result = transform.build(db_path=db)
        assert result.exit_code == 0, result.failing_nodes[:3]
    return {"db": db, "manifest": manifest}


@pytest.fixture
def home(built, cs_home, monkeypatch):
    shutil.copy(built["db"], cs_home / "warehouse.duckdb")
    monkeypatch.setenv("RECONCILE_KEY_US", US_KEY)
    monkeypatch.setenv("RECONCILE_KEY_US2", US2_KEY)
    monkeypatch.setenv("RECONCILE_KEY_EU", EU_KEY)
    monkeypatch.delenv(reconcile.WEBHOOK_ENV, raising=False)
    return cs_home


def totals(manifest: dict) -> Counter:
    out: Counter = Counter()
    for row in manifest["counts"]:
        out[row["category"]] += row["records"]
    return out


def unsupported_copies(manifest: dict) -> int:
    from currents_segment import catalogue

    return sum(
        r["records"]
        for r in manifest["counts"]
        if r["category"] == "duplicate_records" and not catalogue.is_supported(r["event_type"])
    )


def emulator_config(us_revoked_windows=None, two_us_sources=False) -> dict:
    us_sources = [
        {"name": "Braze US", "slug": "braze_us", "write_key": US_KEY,
         "revoked_windows": us_revoked_windows or []},
    ]  # fmt: skip
    if two_us_sources:
        us_sources.append({"name": "Braze US 2", "slug": "braze_us_2", "write_key": US2_KEY})
    return {
        "dedupe_window_hours": 24,
        "flush_interval_seconds": 1,
        "public_api_token": "volume-token",
        "workspaces": [
            {"name": "acme-us", "region": "us", "sources": us_sources},
            {"name": "acme-eu", "region": "eu",
             "sources": [{"name": "Braze EU", "slug": "braze_eu", "write_key": EU_KEY}]},
        ],
    }  # fmt: skip


def connector(name, workspace="acme-us", source="braze_us", region="us", key="RECONCILE_KEY_US",
              message_id="braze_id", event_types=("*",)) -> dict:  # fmt: skip
    return {
        "name": name,
        "braze_workspaces": ["*"],
        "event_types": list(event_types),
        "segment": {"workspace": workspace, "source": source, "region": region,
                    "write_key_env": key},
        "message_id": message_id,
    }  # fmt: skip


def push_all(home: Path, items: list[dict], emu) -> push.PushResult:
    path = home / "connectors.yml"
    fast = {"retry_base_seconds": 0.01, "retry_max_seconds": 0.2, "timeout_seconds": 10}
    path.write_text(yaml.safe_dump({"push": fast, "connectors": items}))
    result = push.run_push(
        connectors.load(path), push.PushOptions(api_base=emu.url, progress=False)
    )
    emu.flush()
    return result


def receive_store(home: Path, config: dict, routes: list[dict] | None = None) -> None:
    (home / "emulator.yml").write_text(yaml.safe_dump(config))
    con = receive.connect_warehouse()
    try:
        workspaces = receive.emulator_workspaces(home / "emulator.yml")
        receive.receive_directory(con, home / "store", workspaces, "emulator")
        if routes is not None:
            receive.load_routes(con, routes)
    finally:
        con.close()


def run_reconcile(home: Path, **kw) -> reconcile.ReconcileResult:
    options = reconcile.Options(as_of=AS_OF, out_dir=home / "report", **kw)
    return reconcile.reconcile(options)


def gap_ids(result: reconcile.ReconcileResult, kind: str) -> Counter:
    con = duckdb.connect(str(result.files["csv"].parent / "check.duckdb"))
    try:
        rows = con.execute(
            "select message_id, extra_copies from read_csv(?, header = true, all_varchar = true) "
            "where gap_kind = ?",
            [str(result.files["csv"]), kind],
        ).fetchall()
    finally:
        con.close()
    return Counter({m: int(n or 0) for m, n in rows})


def test_clean_push_reports_zero_gaps_and_the_manifest_counts(built, home):
    truth = totals(built["manifest"])
    today = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    start, end = today - timedelta(days=1), today + timedelta(days=1)  # Segment counts arrivals
    with running_emulator(emulator_config(), home / "store") as emu:
        pushed = push_all(home, [connector("all-us")], emu)
        volumes = receive.fetch_volumes(emu.url, "volume-token", start, end, requests_per_minute=0)
    assert pushed.exit_code == 0
    receive_store(home, emulator_config())
    con = receive.connect_warehouse()
    receive.receive_volumes(con, "acme-us", volumes, start, end)
    con.close()
    result = run_reconcile(home, time_basis="date_hour")
    doc = result.document
    assert result.exit_code == 0, doc["reasons"]
    assert doc["status"] == "clean" and doc["mode"] == "push" and doc["time_basis"] == "date_hour"
    t = doc["totals"]
    assert t["exported"] == truth["sendable"] + truth["anonymous"] + truth["test_events"]
    assert t["skipped_no_external_id"] == truth["anonymous"]
    assert t["skipped_test_event"] == truth["test_events"]
    # Unsupported events count once each, as exported ones do (re-delivered copies apart).
    assert t["skipped_unsupported"] == truth["unsupported"]
    assert (
        t["sendable"] == t["sent"] == t["received"] == t["received_distinct"] == truth["sendable"]
    )
    assert t["missing"] == t["duplicates"] == t["unexpected"] == 0
    assert doc["gaps"]["rows"] == 0 and doc["outages"] == [] and doc["breaches"] == []
    assert doc["gate_passed"] and all(e["success"] for e in doc["expectations"])
    # The Public API's counts (no ids) agree with what was expected, event by event.
    assert doc["volumes"] and all(v["api_minus_sendable"] == 0 for v in doc["volumes"])
    assert sum(v["api_events"] for v in doc["volumes"]) == truth["sendable"]
    # Per event type and date= hour, what arrived equals the manifest's sendable counts.
    # (Per Braze workspace too, except users.canvas.experimentstep.*: their records carry no
    # app_group_id, so the outbox cannot name their workspace.)
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        # Every landed record of them is counted too, re-delivered copies included (this
        # export has none of them; test_models re-delivers an unsupported file).
        records, distinct = con.execute(
            "select sum(event_count), sum(distinct_event_count) "
            "from intermediate.int_currents__unsupported_events"
        ).fetchone()
        assert (records, distinct) == (
            truth["unsupported"] + unsupported_copies(built["manifest"]),
            truth["unsupported"],
        )
        rows = con.execute(
            "select app_group_id, currents_event_type, period_hour, sum(received_distinct) "
            "from reports.rpt_reconcile_hourly where received_distinct > 0 group by all"
        ).fetchall()
    finally:
        con.close()
    ours_by_type: Counter = Counter()
    ours_by_workspace: Counter = Counter()
    for ag, event_type, hour, n in rows:
        ours_by_type[(event_type, hour.strftime("%Y-%m-%d-%H"))] += n
        if ag is not None:
            ours_by_workspace[(ag, hour.strftime("%Y-%m-%d-%H"))] += n
    by_type: Counter = Counter()
    by_workspace: Counter = Counter()
    for row in built["manifest"]["counts"]:
        if row["category"] == "sendable":
            by_type[(row["event_type"], row["date_hour"])] += row["records"]
            if not row["event_type"].startswith("users.canvas.experimentstep."):
                by_workspace[(row["app_group_id"], row["date_hour"])] += row["records"]
    assert ours_by_type == by_type
    assert ours_by_workspace == by_workspace
    saved = json.loads(result.files["json"].read_text())
    assert saved["schema_version"] == 1 and saved["status"] == "clean"
    assert result.files["csv"].read_text().splitlines()[0].startswith("gap_kind,")


def test_injected_loss_duplication_and_a_revoked_key_are_reported_exactly(built, home):
    # The write key is revoked for two hours of event time: Segment answers 200 and drops them.
    window = [{"from": "2026-11-01T05:00:00Z", "to": "2026-11-01T07:00:00Z"}]
    config = emulator_config(us_revoked_windows=window)
    faults = {"silent_loss_rate": 0.03, "duplicate_delivery_rate": 0.02, "seed": 5}
    with running_emulator(config, home / "store", faults=faults) as emu:
        pushed = push_all(home, [connector("all-us")], emu)
        stats = emu.stats()
    assert pushed.exit_code == 0  # every batch got its 200: only reconciliation sees the loss
    dropped = read_table(home / "store", "_emulator", "dropped")
    duplicated = read_table(home / "store", "_emulator", "duplicated")
    lost = Counter(r["message_id"] for r in dropped)
    reasons = Counter(r["reason"] for r in dropped)
    assert reasons["revoked_write_key"] > 0 and reasons["injected_loss"] > 0
    receive_store(home, config)
    result = run_reconcile(home, retention_hours=48)
    doc = result.document
    assert result.exit_code == 1 and doc["status"] == "breached"
    t = doc["totals"]
    assert (
        t["missing"]
        == t["missing_after_ack"]
        == sum(lost.values())
        == sum(stats["events_dropped"].values())
    )
    assert t["duplicates"] == len(duplicated) == stats["events_duplicated"]
    assert t["unexpected"] == 0
    assert gap_ids(result, "missing") == Counter(dict.fromkeys(lost, 0))
    assert gap_ids(result, "duplicate") == Counter(r["message_id"] for r in duplicated)
    # The revoked hours are an outage (nothing arrived), 36 h into a 48 h deletion window.
    outages = [o for o in doc["outages"] if o["segment_source"] == "braze_us"]
    hours = {(o["outage_start"], o["outage_end"]) for o in outages}
    assert ("2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z") in hours
    revoked = next(o for o in outages if o["outage_start"] == "2026-11-01T05:00:00Z")
    assert revoked["arrived"] == 0 and revoked["hours_left"] == 48 - 31
    assert revoked["recovery_status"] == "recoverable"
    metrics = {b["metric"] for b in doc["breaches"]}
    assert {"loss_rate", "duplicate_rate", "outage"} <= metrics
    assert doc["gate_passed"]


def test_fan_out_with_scoped_ids_is_clean_and_unsent_types_are_skipped_not_lost(built, home):
    # Both connectors send e-mail events only; nothing is meant to send the other types.
    email = ("family:email",)
    items = [
        connector("email-us", event_types=email),
        connector("email-eu", "acme-eu", "braze_eu", "eu", "RECONCILE_KEY_EU", "workspace_scoped",
                  event_types=email),
    ]  # fmt: skip
    with running_emulator(emulator_config(), home / "store") as emu:
        assert push_all(home, items, emu).exit_code == 0
    receive_store(home, emulator_config())
    result = run_reconcile(home)
    doc = result.document
    assert result.exit_code == 0, doc["reasons"]
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        sendable_email, sendable_other = con.execute(
            "select count(*) filter (where family = 'email'), count(*) filter (where family != "
            "'email') from marts.fct_segment_outbox where is_sendable"
        ).fetchone()
    finally:
        con.close()
    assert sendable_email and sendable_other
    by_dest = {(d["segment_workspace"], d["segment_source"]): d for d in doc["by_destination"]}
    for dest in (("acme-us", "braze_us"), ("acme-eu", "braze_eu")):
        assert by_dest[dest]["received_distinct"] == by_dest[dest]["sent"] == sendable_email
        assert by_dest[dest]["missing"] == 0
    assert doc["totals"]["skipped_not_routed"] == sendable_other
    assert doc["totals"]["missing"] == 0
    fan_out = [f for f in doc["cross_workspace"] if f["finding"] == "same_id_in_many_workspaces"]
    assert sum(f["events"] for f in fan_out) == sendable_email
    assert not any(f["same_message_id"] for f in fan_out)


def _post_outbox(home: Path, url: str, key: str, limit: int | None = None) -> int:
    """Braze's own connector, played by a plain sender: the outbox's payloads as they are."""
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        payloads = [
            r[0]
            for r in con.execute(
                "select payload_json from marts.fct_segment_outbox where is_sendable "
                "order by message_id"
            ).fetchall()
        ]
    finally:
        con.close()
    payloads = payloads[:limit] if limit else payloads
    for i in range(0, len(payloads), 500):
        body = '{"batch":[' + ",".join(payloads[i : i + 500]) + "]}"
        resp = requests.post(url + "/v1/batch", data=body, auth=(key, ""), timeout=30,
                             headers={"Content-Type": "application/json"})  # fmt: skip
        assert resp.status_code == 200
    return len(payloads)


def test_audit_two_connectors_into_one_workspace_lose_what_segment_deduplicates(built, home):
    config = emulator_config(two_us_sources=True)
    with running_emulator(config, home / "store") as emu:
        first = _post_outbox(home, emu.url, US_KEY)
        # A second connector of the same kind into the same workspace: same messageIds.
        second = _post_outbox(home, emu.url, US2_KEY, limit=400)
        emu.flush()
        stats = emu.stats()
    assert stats["events_dropped"] == {"deduplicated": second}
    routes = [
        {"connector": "braze-engagement-1", "segment_workspace": "acme-us",
         "segment_source": "braze_us"},
        {"connector": "braze-engagement-2", "segment_workspace": "acme-us",
         "segment_source": "braze_us_2", "connector_kind": "message_engagement"},
    ]  # fmt: skip
    receive_store(home, config, routes)
    result = run_reconcile(home, mode="audit")
    doc = result.document
    assert result.exit_code == 1 and doc["mode"] == "audit" and doc["totals"]["sent"] is None
    by_dest = {d["segment_source"]: d for d in doc["by_destination"]}
    assert by_dest["braze_us"]["missing"] == 0
    assert by_dest["braze_us"]["received_distinct"] == first
    engagement = sum(
        r["sendable"] for r in doc["by_workspace_event"] if r["segment_workspace"] == "acme-us"
    )
    assert by_dest["braze_us_2"]["received_distinct"] == 0
    assert by_dest["braze_us_2"]["missing"] == by_dest["braze_us_2"]["sendable"]
    assert engagement == first + by_dest["braze_us_2"]["sendable"]
    findings = {f["finding"] for f in doc["cross_workspace"]}
    assert "connectors_of_one_kind_in_one_workspace" in findings
    two = next(
        f
        for f in doc["cross_workspace"]
        if f["finding"] == "connectors_of_one_kind_in_one_workspace"
    )
    assert two["connectors"] == "braze-engagement-1, braze-engagement-2"
