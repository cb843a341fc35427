#!/usr/bin/env bash
# Run every test: installs what is missing, starts a real PostgreSQL server for the
# scale-out back-end, runs the workspace tests with cargo-nextest, stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

PGDIR=$(mktemp -d /tmp/dodvpn-pg.XXXXXX)
PGPORT=${DODVPN_TEST_PG_PORT:-54329}
cleanup() { ./scripts/pg.sh stop "$PGDIR"; rm -rf "$PGDIR"; }
trap cleanup EXIT
export DODVPN_TEST_PG_URL=$(./scripts/pg.sh start "$PGDIR" "$PGPORT")
echo "test: PostgreSQL at $DODVPN_TEST_PG_URL"

# Plenty of file descriptors: tests hold many TLS connections.
ulimit -n 65536 2>/dev/null || true

cargo nextest run --workspace --no-fail-fast --profile "${NEXTEST_PROFILE:-default}" "$@"
