"""Enqueue of a few new rows into a ledger with a long history: appending (only the rows loaded
since the last complete enqueue) against a whole enqueue, alternating in one process.

    uv run --frozen --no-sync python bench/bench_append.py --events 1000000 --scales 1,10 \
        [--new-rows 10000] [--repeat 3]

The outbox of ``bench_push.py`` (cached under ``bench/work/push-pipeline-<events>/``), copied
``scale`` times with new ids into a scratch warehouse (payloads left empty: an enqueue does not
read them), all of it enqueued into a fresh ledger and marked acknowledged (not timed), the
enqueue mark set as a push sets it; then ``--new-rows`` copies of outbox rows with new ids and a
later ``loaded_at`` are appended to the outbox. The ledger is settled as the push that sent
its rows leaves it (``Ledger.counts(settle=True)``; again after each run). Each timed run is ``push._enqueue`` as a push
calls it (the bulk child, open rows read and handed over), whole or appending; the rows it
inserted are deleted after it, so every run finds the same ledger. CPU seconds include the
child's. Writes ``bench/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import bench_push
from bench_idle_push import append_rows
from benchlib import machine, medians

ROOT = Path(__file__).resolve().parents[1]


def scratch_outbox(source: Path, target: Path, scale: int) -> None:
    import duckdb

    from currents_segment.duck import sql_text
    from currents_segment.push import OUTBOX_TABLE

    target.unlink(missing_ok=True)
    with duckdb.connect(str(target)) as con:
        con.execute(f"ATTACH {sql_text(str(source))} AS src (READ_ONLY)")
        con.execute("CREATE SCHEMA marts")
        copies = " UNION ALL ".join(
            "SELECT * REPLACE ('' AS payload_json"
            + ("" if k == 0 else f", 'c{k}-' || message_id AS message_id,"
               f" 'c{k}-' || currents_id AS currents_id")
            + f") FROM src.{OUTBOX_TABLE}"
            for k in range(scale)
        )  # fmt: skip
        con.execute(f"CREATE TABLE {OUTBOX_TABLE} AS {copies}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--scales", default="1,10", help="history = outbox copies, e.g. 1,10")
    parser.add_argument("--new-rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--name", default="append", help="bench/results/<name>.json")
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from currents_segment import connectors, ledger_bulk, push
    from currents_segment.ledger import Ledger

    work = bench_push.WORK / f"push-pipeline-{args.events}"
    source = bench_push.outbox_from_pipeline(work, args.events)
    config = connectors.load(bench_push.write_bench_connectors(work))
    connector = config.connectors[0]
    load_before = os.getloadavg()[0]
    results = []
    for scale in (int(s) for s in args.scales.split(",")):
        warehouse = work / "warehouse-append-bench.duckdb"
        ledger_path = work / "ledger-append-bench.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(str(ledger_path) + suffix).unlink(missing_ok=True)
        began = time.perf_counter()
        scratch_outbox(source, warehouse, scale)
        ledger = Ledger(ledger_path)
        con = push.open_warehouse(warehouse, push.OUTBOX_TABLE)
        push._enqueue(
            con, ledger, connector, push.OUTBOX_TABLE, config.push, warehouse, None
        ).close()
        with ledger.transaction() as db:  # every row sent and acknowledged, in one batch
            db.execute(
                "INSERT INTO batches (run_id, connector, events, body_bytes, status, attempts,"
                " last_http_status, created_at, finished_at) VALUES ('bench', ?, 0, 0,"
                " 'acknowledged', 1, 200, '2026-01-01', '2026-01-01')",
                (connector.name,),
            )
            db.execute(
                "UPDATE ledger_events SET status = 'in_flight', batch_id = last_insert_rowid(),"
                " attempts = 1 WHERE status = 'pending'"
            )
        history = ledger.count_rows(connector.name)
        ledger.counts(connector.name, 48, settle=True)  # as the push that sent them leaves it
        outbox = push._outbox_fingerprint(con, connector, push.OUTBOX_TABLE, config.push)
        ledger.set_enqueue_mark(connector.name, push._enqueue_mark(outbox, history))
        con.close()
        append_rows(warehouse, args.new_rows)
        print(f"scale {scale}: {history} ledger rows, set up in "
              f"{time.perf_counter() - began:.0f} s", file=sys.stderr)  # fmt: skip
        mark = ledger.enqueue_mark(connector.name)
        top = ledger.con.execute("SELECT max(seq) FROM ledger_events").fetchone()[0]
        runs: dict[str, list[dict[str, float]]] = {"whole": [], "appending": []}
        con = push.open_warehouse(warehouse, push.OUTBOX_TABLE)
        try:
            for _ in range(args.repeat):
                for label in ("whole", "appending"):
                    fingerprint = push._outbox_fingerprint(
                        con, connector, push.OUTBOX_TABLE, config.push, mark["loaded_through_us"]
                    )
                    after = push._appended_after(mark, fingerprint, history)
                    assert after is not None, "the setup must allow appending"
                    t0, cpu0 = time.perf_counter(), bench_push.client_cpu_seconds()
                    handed = push._enqueue(
                        con, ledger, connector, push.OUTBOX_TABLE, config.push, warehouse,
                        ledger_bulk.OpenFilter(), after if label == "appending" else None,
                    )  # fmt: skip
                    rows = sum(t.num_rows for t in handed.tables())
                    handed.close()
                    run = {
                        "seconds": round(time.perf_counter() - t0, 2),
                        "cpu_seconds": round(bench_push.client_cpu_seconds() - cpu0, 2),
                        "open_rows": rows,
                    }
                    assert ledger.count_rows(connector.name) == history + args.new_rows
                    with ledger.transaction() as db:  # the same ledger for the next run
                        db.execute("DELETE FROM ledger_events WHERE seq > ?", (top,))
                    ledger.counts(connector.name, 48, settle=True)  # a whole enqueue unsettles
                    runs[label].append(run)
                    print(scale, label, json.dumps(run), file=sys.stderr)
        finally:
            con.close()
            ledger.close()
        summary = medians(runs, ("seconds", "cpu_seconds"), "whole", "appending")
        results.append({"history_rows": history, "new_rows": args.new_rows, **summary})
        warehouse.unlink(missing_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(str(ledger_path) + suffix).unlink(missing_ok=True)
    result = {
        "name": args.name,
        "command": "python bench/bench_append.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "loadavg_at_start": round(load_before, 2)},
        "results": results,
    }
    out = ROOT / "bench" / "results" / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
