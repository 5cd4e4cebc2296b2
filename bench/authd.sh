#!/usr/bin/env bash
# The authd section of the benchmark suite alone (see bench/run): authd
# against Dovecot's SQL passdb; writes bench/results/DATE-HOST.md and .png
# with only these rows.
set -euo pipefail
exec env BENCH_SECTIONS=authd "$(dirname "$0")/run" "$@"
