"""A scheduled push with nothing new, or with a few new rows: ``currents-segment push`` as cron
starts it, after a push that sent the whole outbox.

    uv run --frozen --no-sync python bench/bench_idle_push.py --events 1000000 \
        [--baseline-pythonpath /tmp/ab-old/python] [--new-rows 10000 --name append_push]

The outbox of ``bench_push.py`` (generate -> ingest -> dbt build of ``--events``; cached under
``bench/work/push-pipeline-<events>/``). One push sends every event to an emulator subprocess
(not timed); then each run is a fresh ``currents-segment push`` process with nothing new and
nothing open, timed from its start to its exit: wall seconds and CPU seconds of the process
and its children (the bulk enqueue child). Each run starts from a copy of the ledger as the
first push left it. With ``--baseline-pythonpath``, the same command with
that package directory first on ``PYTHONPATH`` (a worktree of an earlier commit) runs
alternately with this one, on the same ledger and warehouse. With ``--new-rows N``, the
pushes run on a copy of the warehouse to which N rows of a later load are then appended (copies
of outbox rows with new ids), so every run finds the same N rows to send. Writes ``bench/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import bench_push
from benchlib import machine, medians

ROOT = Path(__file__).resolve().parents[1]
PUSH = "from currents_segment.cli import main; main()"


def push_process(args: list[str], pythonpath: str | None) -> dict[str, float]:
    """One ``currents-segment push`` process (it must exit 0: every event acknowledged): wall and
    CPU seconds, its children's (the bulk enqueue child) included."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PUSH, "push", *args], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"push exited {done.returncode}: {done.stderr[-2000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def append_rows(warehouse: Path, n: int) -> None:
    """n rows of a later load: copies of the outbox's first n rows with new ids (in the payload
    too, of the same length) and a ``loaded_at`` one second after the newest."""
    import duckdb

    from currents_segment.push import OUTBOX_TABLE

    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            f"""
            INSERT INTO {OUTBOX_TABLE}
            WITH picked AS (
                SELECT *, CAST(uuid() AS VARCHAR) AS new_id
                FROM {OUTBOX_TABLE} ORDER BY message_id LIMIT {int(n)}
            )
            SELECT * EXCLUDE (new_id) REPLACE (
                new_id AS message_id, new_id AS currents_id,
                replace(payload_json, message_id, new_id) AS payload_json,
                (SELECT max(loaded_at) FROM {OUTBOX_TABLE})
                    + INTERVAL 1 SECOND AS loaded_at
            ) FROM picked
            """
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="idle runs of each code (median)")
    parser.add_argument("--baseline-pythonpath", default=None, help="PYTHONPATH of the baseline")
    parser.add_argument("--new-rows", type=int, default=0, help="rows of a later load per run")
    parser.add_argument("--name", default="idle_push", help="bench/results/<name>.json")
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from currents_segment.emulator import running_emulator

    work = bench_push.WORK / f"push-pipeline-{args.events}"
    warehouse = bench_push.outbox_from_pipeline(work, args.events)
    if args.new_rows:
        scratch = work / "warehouse-append.duckdb"
        shutil.copyfile(warehouse, scratch)
        warehouse = scratch
    home = work / "idle-home"
    shutil.rmtree(home, ignore_errors=True)
    os.environ["CURRENTS_SEGMENT_HOME"] = str(home)
    ledger = work / "ledger-idle.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    config = bench_push.write_bench_connectors(work)
    store = work / "store-idle"
    shutil.rmtree(store, ignore_errors=True)
    load_before = os.getloadavg()[0]
    codes = [("this", None)]
    if args.baseline_pythonpath:
        codes.append(("baseline", args.baseline_pythonpath))
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _ in codes}
    with running_emulator(bench_push.EMULATOR, store) as emu:
        push_args = [
            "--connectors", str(config), "--warehouse", str(warehouse), "--ledger", str(ledger),
            "--api-base", emu.url, "--no-progress",
        ]  # fmt: skip
        first = push_process(push_args, None)
        print(f"first push (not timed): {first['wall_s']} s", file=sys.stderr)
        # Every run starts from the ledger as the first push left it: a run of one code must
        # not leave the other code's run a different ledger (more run rows, another mark).
        snapshot = work / "ledger-idle-snapshot.sqlite"
        shutil.copyfile(ledger, snapshot)  # the first push's run has checkpointed its WAL
        if args.new_rows:
            append_rows(warehouse, args.new_rows)
        for _ in range(args.runs):
            for label, pythonpath in codes:
                for suffix in ("-wal", "-shm"):
                    Path(str(ledger) + suffix).unlink(missing_ok=True)
                shutil.copyfile(snapshot, ledger)
                run = push_process(push_args, pythonpath)
                runs[label].append(run)
                print(label, json.dumps(run), file=sys.stderr)
    shutil.rmtree(store, ignore_errors=True)
    snapshot.unlink(missing_ok=True)
    if args.new_rows:
        warehouse.unlink(missing_ok=True)
    summary = medians(runs, ("wall_s", "cpu_s"), "baseline", "this")
    result = {
        "name": args.name,
        "command": "python bench/bench_idle_push.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "loadavg_at_start": round(load_before, 2)},
        "events": args.events,
        "new_rows_per_run": args.new_rows,
        **summary,
    }
    out = ROOT / "bench" / "results" / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
