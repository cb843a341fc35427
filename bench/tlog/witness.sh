#!/usr/bin/env bash
# Issue 15 benchmark: the centre's CPU per checkpoint for device cosigning
# (crates/cli/tests/bench_witness.rs; see README.md). One run.
# Usage: bench/tlog/witness.sh [DEVICES] [sqlite|postgres]
#   DEVICES enrolled devices (default 100); each cosigns ceil(1000/DEVICES)
#   checkpoints, so 1,000 cosignature POSTs in all. postgres needs DODVPN_TEST_PG_URL.
set -euo pipefail
cd "$(dirname "$0")/../.."
# One TLS connection per device on both sides needs file descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log="$(mktemp)"
status=0
WITNESS_BENCH_DEVICES="${1:-100}" WITNESS_BENCH_BACKEND="${2:-sqlite}" \
  cargo test -q -p dodvpn --test bench_witness -- --ignored --nocapture \
  >"$log" 2>&1 || status=$?
grep -E "WITNESS BENCH|centre CPU|devices enrolled|panicked" -A2 "$log" || true
[ "$status" = 0 ] || echo "failed (exit $status); full output in $log"
exit "$status"
