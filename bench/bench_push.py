"""Push throughput and loss: ``currents-segment push`` vs segment-analytics-python, same events.

The outbox comes from the real pipeline (generate -> ingest -> dbt build; cached under
``bench/work/push-<events>/``) or, with ``--source synthetic``, from track calls synthesised in
DuckDB for the catalogue's event types. Each run posts to a fresh emulator subprocess on
loopback (client and server share the machine's cores), without and with faults:

1. ours: ``push.run_push`` (ledger, GX gate, bounded batches, 4 requests in flight);
2. segment-analytics-python 2.4.0 with its defaults (``Client(write_key, host=...)``);
3. segment-analytics-python tuned (a queue that holds every event, 500-event uploads, 2 threads).

Events/s = events offered / wall time from the first call until the client reports done (for
ours: the run returns with every batch acknowledged; for analytics-python: ``flush()`` and
``join()`` return). Lost = offered - distinct ids the emulator kept. The JSON payloads are parsed
into analytics-python's arguments before its clock starts; Great Expectations is imported
before ours starts (a 5-10 s one-off per process).

    uv run --frozen --no-sync python bench/bench_push.py --events 1000000

Writes ``bench/results/push.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import yaml

from benchlib import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "push.json"
WORK = ROOT / "bench" / "work"
WRITE_KEY = "bench-push-write-key-0001"
EMULATOR = {
    "dedupe_window_hours": 24,
    "workspaces": [
        {
            "name": "bench",
            "region": "us",
            "sources": [{"name": "Braze bench", "slug": "braze_bench", "write_key": WRITE_KEY}],
        }
    ],
}
FAULTS = {
    "rate_limit_every": 50,
    "error_5xx_rate": 0.05,
    "drop_connection_rate": 0.02,
    "drop_connection_before_processing_rate": 0.02,
    "seed": 1,
}
GZIP = os.environ.get("BENCH_PUSH_GZIP", "0") == "1"
ANALYTICS_TUNED = {"max_queue_size": 2_000_000, "upload_size": 500, "thread": 2}


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (the emulator subprocess) and of its finished
    children (the emulator's forked store flushes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def client_cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children: the pusher's bulk enqueue
    runs in a child process (ledger_bulk), whose CPU is the client's too. (The emulator is
    still running when this is read, so it is not among the finished children.)"""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def cpu_fields(offered: int, client_cpu: float, server_cpu: float) -> dict[str, Any]:
    """CPU seconds of client and emulator, and the rate each would sustain on a core of its own.

    The machine is shared with other work while benchmarks run: these say what the events cost,
    independent of the load average.
    """
    return {
        "client_cpu_seconds": round(client_cpu, 2),
        "emulator_cpu_seconds": round(server_cpu, 2),
        "client_events_per_cpu_s": round(offered / client_cpu) if client_cpu else None,
        "emulator_events_per_cpu_s": round(offered / server_cpu) if server_cpu else None,
    }


# ---------------------------------------------------------------------------------------------
# The outbox


def outbox_from_pipeline(work: Path, events: int) -> Path:
    """generate -> ingest -> dbt build, cached (a marker file says the build finished)."""
    from currents_segment import generate, landing, receive, transform

    warehouse = work / "warehouse.duckdb"
    marker = work / "outbox.ready"
    if marker.exists():
        return warehouse
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    options = generate.GenerateOptions(
        events=events, seed=5, workspaces=2, anonymous_rate=0.05, test_events=20,
        duplicate_record_rate=0.01, codec="deflate", max_events_per_file=100_000,
    )  # fmt: skip
    generate.generate_export(work / "export", options)
    print(f"generated in {time.monotonic() - started:.1f}s", file=sys.stderr)
    landing.ingest([str(work / "export")], db_path=warehouse)
    print(f"ingested in {time.monotonic() - started:.1f}s", file=sys.stderr)
    # Fresh warehouses race on schema "received" under dbt's two threads: create it first.
    receive.connect_warehouse(warehouse).close()
    built = transform.build(db_path=warehouse)
    if not built.success:
        raise SystemExit(f"dbt build failed: {built.failing_nodes or built.exception}")
    print(f"built in {time.monotonic() - started:.1f}s", file=sys.stderr)
    marker.write_text(datetime.now(UTC).isoformat())
    shutil.rmtree(work / "export", ignore_errors=True)
    return warehouse


