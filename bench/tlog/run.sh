#!/usr/bin/env bash
# Issue 15 benchmark: the audit Merkle tree's cost (one run). See README.md.
# Usage: bench/tlog/run.sh [RECORDS]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --release -q -p dodvpn-audit --example tlog_bench -- "${1:-1000000}"
