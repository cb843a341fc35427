#!/usr/bin/env bash
# Issue 15 benchmark: the centre's CPU per checkpoint for device cosigning
# (crates/cli/tests/bench_witness.rs; see README.md). One run.
# Usage: bench/tlog/witness.sh [DEVICES] [sqlite|postgres]
#   DEVICES enrolled devices (default 100); each cosigns ceil(1000/DEVICES)
#   checkpoints, so 1,000 cosignature POSTs in all. postgres needs DODVPN_TEST_PG_URL.
set -euo pipefail
cd "$(dirname "$0")/../.."
WITNESS_BENCH_DEVICES="${1:-100}" WITNESS_BENCH_BACKEND="${2:-sqlite}" \
  cargo nextest run -p dodvpn --test bench_witness --run-ignored ignored-only --no-capture 2>&1 |
  grep -E "WITNESS BENCH|centre CPU|devices enrolled|panicked|FAIL"