def outbox_synthetic(work: Path, events: int) -> Path:
    """Track calls shaped like the dbt outbox's, built in DuckDB for the catalogue's types."""
    from currents_segment import catalogue

    warehouse = work / "warehouse.duckdb"
    marker = work / "outbox.ready"
    if marker.exists():
        return warehouse
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    types = catalogue.supported()
    con = duckdb.connect(str(warehouse))
    con.execute("CREATE SCHEMA marts")
    con.execute(
        """
        CREATE TABLE marts.fct_segment_outbox AS
        WITH t AS (
            SELECT i, uuid()::VARCHAR AS message_id,
                ?[1 + i % ?] AS currents_event_type, ?[1 + i % ?] AS family,
                ?[1 + i % ?] AS event,
                'user-' || (i % 50000) AS user_id, md5(i::VARCHAR)[1:24] AS anonymous_id,
                TIMESTAMP '2026-11-01 00:00:00' + INTERVAL (i % 86400) SECOND AS event_timestamp,
                'ag-' || (i % 2) AS app_group_id
            FROM range(?) r(i)
        )
        SELECT message_id, currents_event_type, family, event, user_id, anonymous_id,
            event_timestamp, app_group_id, 'int-1' AS integration_id,
            'synthetic' AS source_file, date_trunc('hour', event_timestamp) AS date_hour,
            now()::TIMESTAMP AS loaded_at,
            '{"messageId":"' || message_id || '","type":"track","event":"' || event
                || '","userId":"' || user_id || '","anonymousId":"' || anonymous_id
                || '","timestamp":"' || strftime(event_timestamp, '%Y-%m-%dT%H:%M:%SZ')
                || '","context":{"traits":{"email":"' || user_id || '@example.com"}},'
                || '"properties":{"campaign_id":"' || md5(message_id)
                || '","campaign_name":"Spring sale","message_variation_id":"'
                || md5(event) || '","send_id":"' || md5(user_id) || '","app_group_id":"'
                || app_group_id || '","dispatch_id":"' || md5(anonymous_id) || '"}}'
                AS payload_json,
            NULL::BIGINT AS payload_bytes, true AS is_sendable, NULL::VARCHAR AS not_sendable_reason
        FROM t
        """,
        [
            [t.event_type for t in types], len(types),
            [t.family for t in types], len(types),
            [t.segment_event for t in types], len(types),
            events,
        ],
    )  # fmt: skip
    con.execute("UPDATE marts.fct_segment_outbox SET payload_bytes = strlen(payload_json)")
    con.close()
    marker.write_text(datetime.now(UTC).isoformat())
    return warehouse


# ---------------------------------------------------------------------------------------------
# Runs


def store_counts(store: Path) -> tuple[int, int]:
    """(rows, distinct ids) the emulator kept for the bench source."""
    parts = store / "braze_bench" / "tracks"
    if not any(parts.glob("part-*.parquet")):
        return 0, 0
    con = duckdb.connect()
    try:
        rows, distinct = con.execute(
            f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{parts}/part-*.parquet')"
        ).fetchone()
    finally:
        con.close()
    return int(rows), int(distinct)


def write_bench_connectors(work: Path) -> Path:
    """The bench connector (every event, one Segment source) and its key's variable."""
    config_path = work / "connectors.yml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "push": {
                    "max_in_flight": 4,
                    "retry_base_seconds": 0.05,
                    "max_attempts": 20,
                    "gzip": GZIP,
                },
                "connectors": [
                    {
                        "name": "bench",
                        "segment": {
                            "workspace": "bench",
                            "source": "braze_bench",
                            "region": "us",
                            "write_key_env": "BENCH_PUSH_WRITE_KEY",
                        },
                    }
                ],
            }
        )
    )
    os.environ["BENCH_PUSH_WRITE_KEY"] = WRITE_KEY
    return config_path


