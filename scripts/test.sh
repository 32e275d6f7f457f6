#!/usr/bin/env bash
# Every check the project has: lint and format (ruff, sqlfluff), then pytest, which includes the
# dbt build (data tests and unit tests) on landed data and the end-to-end scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
export DO_NOT_TRACK=1
bash scripts/bootstrap.sh
uv run --frozen --no-sync ruff check python tests bench scripts
uv run --frozen --no-sync ruff format --check python tests bench scripts
uv run --frozen --no-sync sqlfluff lint models macros tests/dbt
uv run --frozen --no-sync pytest "$@"
