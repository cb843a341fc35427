#!/usr/bin/env bash
# Failover under load (issue 17 item 6; see bench/README.md, "Failover").
#
#   bash bench/failover.sh              # 500 agents, release build
#   bash bench/failover.sh 1000         # another number of agents
#
# Runs the test crates/cli/tests/centre_failover.rs in release: two centre replicas on a
# throwaway PostgreSQL, HAProxy (TCP mode) in front, N agents running the agent's own
# sync loop through it, admin writes and connection applications throughout, one replica
# killed with SIGKILL. The test asserts the outcome (every agent back within 10 s, no
# update missed, no acknowledged write lost, the audit chain verifies); this script keeps
# the reconnect times as bench/results/failover-<timestamp>.json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
agents="${1:-500}"
pg_port="${FAILOVER_PG_PORT:-54438}"

"$repo/scripts/setup.sh" --check postgresql haproxy
work="$(mktemp -d "${TMPDIR:-/tmp}/dodvpn-bench-failover.XXXXXX")"
chmod 755 "$work"
cleanup() { "$repo/scripts/pg.sh" stop "$work/pg"; rm -rf "$work"; }
trap cleanup EXIT
export DODVPN_TEST_PG_URL="$("$repo/scripts/pg.sh" start "$work/pg" "$pg_port")"

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$here/results"
export DODVPN_FAILOVER_AGENTS="$agents"
export DODVPN_FAILOVER_REPORT="$here/results/failover-$stamp.json"
(cd "$repo" && cargo test --release -p dodvpn --test centre_failover -- --nocapture)
echo "results: $DODVPN_FAILOVER_REPORT"
cat "$DODVPN_FAILOVER_REPORT"