def run_ours(work: Path, warehouse: Path, offered: int, faults: dict | None, tag: str) -> dict:
    from currents_segment import connectors, gate, push
    from currents_segment.emulator import running_emulator

    gate.warm_up()
    config_path = write_bench_connectors(work)
    config = connectors.load(config_path)
    store = work / f"store-{tag}"
    ledger = work / f"ledger-{tag}.sqlite"
    shutil.rmtree(store, ignore_errors=True)
    ledger.unlink(missing_ok=True)
    with running_emulator(EMULATOR, store, faults=faults) as emu:
        server_cpu = proc_cpu_seconds(emu.pid)
        client_cpu = client_cpu_seconds()
        started = time.monotonic()
        result = push.run_push(
            config,
            push.PushOptions(api_base=emu.url, warehouse=warehouse, ledger=ledger, progress=False),
        )
        elapsed = time.monotonic() - started
        client_cpu = client_cpu_seconds() - client_cpu
        # The emulator's CPU after its last flush: every kept event's store work is counted,
        # also a forked flush still running when the push returned.
        emu.flush()
        cpu = cpu_fields(offered, client_cpu, proc_cpu_seconds(emu.pid) - server_cpu)
        stats = emu.stats()
    rows, distinct = store_counts(store)
    run = result.connectors[0]
    shutil.rmtree(store, ignore_errors=True)
    return {
        "client": "currents-segment push",
        "settings": {"max_in_flight": 4, "max_batch_bytes": 500_000, "gzip": GZIP},
        "faults": faults or {},
        "seconds": round(elapsed, 2),
        "events_offered": offered,
        "events_per_s": round(offered / elapsed),
        **cpu,
        "batches": run.batches,
        "acknowledged": run.totals.get("acknowledged", 0),
        "exit_code": result.exit_code,
        "kept_distinct": distinct,
        "duplicate_rows_in_store": rows - distinct,
        "events_lost": offered - distinct,
        "emulator_dropped": stats["events_dropped"],
        "faults_injected": stats["faults_injected"],
    }


