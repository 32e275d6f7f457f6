#!/usr/bin/env bash
# The main job end to end on the embedded defaults: a synthetic Currents export, DuckDB, dbt,
# the local Segment emulator (a real HTTP server on loopback), the pusher and reconciliation.
# Installs what it needs first. Exit code: 0 clean, 1 needs attention, 2 failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export DO_NOT_TRACK=1
bash scripts/bootstrap.sh
exec uv run --frozen --no-sync currents-segment run --demo "$@"
