"""Benchmark ``currents-segment generate``: events/s per codec, against a fastavro baseline.

    uv run --frozen --no-sync python bench/bench_generate.py --events 1000000
    uv run --frozen --no-sync python bench/bench_generate.py --events 10000000 --repeat 1 \\
        --codecs snappy --name generate_10m

The baseline, run in the same process, is the obvious implementation: one dict per event
(values drawn from pre-built pools, so it does less work per event than the generator) written
with ``fastavro.writer`` and the same codec. Results go to ``bench/results/<name>.json``.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from benchlib import machine
from currents_segment import catalogue
from currents_segment.generate import GenerateOptions, avro_schema, generate_export

HERE = Path(__file__).resolve().parent


def baseline_events_per_s(events: int, codec: str, work: Path) -> float:
    """fastavro.writer over dicts for the email.Send schema, pooled values."""
    import fastavro

    event = catalogue.load()["users.messages.email.Send"]
    schema = fastavro.parse_schema(avro_schema(event.event_type, event.current_fields))
    rng = random.Random(0)
    pools = {
        f.name: [None if f.nullable and k == 0 else _value(f.type, f.name, k) for k in range(64)]
        for f in event.current_fields
    }
    names = list(pools)
    work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    records = (
        {n: pools[n][rng.randrange(64)] for n in names} | {"id": f"{i:036d}"} for i in range(events)
    )
    with (work / "baseline.avro").open("wb") as fh:
        fastavro.writer(fh, schema, records, codec=codec)
    return events / (time.perf_counter() - began)


def _value(ftype: str, name: str, k: int):
    if ftype in ("int", "long"):
        return 1_793_491_200 + k
    if ftype == "boolean":
        return bool(k & 1)
    return f"{name}-{k}"


@click.command()
@click.option("--events", default=1_000_000, show_default=True)
@click.option("--repeat", default=3, show_default=True, help="Runs per codec (median taken).")
@click.option("--codecs", default="null,snappy,deflate", show_default=True)
@click.option("--baseline-events", default=100_000, show_default=True)
@click.option("--name", default="generate", show_default=True, help="bench/results/<name>.json")
def main(events: int, repeat: int, codecs: str, baseline_events: int, name: str) -> None:
    work = HERE / "work" / "generate"
    results = []
    for codec in codecs.split(","):
        runs = []
        for r in range(repeat):
            shutil.rmtree(work, ignore_errors=True)
            began = time.perf_counter()
            manifest = generate_export(work / "export", GenerateOptions(events=events, codec=codec))
            seconds = time.perf_counter() - began
            runs.append(seconds)
            size = sum(f["bytes"] for f in manifest["files"])
            print(f"{codec} run {r + 1}: {seconds:.2f} s, {events / seconds:,.0f} events/s")
        base = baseline_events_per_s(baseline_events, codec, work / "baseline")
        median = statistics.median(runs)
        results.append(
            {
                "codec": codec,
                "events": events,
                "files": len(manifest["files"]),
                "bytes": size,
                "runs_s": [round(s, 3) for s in runs],
                "median_s": round(median, 3),
                "events_per_s": round(events / median),
                "baseline_fastavro_dicts_events_per_s": round(base),
                "ratio_vs_baseline": round(events / median / base, 2),
            }
        )
        print(f"{codec}: median {events / median:,.0f} events/s, baseline {base:,.0f}/s")
    shutil.rmtree(work, ignore_errors=True)
    out = {
        "name": name,
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "options": "GenerateOptions(events=N, codec=C), every supported type, 1 workspace, 1 day",
        "results": results,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
