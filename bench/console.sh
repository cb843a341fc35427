#!/usr/bin/env bash
# Web console benchmark (issue 10; see bench/README.md, "Console").
#
#   bash bench/console.sh                      # release build, 10,000 devices, 1,000 sessions
#   CONSOLE_BENCH_PROFILE=dev bash bench/console.sh   # the debug build the tests use
#   DEVICES=2000 SESSIONS=200 TABS=20 bash bench/console.sh   # a quick run
#
# Starts a fresh centre (SQLite, temporary directory, 127.0.0.1, free port), stops it,
# seeds its database with DEVICES in-service devices across 100 organisations and
# SESSIONS live sessions with both ends' reports (bench/console/seed.py), starts it
# again, and runs bench/console/bench.mjs: the first provider admin's account is set
# up and logged in with password + TOTP as a person would, then
#   - server time of every page (sequential requests over one keep-alive TLS
#     connection; time to the last byte), p50/p99;
#   - first contentful paint of every page in headless Chromium;
#   - live-update fan-out: TABS event streams of the sessions page open at once, one
#     session's counters change in the database, and the time until each stream has
#     the new value (p50/p99/max), with the centre's CPU time meanwhile.
# Prints a table and writes bench/results/console-<timestamp>.json. Stops only the
# centre it started, by its PID.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
profile="${CONSOLE_BENCH_PROFILE:-release}"
main_target="${CARGO_TARGET_DIR:-$repo/target}"
tools="${DODVPN_NODETOOLS:-/opt/dodvpn/nodetools}"
bash "$repo/scripts/setup.sh" --check browser >/dev/null || {
    echo "error: the console benchmark needs Chromium and playwright-core: run scripts/setup.sh" >&2
    exit 1
}

echo "== building dodvpn ($profile)"
(cd "$repo" && cargo build --profile "$profile" -p dodvpn)
dir="$profile"; [ "$profile" = "dev" ] && dir=debug
dodvpn="$main_target/$dir/dodvpn"

work="$(mktemp -d "${TMPDIR:-/tmp}/dodvpn-bench-console.XXXXXX")"
data="$work/centre"
log="$work/centre.log"
centre_pid=""

stop_centre() {
    if [ -n "$centre_pid" ] && kill -0 "$centre_pid" 2>/dev/null; then
        kill -TERM "$centre_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$centre_pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$centre_pid" 2>/dev/null && kill -KILL "$centre_pid" 2>/dev/null || true
        wait "$centre_pid" 2>/dev/null || true
    fi
    centre_pid=""
}
cleanup() {
    stop_centre
    if [ "${KEEP_DATA:-0}" = "1" ]; then echo "centre data and log kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_centre() {
    : >"$log"
    "$dodvpn" center --data "$data" --listen 127.0.0.1:0 >"$log" 2>&1 &
    centre_pid=$!
    url=""
    for _ in $(seq 1 600); do
        kill -0 "$centre_pid" 2>/dev/null || { echo "error: the centre exited:" >&2; cat "$log" >&2; exit 1; }
        if grep -qx "ready" "$log"; then
            url="$(sed -n 's#^ *API  *\(https://127\.0\.0\.1:[0-9]*\)/$#\1#p' "$log" | head -n1)"
            break
        fi
        sleep 0.1
    done
    [ -n "$url" ] || { echo "error: the centre did not report ready:" >&2; cat "$log" >&2; exit 1; }
}

echo "== initialising a fresh centre in $data"
start_centre
stop_centre
echo "== seeding ${DEVICES:-10000} devices and ${SESSIONS:-1000} live sessions"
python3 "$here/console/seed.py" "$data/center.db" "${DEVICES:-10000}" "${SESSIONS:-1000}"
start_centre
echo "centre pid $centre_pid at $url"

commit="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null || true)" ]; then
    commit="$commit+dirty"
fi
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$here/results"
out="$here/results/console-$stamp.json"
DODVPN_NODETOOLS="$tools" CONSOLE_URL="$url" SETUP_CODE="$(cat "$data/console-setup.code")" \
    CENTRE_PID="$centre_pid" CENTRE_DB="$data/center.db" TABS="${TABS:-100}" \
    BENCH_COMMIT="$commit" BENCH_BUILD="$profile" BENCH_DEVICES="${DEVICES:-10000}" \
    BENCH_SESSIONS="${SESSIONS:-1000}" BENCH_OUT="$out" \
    node "$here/console/bench.mjs"
echo "results: $out"
