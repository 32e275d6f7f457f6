"""Benchmark ``currents-segment ingest``: DuckDB's read_avro path against the fastavro path.

    uv run --frozen --no-sync python bench/bench_landing.py --events 1000000

Generates an export of ``--events`` events across every supported type (deflate codec, Braze's
layout, at most 15,000 events per file) with ``currents_segment.generate``, then lands it into a
fresh DuckDB file with the native reader (``--repeat`` runs, median) and with the fastavro
reader (``--fastavro-repeat`` runs) in the same process, each run checked against the
generator's manifest. Also times a second run over the same export (nothing new to load).
Results go to ``bench/results/<name>.json``.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from benchlib import machine
from currents_segment import landing
from currents_segment.generate import GenerateOptions, generate_export

HERE = Path(__file__).resolve().parent


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bare_read_avro(export: Path) -> tuple[float, float]:
    """Reference: read_avro of the same files into an in-memory DuckDB, one call per writer
    schema, nothing else (no provenance, no checks, no manifest, no disk)."""
    import duckdb

    from currents_segment import duck

    groups: dict[str, list[str]] = {}
    for path in sorted(export.rglob("*.avro")):
        schema = json.dumps(landing.inspect_avro(path).schema, sort_keys=True)
        groups.setdefault(schema, []).append(str(path))
    con = duckdb.connect()
    duck.ensure_avro(con)
    began, cpu = time.perf_counter(), cpu_seconds()
    for i, files in enumerate(groups.values()):
        con.execute(f"create table t{i} as select * from read_avro($f)", {"f": files})
    seconds, cpu = time.perf_counter() - began, cpu_seconds() - cpu
    con.close()
    return seconds, cpu


def land_once(export: Path, db: Path, reader: str, expected_rows: int) -> tuple[float, float]:
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    began, cpu = time.perf_counter(), cpu_seconds()
    result = landing.ingest([str(export)], db_path=db, reader=reader)
    seconds, cpu = time.perf_counter() - began, cpu_seconds() - cpu
    rows = sum(result.rows_per_type.values())
    if rows != expected_rows or not result.clean:
        raise SystemExit(
            f"{reader}: landed {rows} rows, expected {expected_rows}; problems: "
            f"{result.problems[:3]}"
        )
    return seconds, cpu


@click.command()
@click.option("--events", default=1_000_000, show_default=True)
@click.option("--repeat", default=3, show_default=True, help="Native runs (median taken).")
@click.option("--fastavro-repeat", default=1, show_default=True, help="fastavro runs.")
@click.option("--codec", default="deflate", show_default=True)
@click.option("--name", default="landing", show_default=True, help="bench/results/<name>.json")
def main(events: int, repeat: int, fastavro_repeat: int, codec: str, name: str) -> None:
    work = HERE / "work" / "landing"
    shutil.rmtree(work, ignore_errors=True)
    export = work / "export"
    began = time.perf_counter()
    manifest = generate_export(export, GenerateOptions(events=events, codec=codec))
    print(f"generated {events:,} events in {time.perf_counter() - began:.1f} s")
    rows = manifest["totals"]["records_written"]
    files = len(manifest["files"])
    size = sum(f["bytes"] for f in manifest["files"])

    import duckdb

    duckdb.connect().execute("select ?", [1])  # DuckDB imports pandas on first use: not timed

    native, native_cpu = [], []
    for r in range(repeat):
        seconds, cpu = land_once(export, work / "native.duckdb", "duckdb", rows)
        native.append(seconds)
        native_cpu.append(cpu)
        print(
            f"duckdb run {r + 1}: {seconds:.2f} s ({cpu:.1f} s CPU), {rows / seconds:,.0f} events/s"
        )
    began = time.perf_counter()
    again = landing.ingest([str(export)], db_path=work / "native.duckdb", reader="duckdb")
    rerun = time.perf_counter() - began
    assert again.files == [] and again.already_landed == files
    print(f"second run, nothing new: {rerun:.2f} s")

    fallback, fallback_cpu = [], []
    for r in range(fastavro_repeat):
        seconds, cpu = land_once(export, work / "fastavro.duckdb", "fastavro", rows)
        fallback.append(seconds)
        fallback_cpu.append(cpu)
        print(
            f"fastavro run {r + 1}: {seconds:.2f} s ({cpu:.1f} s CPU), {rows / seconds:,.0f} events/s"
        )

    bare, bare_cpu = bare_read_avro(export)
    print(f"reference, bare read_avro in memory: {bare:.2f} s ({bare_cpu:.1f} s CPU)")

    native_rate = rows / statistics.median(native)
    fastavro_rate = rows / statistics.median(fallback)
    out = {
        "name": name,
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "export": {
            "generator": f"GenerateOptions(events={events}, codec={codec!r}), every supported type",
            "events": rows,
            "files": files,
            "bytes": size,
        },
        "duckdb": {
            "runs_s": [round(s, 3) for s in native],
            "cpu_s": [round(s, 2) for s in native_cpu],
            "median_s": round(statistics.median(native), 3),
            "events_per_s": round(native_rate),
            "events_per_cpu_s": round(rows / statistics.median(native_cpu)),
        },
        "fastavro": {
            "runs_s": [round(s, 3) for s in fallback],
            "cpu_s": [round(s, 2) for s in fallback_cpu],
            "median_s": round(statistics.median(fallback), 3),
            "events_per_s": round(fastavro_rate),
            "events_per_cpu_s": round(rows / statistics.median(fallback_cpu)),
        },
        "ratio_duckdb_vs_fastavro": round(native_rate / fastavro_rate, 2),
        "reference_bare_read_avro_in_memory": {
            "s": round(bare, 3),
            "cpu_s": round(bare_cpu, 2),
            "events_per_s": round(rows / bare),
        },
        "workers": landing._workers(),
        "second_run_nothing_new_s": round(rerun, 3),
        "note": "each run: fresh warehouse file, ingest() end to end (discovery, headers, "
        "tables, load, count checks, manifest, checkpoint on close)",
    }
    shutil.rmtree(work, ignore_errors=True)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
