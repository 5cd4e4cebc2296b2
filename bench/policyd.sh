#!/usr/bin/env bash
# policyd benchmark: postwerk-policyd vs the guide's proxy:mysql maps vs a
# trivial socketmap server, through the real postmap, on MariaDB. Release
# build; prints a Markdown table and writes bench/results/policyd-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps
cargo build --release --locked -p postwerk -p postwerk-policyd -p postwerk-tests
exec target/release/bench-policyd
