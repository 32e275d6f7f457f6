"""Where ingest's CPU goes: DuckDB's Avro decoding, row numbers and provenance, commits, the rest.

    uv run --frozen --no-sync python bench/bench_landing_breakdown.py --events 1000000

Generates the same export as ``bench_landing.py`` (every supported type, deflate), then, with
one DuckDB thread and into a fresh warehouse file each time (FSST off, as ingest sets it):

1. ``decode``: ``CREATE TABLE AS SELECT * FROM read_avro([files])`` per writer schema, in a
   transaction; the statement and the commit timed apart (the commit compresses and writes the
   row groups);
2. ``rows``: the same with one ``read_avro`` per file under ``UNION ALL``, each with its
   ``row_number()`` and provenance constants, as ingest's SQL does;
3. ``ingest``: ``landing.ingest`` itself with one worker, its phases timed by wrapping
   ``_load_native`` (the INSERT statements), ``_check_counts``, ``_record`` and the planning;
   the rest of ``_land_group`` is its commit.

CPU seconds (this process), median of ``--repeat`` runs. Results go to
``bench/results/landing_breakdown.json``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import click

from benchlib import machine

HERE = Path(__file__).resolve().parent


def _schema_groups(export: Path) -> list[list[str]]:
    from currents_segment import landing

    groups: dict[str, list[str]] = {}
    for path in sorted(export.rglob("*.avro")):
        schema = json.dumps(landing.inspect_avro(path).schema, sort_keys=True)
        groups.setdefault(schema, []).append(str(path))
    return list(groups.values())


def _fresh(db: Path):  # noqa: ANN202 - a DuckDB connection
    import duckdb

    from currents_segment import duck

    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    duck.ensure_avro(con)
    con.execute("set threads = 1")
    con.execute("set disabled_compression_methods = 'fsst'")
    return con


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _tables(db: Path, groups: list[list[str]], per_file: bool) -> dict[str, float]:
    con = _fresh(db)
    statement = commit = 0.0
    for n, files in enumerate(groups):
        if per_file:
            source = " union all ".join(
                f"select *, row_number() over () - 1 as _row_in_file, "
                f"cast({i} as BIGINT) as _file_id, cast({_quote(f)} as VARCHAR) as _source_file, "
                f"cast('int-1' as VARCHAR) as _integration_id, "
                f"cast('prod-01' as VARCHAR) as _cluster, cast(1 as BIGINT) as _schema_id, "
                f"cast('users.messages.email.Send' as VARCHAR) as _event_type "
                f"from read_avro({_quote(f)})"
                for i, f in enumerate(files)
            )
        else:
            source = "select * from read_avro([" + ", ".join(map(_quote, files)) + "])"
        con.begin()
        began = time.process_time()
        con.execute(f"create table t{n} as {source}")
        statement += time.process_time() - began
        began = time.process_time()
        con.commit()
        commit += time.process_time() - began
    con.close()
    return {"statement_cpu_s": statement, "commit_cpu_s": commit, "total_cpu_s": statement + commit}


def _ingest(export: Path, db: Path) -> dict[str, float]:
    from currents_segment import landing

    spent: Counter[str] = Counter()

    def timing(name: str, original):  # noqa: ANN001, ANN202 - wraps any landing function
        @functools.wraps(original)
        def timed(*args, **kwargs):  # noqa: ANN202
            began = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - began

        return timed

    originals = {}
    for name in ("_land_group", "_load_native", "_check_counts", "_record", "_plan"):
        originals[name] = getattr(landing, name)
        setattr(landing, name, timing(name, originals[name]))
    os.environ[landing.WORKERS_ENV] = "1"
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    try:
        began = time.process_time()
        result = landing.ingest([str(export)], db_path=db, reader="duckdb", progress=False)
        total = time.process_time() - began
    finally:
        for name, original in originals.items():
            setattr(landing, name, original)
        del os.environ[landing.WORKERS_ENV]
    assert result.clean, result.problems[:3]
    group = spent["_land_group"]
    inner = spent["_load_native"] + spent["_check_counts"] + spent["_record"]
    return {
        "insert_statements_cpu_s": spent["_load_native"],
        "commit_cpu_s": group - inner,
        "count_checks_and_manifest_cpu_s": spent["_check_counts"] + spent["_record"],
        "planning_cpu_s": spent["_plan"],
        "other_cpu_s": total - group - spent["_plan"],
        "total_cpu_s": total,
    }


@click.command()
@click.option("--events", default=1_000_000, show_default=True)
@click.option("--repeat", default=3, show_default=True)
@click.option("--codec", default="deflate", show_default=True)
@click.option("--name", default="landing_breakdown", show_default=True)
def main(events: int, repeat: int, codec: str, name: str) -> None:
    from currents_segment.generate import GenerateOptions, generate_export

    work = HERE / "work" / "landing-breakdown"
    shutil.rmtree(work, ignore_errors=True)
    export = work / "export"
    generate_export(export, GenerateOptions(events=events, codec=codec))
    groups = _schema_groups(export)
    import duckdb

    duckdb.connect().execute("select ?", [1])  # DuckDB's first-use imports: not timed
    runs: dict[str, list[dict[str, float]]] = {"decode": [], "rows": [], "ingest": []}
    for _ in range(repeat):
        runs["decode"].append(_tables(work / "t.duckdb", groups, per_file=False))
        runs["rows"].append(_tables(work / "t.duckdb", groups, per_file=True))
        runs["ingest"].append(_ingest(export, work / "w.duckdb"))
        print(json.dumps({k: v[-1] for k, v in runs.items()}), file=sys.stderr)
    medians = {
        step: {key: round(statistics.median(r[key] for r in results), 2) for key in results[0]}
        for step, results in runs.items()
    }
    out = {
        "name": name,
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "events": events,
        "codec": codec,
        "schema_groups": len(groups),
        "files": sum(len(g) for g in groups),
        "median_cpu_s": medians,
        "runs": runs,
    }
    shutil.rmtree(work, ignore_errors=True)
    (HERE / "results" / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["median_cpu_s"], indent=2))


if __name__ == "__main__":
    main()
