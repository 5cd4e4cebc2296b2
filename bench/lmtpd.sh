#!/usr/bin/env bash
# lmtpd benchmark: postwerk-lmtpd vs Dovecot's own LMTP, both on the guide's
# configuration (SQL userdb, maildir quota, global Sieve), same vmail tree and
# disk, 1/4/16 concurrent LMTP connections, next to the disk's fsync rate.
# Release build; prints a Markdown table and writes bench/results/lmtpd-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps
cargo build --release --locked -p postwerk -p postwerk-lmtpd -p postwerk-tests
exec target/release/bench-lmtpd
