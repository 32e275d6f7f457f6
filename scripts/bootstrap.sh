#!/usr/bin/env bash
# Install everything the project needs on a fresh machine: uv (from PyPI), then the locked
# environment in .venv. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export DO_NOT_TRACK=1
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
uv sync --frozen --extra dev --quiet
# The project's own modules as bytecode too (the dependencies are compiled at install time,
# pyproject's compile-bytecode): with PYTHONDONTWRITEBYTECODE set, as on these machines, every
# process would otherwise compile them from source. A stale .pyc is ignored (mtime check).
uv run --frozen --no-sync python -m compileall -q python/currents_segment
# DuckDB's Avro extension from the duckdb-extension-avro wheel: works offline.
uv run --frozen --no-sync python -c "from currents_segment.duck import ensure_avro; import duckdb; assert ensure_avro(duckdb.connect()), 'DuckDB avro extension unavailable'"