def analytics_calls(warehouse: Path) -> list[dict[str, Any]]:
    """The same sendable events as analytics-python ``track`` arguments (built untimed)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        cur = con.execute("SELECT payload_json FROM marts.fct_segment_outbox WHERE is_sendable")
        calls = []
        while chunk := cur.fetchmany(100_000):
            for (payload,) in chunk:
                call = orjson.loads(payload)
                calls.append(
                    {
                        "user_id": call.get("userId"),
                        "anonymous_id": call.get("anonymousId"),
                        "event": call["event"],
                        "properties": call.get("properties") or {},
                        "context": call.get("context") or {},
                        "timestamp": datetime.fromisoformat(call["timestamp"]),
                        "message_id": call["messageId"],
                    }
                )
    finally:
        con.close()
    return calls


def run_analytics(
    work: Path, calls: list[dict[str, Any]], params: dict[str, Any], faults: dict | None, tag: str
) -> dict:
    import logging

    from segment.analytics.client import Client

    from currents_segment.emulator import running_emulator

    logging.getLogger("segment").setLevel(logging.CRITICAL)  # queue-full lines per event
    store = work / f"store-{tag}"
    shutil.rmtree(store, ignore_errors=True)
    errors = {"batches": 0, "events": 0}

    def on_error(exc: Exception, batch: list) -> None:
        errors["batches"] += 1
        errors["events"] += len(batch)

    with running_emulator(EMULATOR, store, faults=faults) as emu:
        client = Client(WRITE_KEY, host=emu.url, on_error=on_error, **params)
        refused = 0
        server_cpu = proc_cpu_seconds(emu.pid)
        client_cpu = client_cpu_seconds()
        started = time.monotonic()
        for call in calls:
            ok, _ = client.track(**call)
            if not ok:
                refused += 1
        client.flush()
        client.join()
        elapsed = time.monotonic() - started
        client_cpu = client_cpu_seconds() - client_cpu
        emu.flush()  # as for ours: the emulator's CPU includes its last flush
        cpu = cpu_fields(len(calls), client_cpu, proc_cpu_seconds(emu.pid) - server_cpu)
        stats = emu.stats()
    rows, distinct = store_counts(store)
    shutil.rmtree(store, ignore_errors=True)
    offered = len(calls)
    return {
        "client": "segment-analytics-python 2.4.0",
        "settings": params or "defaults",
        "faults": faults or {},
        "seconds": round(elapsed, 2),
        "events_offered": offered,
        "events_per_s": round(offered / elapsed),
        **cpu,
        "refused_by_full_queue": refused,
        "failed_batches_reported": errors["batches"],
        "kept_distinct": distinct,
        "duplicate_rows_in_store": rows - distinct,
        "events_lost": offered - distinct,
        "emulator_dropped": stats["events_dropped"],
        "faults_injected": stats["faults_injected"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--source", choices=("pipeline", "synthetic"), default="pipeline")
    parser.add_argument("--skip-analytics", action="store_true")
    parser.add_argument("--name", default="push", help="bench/results/<name>.json")
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    work = WORK / f"push-{args.source}-{args.events}"
    os.environ["CURRENTS_SEGMENT_HOME"] = str(work / "home")
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    if args.source == "pipeline":
        warehouse = outbox_from_pipeline(work, args.events)
    else:
        warehouse = outbox_synthetic(work, args.events)
    prepared = time.monotonic() - started
    with duckdb.connect(str(warehouse), read_only=True) as con:
        offered, avg_bytes, non_sendable = con.execute(
            "SELECT count(*) FILTER (WHERE is_sendable), avg(payload_bytes)"
            " FILTER (WHERE is_sendable)::INT, count(*) FILTER (WHERE NOT is_sendable)"
            " FROM marts.fct_segment_outbox"
        ).fetchone()
    print(f"outbox: {offered} sendable events, {avg_bytes} bytes avg", file=sys.stderr)

    runs = []
    for faults in (None, FAULTS):
        tag = "faults" if faults else "clean"
        runs.append(run_ours(work, warehouse, offered, faults, f"ours-{tag}"))
        print(json.dumps(runs[-1]), file=sys.stderr)
    if not args.skip_analytics:
        calls = analytics_calls(warehouse)
        for faults in (None, FAULTS):
            tag = "faults" if faults else "clean"
            for name, params in (("defaults", {}), ("tuned", ANALYTICS_TUNED)):
                gc.collect()
                runs.append(run_analytics(work, calls, params, faults, f"ap-{name}-{tag}"))
                print(json.dumps(runs[-1]), file=sys.stderr)

    def pick(client: str, faults: bool, settings: Any = None) -> dict | None:
        for r in runs:
            if (
                r["client"].startswith(client)
                and bool(r["faults"]) == faults
                and (settings is None or r["settings"] == settings)
            ):
                return r
        return None

    ratios = {}
    for faults in (False, True):
        ours = pick("currents-segment", faults)
        tuned = pick("segment-analytics", faults, ANALYTICS_TUNED)
        if ours and tuned:
            key = "with_faults" if faults else "clean"
            ratios[f"ours_vs_analytics_tuned_events_per_s_{key}"] = round(
                ours["events_per_s"] / tuned["events_per_s"], 2
            )
    result = {
        "command": "uv run --frozen --no-sync python bench/bench_push.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "outbox_source": args.source,
        "events_offered": offered,
        "non_sendable_in_outbox": non_sendable,
        "payload_bytes_avg": avg_bytes,
        "outbox_prepare_seconds": round(prepared, 1),
        "faults": FAULTS,
        "baseline": "segment-analytics-python 2.4.0 tuned, same events, same session",
        "ratios": ratios,
        "median_events_per_s": {
            "ours": statistics.median(
                r["events_per_s"] for r in runs if r["client"].startswith("currents")
            ),
        },
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "runs": runs,
    }
    out = RESULTS.with_name(f"{args.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
