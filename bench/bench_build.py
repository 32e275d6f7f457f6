"""``dbt build`` of the project on generated Currents events: full, then incremental after 1% more.

Generates an export (``currents_segment.generate``), lands it (``currents_segment.landing``),
then times ``transform.build`` (seeds, models, data and unit tests of this project's nodes) with
``--full-refresh``; then generates and lands 1% more events and times an incremental build. The
baseline, in the same session, is the full build: the incremental build's ratio to it is the
figure the targets speak of (full build of 10M events under 2 minutes; incremental under 10% of
the full build). With ``--runs`` above 1, the warehouse is restored from a copy between runs so
each run starts from the same state.

    uv run --frozen --no-sync python bench/bench_build.py --events 1000000 [--runs 3]
    uv run --frozen --no-sync python bench/bench_build.py --events 10000000 --runs 1

Writes ``bench/results/build_<events>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from benchlib import machine
from currents_segment import landing, transform
from currents_segment.generate import GenerateOptions, generate_export

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
# This project's nodes: the reconcile reports need received data and are benchmarked apart.
NODES = (
    "path:seeds path:models/staging/currents path:models/intermediate path:models/marts "
    "path:tests/dbt"
)


# Unit tests check the SQL, not the data: dbt advises running them in CI, not on each load.
EXCLUDE = "test_type:unit"


def options(events: int, seed: int, start: str) -> GenerateOptions:
    """A realistic mix: two workspaces, 1% re-deliveries, 5% anonymous users, test events."""
    return GenerateOptions(
        events=events,
        seed=seed,
        workspaces=2,
        start=start,
        codec="snappy",
        max_events_per_file=100_000,
        duplicate_record_rate=0.01,
        anonymous_rate=0.05,
        test_events=20,
    )


def timed_build(db: Path, full_refresh: bool) -> tuple[float, transform.BuildResult]:
    started = time.perf_counter()
    result = transform.build(select=NODES, full_refresh=full_refresh, db_path=db, exclude=EXCLUDE)
    elapsed = time.perf_counter() - started
    if result.exit_code != transform.EXIT_OK:
        failing = [(n.unique_id, n.message[:300]) for n in result.failing_nodes]
        raise SystemExit(f"dbt build failed: {result.exception or failing}")
    return elapsed, result


def slowest_nodes(db: Path, top: int = 12) -> list[list[object]]:
    """The nodes that took longest in the last build, from dbt's run_results.json."""
    path = transform.dbt_artifacts_dir(db) / "target" / "run_results.json"
    results = json.loads(path.read_text())["results"]
    ranked = sorted(results, key=lambda r: -r["execution_time"])[:top]
    return [[r["unique_id"].split(".", 2)[-1], round(r["execution_time"], 2)] for r in ranked]


def counts(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            name: con.execute(f"select count(*) from {rel}").fetchone()[0]
            for name, rel in (
                ("landed", "intermediate.int_currents__landed_events_flagged"),
                ("duplicates", "intermediate.int_currents__duplicate_events"),
                ("outbox", "marts.fct_segment_outbox"),
                ("outbox_sendable", "marts.fct_segment_outbox where is_sendable"),
            )
        }
    finally:
        con.close()


def repeated_builds(
    db: Path, copy_dir: Path, runs: int, full_refresh: bool
) -> tuple[list[float], transform.BuildResult]:
    """Time ``runs`` builds, each starting from the warehouse as it is now (kept in copy_dir)."""
    kind = "full" if full_refresh else "incremental"
    copy = copy_dir / db.name
    if runs > 1:
        copy_dir.mkdir()
        shutil.copy(db, copy)
    times: list[float] = []
    built: transform.BuildResult | None = None
    for i in range(runs):
        if i:
            shutil.copy(copy, db)
        elapsed, built = timed_build(db, full_refresh=full_refresh)
        times.append(round(elapsed, 2))
        print(f"{kind} build {i + 1}: {elapsed:.1f} s ({built.passed} nodes passed)")
    assert built is not None, "runs must be at least 1"
    return times, built


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1, help="runs of each build (median)")
    parser.add_argument("--work", type=Path, default=None, help="work dir (default bench/work)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    parser.add_argument(
        "--name", default=None, help="bench/results/<name>.json (default build_<events>)"
    )
    args = parser.parse_args()
    os.environ["DO_NOT_TRACK"] = "1"

    work = args.work or BENCH / "work" / f"build-{args.events}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    os.environ["CURRENTS_SEGMENT_HOME"] = str(work / "home")
    db = work / "wh" / "warehouse.duckdb"
    db.parent.mkdir()
    result: dict[str, object] = {
        "name": args.name or f"build_{args.events}",
        "command": "python bench/bench_build.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "events": args.events,
        "selection": NODES,
        "exclusion": EXCLUDE,
    }
    try:
        t = time.perf_counter()
        generate_export(work / "export", options(args.events, seed=1, start="2026-11-01"))
        result["generate_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        landing.ingest([str(work / "export")], db_path=db)
        result["ingest_s"] = round(time.perf_counter() - t, 1)

        # Full builds (the baseline). Runs after the first start again from the landed copy.
        full_runs, built = repeated_builds(db, work / "landed", args.runs, full_refresh=True)
        result["full_build"] = {
            "runs_s": full_runs,
            "median_s": round(statistics.median(full_runs), 2),
            "events_per_s": round(args.events / statistics.median(full_runs)),
            "nodes_passed": built.passed,
            "slowest_nodes_s": slowest_nodes(db),
            "counts": counts(db),
        }

        # 1% more events in a later date= day, landed, then an incremental build.
        new_events = max(1, args.events // 100)
        generate_export(work / "export-new", options(new_events, seed=2, start="2026-11-02"))
        t = time.perf_counter()
        landing.ingest([str(work / "export-new")], db_path=db)
        result["ingest_new_s"] = round(time.perf_counter() - t, 1)
        inc_runs, _ = repeated_builds(db, work / "built", args.runs, full_refresh=False)
        result["incremental_build"] = {
            "new_events": new_events,
            "runs_s": inc_runs,
            "median_s": round(statistics.median(inc_runs), 2),
            "slowest_nodes_s": slowest_nodes(db),
            "counts": counts(db),
        }
        result["ratio_incremental_vs_full"] = round(
            statistics.median(inc_runs) / statistics.median(full_runs), 3
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{args.name or f'build_{args.events}'}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
