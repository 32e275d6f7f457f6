"""Process start-up with installed bytecode against compiling from source, same session.

    uv run --frozen --no-sync python bench/bench_startup.py

Every command the toolkit starts is a fresh Python process (the CLI, the enqueue child, the
emulator, dbt). Where ``PYTHONDONTWRITEBYTECODE`` is set, as on the CI machines, Python never
caches what it compiles, so a process whose packages were installed without bytecode compiles
every module it imports from source, every time. The install now compiles them
(``compile-bytecode`` in ``pyproject.toml``, ``scripts/bootstrap.sh`` for the package itself).

Two modes, alternating, ``--repeat`` times each:

- ``bytecode``: the environment as installed (compiled ``.pyc`` files beside the sources);
- ``from source``: the same interpreter with ``PYTHONPYCACHEPREFIX`` pointed at an empty
  directory and ``PYTHONDONTWRITEBYTECODE=1``: it finds no ``.pyc`` and writes none, which is
  what every process paid before the install compiled them (baseline).

Commands: ``currents-segment --help``; the pusher's Great Expectations gate start
(``gate.warm_up``: the import and the ephemeral context); the imports of the enqueue child and
the emulator (DuckDB, pyarrow, the package); ``import pandas``; ``dbt --version``; and, with
``--demo-events N`` (default 20,000; 0 skips it), the README's main job
``currents-segment run --demo`` end to end in a fresh home. Wall and CPU seconds (the child's
``rusage``). Writes ``bench/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchlib import machine

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

COMMANDS: dict[str, list[str]] = {
    "cli_help": [str(BIN / "currents-segment"), "--help"],
    "gate_warm_up": [
        sys.executable,
        "-c",
        "from currents_segment import gate; gate.warm_up()",
    ],
    "child_imports": [
        sys.executable,
        "-c",
        "import duckdb, pyarrow.ipc, pyarrow.parquet;"
        " import currents_segment.ledger_bulk, currents_segment.emulator_server",
    ],
    "import_pandas": [sys.executable, "-c", "import pandas"],
    "dbt_version": [str(BIN / "dbt"), "--version"],
}


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):  # run --demo answers 1 when its report needs attention
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--demo-events", type=int, default=20_000)
    parser.add_argument("--name", default="startup", help="bench/results/<name>.json")
    args = parser.parse_args()

    info = machine()
    scratch = Path(tempfile.mkdtemp(prefix="cs-bench-startup-"))
    empty_cache = scratch / "no-bytecode"
    empty_cache.mkdir()
    base_env = dict(os.environ, DO_NOT_TRACK="1")
    base_env.pop("PYTHONPYCACHEPREFIX", None)
    modes = {
        "bytecode": base_env,
        "from_source": dict(
            base_env, PYTHONPYCACHEPREFIX=str(empty_cache), PYTHONDONTWRITEBYTECODE="1"
        ),
    }
    commands = dict(COMMANDS)
    if args.demo_events:
        commands["run_demo"] = [
            str(BIN / "currents-segment"),
            "run",
            "--demo",
            "--demo-events",
            str(args.demo_events),
        ]
    runs: list[dict[str, object]] = []
    try:
        for rep in range(args.repeat):
            for name, cmd in commands.items():
                # Alternate which mode goes first: the second run of a pair finds the OS page
                # cache warm either way.
                order = list(modes) if rep % 2 == 0 else list(reversed(modes))
                for mode in order:
                    env = dict(modes[mode])
                    cwd = ROOT
                    if name == "run_demo":
                        home = scratch / f"home-{mode}-{rep}"
                        env["CURRENTS_SEGMENT_HOME"] = str(home)
                    got = timed(cmd, env, cwd)
                    if name == "run_demo":
                        shutil.rmtree(scratch / f"home-{mode}-{rep}", ignore_errors=True)
                    runs.append({"command": name, "mode": mode, "repeat": rep, **got})
                    print(json.dumps(runs[-1]), flush=True)
        # The empty cache must still be empty: nothing was written in "from source" mode.
        written = list(empty_cache.rglob("*.pyc"))
        if written:
            raise SystemExit(f"from-source mode wrote {len(written)} .pyc files")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    summary: dict[str, dict[str, float]] = {}
    for name in commands:
        row: dict[str, float] = {}
        for mode in modes:
            mine = [r for r in runs if r["command"] == name and r["mode"] == mode]
            row[f"{mode}_wall_s"] = round(statistics.median(r["wall_s"] for r in mine), 3)
            row[f"{mode}_cpu_s"] = round(statistics.median(r["cpu_s"] for r in mine), 3)
        row["wall_ratio"] = round(row["from_source_wall_s"] / row["bytecode_wall_s"], 2)
        summary[name] = row
    result = {
        "command": "uv run --frozen --no-sync python bench/bench_startup.py "
        + " ".join(sys.argv[1:]),
        "machine": info,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host_sets_PYTHONDONTWRITEBYTECODE": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
        "baseline": "from_source: PYTHONPYCACHEPREFIX at an empty directory, nothing written",
        "medians": summary,
        "runs": runs,
    }
    out = ROOT / "bench" / "results" / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, row in summary.items():
        print(f"{name:14} {row}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
