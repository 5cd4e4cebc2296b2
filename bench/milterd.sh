#!/usr/bin/env bash
# milterd benchmark: messages/s of a private Postfix of the guide fed by
# smtp-source (1/4/16 sessions, ~4 KB messages) with no milter and with
# postwerk-milterd scanning (verification + spam scoring, Bayes on Redis,
# a DNS list on a local test server), over TCP and a UNIX socket, plus
# milterd's RSS. Release build; prints a Markdown table and writes
# bench/results/milterd-DATE.md. BENCH_MESSAGES=N changes the messages per run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps
cargo build --release --locked -p postwerk -p postwerk-milterd -p postwerk-tests
exec target/release/bench-milterd
