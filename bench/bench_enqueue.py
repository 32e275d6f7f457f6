"""Enqueue: the bulk path (a child process, DuckDB's SQLite extension) against the Python path.

    uv run --frozen --no-sync python bench/bench_enqueue.py --events 1000000

The outbox of ``bench_push.py`` (generate -> ingest -> dbt build of ``--events``; cached under
``bench/work/push-pipeline-<events>/``). Each run enqueues the connector's whole outbox into a
fresh ledger and reads the open rows the send would start from, then enqueues again with
nothing new and every row still open ("again", a run after a stopped one), then with every row
acknowledged and nothing new ("idle": a scheduled run after a finished push). Both paths in
the same process, alternating, ``--repeat`` times; CPU seconds include the child process. Baseline: the Python
path (``CURRENTS_SEGMENT_LEDGER_BULK=0``), which is the enqueue of the commit before the bulk
path. Writes ``bench/results/enqueue.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import bench_push
from benchlib import machine

ROOT = Path(__file__).resolve().parents[1]
IDLE_BATCH_EVENTS = 625


def one_run(work: Path, warehouse: Path, mode: str) -> dict[str, float]:
    from currents_segment import connectors, ledger_bulk, push
    from currents_segment.ledger import Ledger

    os.environ[push.LEDGER_BULK_ENV] = mode
    config = connectors.load(work / "connectors.yml")
    connector = config.connectors[0]
    path = work / f"enqueue-{mode}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    ledger = Ledger(path)
    con = push.open_warehouse(warehouse, push.OUTBOX_TABLE)
    try:
        out: dict[str, float] = {}
        for label in ("first", "again", "idle"):
            if label == "idle":
                # Every open row acknowledged (not timed), in batches of a push's size (the 1M
                # push sends 1,522 of about 625 events): a scheduled run after a finished push
                # with nothing new, the common case once the ledger holds a history.
                seqs = [seq for seq, _, _ in ledger.open_rows(connector.name)]
                for start in range(0, len(seqs), IDLE_BATCH_EVENTS):
                    part = seqs[start : start + IDLE_BATCH_EVENTS]
                    batch = ledger.start_batch("bench", connector.name, part, 0)
                    ledger.finish_batch(batch, part, True, 1, 200, None)
            began, cpu = time.perf_counter(), bench_push.client_cpu_seconds()
            handed = push._enqueue(
                con, ledger, connector, push.OUTBOX_TABLE, config.push, warehouse,
                ledger_bulk.OpenFilter(),
            )  # fmt: skip
            rows = 0
            first_rows_s = None
            for table in handed.tables():
                first_rows_s = first_rows_s or time.perf_counter() - began
                rows += table.num_rows
            handed.close()
            out[f"{label}_seconds"] = round(time.perf_counter() - began, 2)
            out[f"{label}_cpu_seconds"] = round(bench_push.client_cpu_seconds() - cpu, 2)
            out[f"{label}_open_rows"] = rows
            if label == "first":
                out["first_rows_handed_after_s"] = round(first_rows_s or 0.0, 2)
                out["ledger_rows"] = ledger.count_rows(connector.name)
    finally:
        con.close()
        ledger.close()
        os.environ.pop(push.LEDGER_BULK_ENV, None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--name", default="enqueue")
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    work = bench_push.WORK / f"push-pipeline-{args.events}"
    os.environ["CURRENTS_SEGMENT_HOME"] = str(work / "home")
    warehouse = bench_push.outbox_from_pipeline(work, args.events)
    bench_push.write_bench_connectors(work)
    runs: dict[str, list[dict[str, float]]] = {"bulk": [], "python": []}
    for _ in range(args.repeat):
        for mode, label in (("1", "bulk"), ("0", "python")):
            runs[label].append(one_run(work, warehouse, mode))
            print(label, json.dumps(runs[label][-1]), file=sys.stderr)
    for label in runs:
        assert len({(r["ledger_rows"], r["first_open_rows"]) for r in runs[label]}) == 1
    assert runs["bulk"][0]["ledger_rows"] == runs["python"][0]["ledger_rows"]
    medians = {
        label: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for label, rs in runs.items()
    }
    bulk, python = medians["bulk"], medians["python"]
    result = {
        "command": "uv run --frozen --no-sync python bench/bench_enqueue.py "
        + " ".join(sys.argv[1:]),
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "baseline": "the Python path (CURRENTS_SEGMENT_LEDGER_BULK=0), same process, alternating",
        "median": medians,
        "ratios_python_over_bulk": {
            "first_cpu": round(python["first_cpu_seconds"] / bulk["first_cpu_seconds"], 2),
            "first_seconds": round(python["first_seconds"] / bulk["first_seconds"], 2),
            "first_rows_handed": round(
                python["first_rows_handed_after_s"] / bulk["first_rows_handed_after_s"], 2
            ),
            "again_cpu": round(python["again_cpu_seconds"] / bulk["again_cpu_seconds"], 2),
            "idle_cpu": round(python["idle_cpu_seconds"] / bulk["idle_cpu_seconds"], 2),
        },
        "runs": runs,
    }
    (ROOT / "bench" / "results" / f"{args.name}.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    print(json.dumps(result["median"], indent=2))
    print(json.dumps(result["ratios_python_over_bulk"], indent=2))


if __name__ == "__main__":
    main()
