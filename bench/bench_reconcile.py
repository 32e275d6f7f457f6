"""Reconcile N exported against about N received (1 % missing, 0.5 % duplicated) and time it
against reladiff's joindiff on the same DuckDB file, in the same session.

    uv run --frozen --no-sync python bench/bench_reconcile.py [--rows 10000000] [--repeat 3]

Ours, audit mode (exported versus received, received id = Currents id): the rpt_ models' SQL as
dbt compiles it, run straight in DuckDB (`rpt_sql`); the same models through `dbt build`
(`rpt_models_dbt`, dbt's start-up and parse included); and the whole `reconcile()` (dbt, Great
Expectations gate, JSON/CSV/HTML). Peer: reladiff 0.6's joindiff of
`marts.fct_segment_outbox` against `received.tracks` on `message_id` (+ `event`), every diff row
fetched. Results go to bench/results/reconcile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from benchlib import machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "reconcile.json"


def build_data(db: Path, rows: int) -> dict[str, int]:
    """Outbox of ``rows`` sendable events over 3 Braze workspaces and 24 hours; received: all but
    1 % (hash-chosen), 0.5 % of them twice. Deterministic."""
    from currents_segment import receive

    con = duckdb.connect(str(db))
    con.execute("set TimeZone = 'UTC'")
    con.execute("create schema marts; create schema intermediate")
    con.execute(
        f"""
        create table marts.fct_segment_outbox as
        select
            printf('%08x-%04x-4%03x-8%03x-%012x', i // 65536, i % 65536, i % 4096, i % 4096, i)
                as message_id,
            t.event_type as currents_event_type, t.family, t.event,
            'user-' || (i % 100000) as user_id, 'anon-' || (i % 100000) as anonymous_id,
            timestamp '2026-11-01 00:00:00' + to_microseconds(i * (86400000000 // {rows}))
                as event_timestamp,
            'app-group-' || (i % 3) as app_group_id, 'integration-1' as integration_id,
            'currents/dataexport.prod-01.S3.integration.1/event_type=' || t.event_type
                || '/file-' || (i // 15000) || '.avro' as source_file,
            timestamp '2026-11-01 00:00:00' + to_hours(i * 24 // {rows}) as date_hour,
            timestamp '2026-11-02 00:00:00' as loaded_at, '{{}}' as payload_json,
            2 as payload_bytes, true as is_sendable, cast(null as varchar) as not_sendable_reason
        from range({rows}) r(i)
        join (values (0, 'users.messages.email.Send', 'email', 'Email Sent'),
                     (1, 'users.messages.email.Open', 'email', 'Email Opened'),
                     (2, 'users.messages.pushnotification.Send', 'push', 'Push Notification Sent'),
                     (3, 'users.behaviors.Uninstall', 'behaviors', 'Application Uninstalled'))
            t(k, event_type, family, event) on t.k = i % 4
        """
    )
    con.execute(
        "create table intermediate.int_currents__unsupported_events (app_group_id varchar, "
        "currents_event_type varchar, raw_table_name varchar, date_hour timestamp, "
        "event_count bigint)"
    )
    receive.ensure_tables(con)
    con.execute(
        """
        insert into received.tracks
        select 'acme' as segment_workspace, 'braze_prod' as segment_source, o.message_id,
            o.event, o.currents_event_type, o.event as event_text, o.user_id, o.anonymous_id,
            o.event_timestamp, o.event_timestamp + interval 5 second as received_at,
            'emulator' as origin, null as part, timestamp '2026-11-02 00:00:00' as loaded_at
        from marts.fct_segment_outbox o, range(2) copies(k)
        where hash(o.message_id) % 100 != 0 and (k = 0 or hash(o.message_id) % 200 = 1)
        """
    )
    truth = con.execute(
        """
        select
            count(*) filter (where hash(message_id) % 100 = 0),
            count(*) filter (where hash(message_id) % 200 = 1),
            (select count(*) from received.tracks)
        from marts.fct_segment_outbox
        """
    ).fetchone()
    con.execute("checkpoint")
    con.close()
    return {"exported": rows, "missing": truth[0], "duplicates": truth[1], "received": truth[2]}


def time_ours(db: Path, out: Path, full: bool) -> tuple[float, dict]:
    from currents_segment import reconcile

    options = reconcile.Options(
        mode="audit", db_path=db, out_dir=out, snapshot_ledger=False, alert=False,
        as_of=datetime(2026, 11, 2, 12),
    )  # fmt: skip
    started = time.perf_counter()
    if full:
        result = reconcile.reconcile(options)
        elapsed = time.perf_counter() - started
        if result.exit_code == 2:
            raise SystemExit(f"reconcile failed: {result.document['reasons']}")
        return elapsed, result.document["totals"]
    reconcile.build_models(options)
    elapsed = time.perf_counter() - started
    con = duckdb.connect(str(db), read_only=True)
    try:
        totals = reconcile.read_results(con)["totals"]
    finally:
        con.close()
    return elapsed, totals


def compile_models(db: Path) -> list[tuple[str, str, str]]:
    """The rpt_ models' SQL as dbt compiles it: (relation, materialization, sql), in build order."""
    from dbt.cli.main import dbtRunner

    from currents_segment import reconcile, transform

    variables = reconcile.Options(mode="audit", as_of=datetime(2026, 11, 2, 12)).dbt_vars()
    with transform._warehouse_env(db):
        try:
            res = dbtRunner().invoke(
                transform.dbt_args("compile", db, reconcile.DBT_SELECT, variables, quiet=True)
            )
        finally:
            transform._release_warehouse()
    if not res.success:
        raise SystemExit(f"dbt compile failed: {res.exception}")
    manifest = json.loads(
        (transform.dbt_artifacts_dir(db) / "target" / "manifest.json").read_text()
    )
    ours = {
        uid: n
        for uid, n in manifest["nodes"].items()
        if n["resource_type"] == "model"
        and n["original_file_path"].startswith(("models/reports/", "models/staging/segment/"))
    }
    ordered: list[str] = []

    def visit(uid: str) -> None:
        if uid in ordered or uid not in ours:
            return
        for dep in ours[uid]["depends_on"]["nodes"]:
            visit(dep)
        ordered.append(uid)

    for uid in sorted(ours):
        visit(uid)
    return [
        (f'"{ours[u]["schema"]}"."{ours[u]["alias"]}"', ours[u]["config"]["materialized"],
         ours[u]["compiled_code"])
        for u in ordered
    ]  # fmt: skip


def time_compiled_sql(db: Path, models: list[tuple[str, str, str]]) -> tuple[float, dict]:
    """The same SQL, run straight in DuckDB (no dbt start-up, parse or adapter overhead)."""
    from currents_segment import reconcile

    started = time.perf_counter()
    con = duckdb.connect(str(db))
    try:
        for relation, materialized, sql in models:
            kind = "view" if materialized == "view" else "table"
            con.execute(f"create schema if not exists {relation.split('.')[0]}")
            con.execute(f"create or replace {kind} {relation} as {sql}")
        elapsed = time.perf_counter() - started
        totals = reconcile.read_results(con)["totals"]
    finally:
        con.close()
    return elapsed, totals


def time_reladiff(db: Path) -> tuple[float, dict[str, int]]:
    import reladiff

    started = time.perf_counter()
    conn = reladiff.connect(f"duckdb://{db}")
    try:
        exported = reladiff.connect_to_table(conn, ("marts", "fct_segment_outbox"), "message_id")
        received = reladiff.connect_to_table(conn, ("received", "tracks"), "message_id")
        diff = reladiff.diff_tables(
            exported, received, extra_columns=("event",),
            algorithm=reladiff.Algorithm.JOINDIFF, validate_unique_key=False,
        )  # fmt: skip
        signs = {"-": 0, "+": 0}
        for sign, _row in diff:
            signs[sign] += 1
    finally:
        conn.close()
    return time.perf_counter() - started, signs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        os.environ["CURRENTS_SEGMENT_HOME"] = str(home)
        db = home / "warehouse.duckdb"
        os.environ["CURRENTS_SEGMENT_DB"] = str(db)
        started = time.perf_counter()
        truth = build_data(db, args.rows)
        build_seconds = time.perf_counter() - started
        print(f"data: {truth} in {build_seconds:.1f} s", file=sys.stderr)
        runs: dict[str, list[float]] = {
            "rpt_sql": [],
            "rpt_models_dbt": [],
            "reconcile_full": [],
            "reladiff_joindiff": [],
        }
        checks: dict[str, object] = {}
        models = compile_models(db)
        for i in range(args.repeat):
            seconds, totals = time_compiled_sql(db, models)
            runs["rpt_sql"].append(seconds)
            seconds, totals = time_ours(db, Path(tmp) / f"out-{i}", full=False)
            runs["rpt_models_dbt"].append(seconds)
            seconds, totals = time_ours(db, Path(tmp) / f"full-{i}", full=True)
            runs["reconcile_full"].append(seconds)
            checks["ours"] = {
                k: totals[k]
                for k in ("exported", "received", "missing", "duplicates", "unexpected")
            }
            seconds, signs = time_reladiff(db)
            runs["reladiff_joindiff"].append(seconds)
            checks["reladiff"] = {"only_in_exported": signs["-"], "only_in_received": signs["+"]}
            print(
                f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in runs.items()),
                file=sys.stderr,
            )
    ours = checks["ours"]
    assert ours["missing"] == truth["missing"] and ours["duplicates"] == truth["duplicates"], ours
    assert checks["reladiff"]["only_in_exported"] == truth["missing"], checks
    medians = {k: round(statistics.median(v), 2) for k, v in runs.items()}
    result = {
        "benchmark": "reconcile",
        "command": "uv run --frozen --no-sync python bench/bench_reconcile.py "
        + f"--rows {args.rows} --repeat {args.repeat}",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "data": {**truth, "build_seconds": round(build_seconds, 1)},
        "runs_seconds": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "medians_seconds": medians,
        "ratios": {
            "reladiff_over_rpt_sql": round(medians["reladiff_joindiff"] / medians["rpt_sql"], 2),
            "reladiff_over_rpt_models": round(
                medians["reladiff_joindiff"] / medians["rpt_models_dbt"], 2
            ),
            "reladiff_over_reconcile_full": round(
                medians["reladiff_joindiff"] / medians["reconcile_full"], 2
            ),
        },
        "target": "under 20 s and faster than the peer",
        "checks": checks,
        "notes": "Ours counts missing, duplicates and unexpected per workspace/source/event/hour "
        "and keeps every gap id; reladiff's joindiff lists ids in one table only (duplicated "
        "keys are not reported: validate_unique_key=False).",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["medians_seconds"]), file=sys.stderr)


if __name__ == "__main__":
    main()
