#!/usr/bin/env bash
# The policyd section of the benchmark suite alone (see bench/run): writes
# bench/results/DATE-HOST.md and .png with only these rows.
set -euo pipefail
exec env BENCH_SECTIONS=policyd "$(dirname "$0")/run" "$@"
