#!/usr/bin/env bash
# Every benchmark, one after the other (never in parallel: they share 2 cores), at the sizes
# BENCHMARKS.md quotes. Results go to bench/results/*.json. Takes about 30-40 minutes here.
set -euo pipefail
cd "$(dirname "$0")/.."
export DO_NOT_TRACK=1
run() { echo "== $*"; uv run --frozen --no-sync python "$@"; }
run bench/bench_generate.py --events 1000000
run bench/bench_landing.py --events 1000000
run bench/bench_landing.py --events 1000000 --codec null --name landing_null
run bench/bench_landing_breakdown.py --events 1000000
run bench/bench_build.py --events 1000000 --runs 3
run bench/bench_emulator.py
run bench/bench_push.py --events 1000000 --source pipeline
run bench/bench_enqueue.py --events 1000000
run bench/bench_idle_push.py --events 1000000
run bench/bench_idle_push.py --events 1000000 --new-rows 10000 --name append_push
run bench/bench_append.py --events 1000000 --scales 1,10
run bench/bench_reconcile.py --rows 10000000 --repeat 3
run bench/bench_startup.py --repeat 3
# The 10M runs (generate, then a full and an incremental dbt build) take longer:
#   run bench/bench_generate.py --events 10000000 --repeat 1 --codecs snappy --name generate_10m
#   run bench/bench_build.py --events 10000000 --name build_10000000_first
#   run bench/bench_build.py --events 10000000
