#!/usr/bin/env bash
# The milter section of the benchmark suite alone (see bench/run): milterd
# against OpenDKIM and Rspamd through Postfix; writes
# bench/results/DATE-HOST.md and .png with only these rows.
set -euo pipefail
exec env BENCH_SECTIONS=milter "$(dirname "$0")/run" "$@"
