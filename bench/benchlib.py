"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def python_loop_seconds(repeat: int = 3) -> float:
    """Median seconds of a fixed pure-Python loop (5M additions): a yardstick of interpreter
    speed for comparing results across hosts of this kind. It does not see memory bandwidth:
    for DuckDB-heavy work compare landing's bare read_avro reference (5.6 CPU s per 1M events
    on one host, 17.9 on another of the same 2-core kind)."""
    import statistics
    import time

    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        total = 0
        for i in range(5_000_000):
            total += i
        runs.append(time.perf_counter() - began)
    return round(statistics.median(runs), 3)


def machine() -> dict[str, object]:
    """nproc, CPU model, Python and DuckDB versions, the 1-minute load average at start (these
    machines are shared: the load says how noisy the run was) and the Python loop yardstick."""
    import duckdb

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": int(nproc or os.cpu_count() or 0),
        "cpu": model,
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "loadavg_at_start": round(os.getloadavg()[0], 2),
        "python_loop_5m_s": python_loop_seconds(),
    }


def medians(
    runs: dict[str, list[dict[str, float]]], fields: tuple[str, ...], baseline: str, other: str
) -> dict[str, object]:
    """Per label: the median of each field (``<field>_median``) and its runs; plus
    ``ratio_<baseline>_over_<other>`` of those medians when both labels ran."""
    import statistics

    summary: dict[str, object] = {
        label: {f"{f}_median": statistics.median(r[f] for r in rs) for f in fields} | {"runs": rs}
        for label, rs in runs.items()
    }
    if runs.get(baseline) and runs.get(other):
        summary[f"ratio_{baseline}_over_{other}"] = {
            f"{f}_median": round(
                summary[baseline][f"{f}_median"] / summary[other][f"{f}_median"],  # type: ignore[index]
                2,
            )
            for f in fields
        }
    return summary
