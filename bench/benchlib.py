"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def machine() -> dict[str, object]:
    """nproc, CPU model, Python and DuckDB versions, and the 1-minute load average at start
    (these machines are shared: the load says how noisy the run was)."""
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
    }
