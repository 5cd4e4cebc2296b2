#!/usr/bin/env bash
# The lmtpd section of the benchmark suite alone (see bench/run): writes
# bench/results/DATE-HOST.md and .png with only these rows.
set -euo pipefail
exec env BENCH_SECTIONS=lmtpd "$(dirname "$0")/run" "$@"
