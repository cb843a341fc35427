#!/usr/bin/env bash
# Control-plane benchmark of the dodvpn centre (see bench/README.md, "Centre").
#
#   bash bench/centre.sh                 # default run (~5–10 min on 2 cores)
#   bash bench/centre.sh --scale 100000  # also register 100,000 devices (slow)
#   bash bench/centre.sh --devices 50 --push-devices 200   # quick smoke run
#
# Builds the release `dodvpn` binary and the benchmark, starts a fresh centre (SQLite,
# temporary data directory, 127.0.0.1 on a free port) as a child process, runs
# `centre-bench` against it, prints the results table, writes
# bench/results/centre-<timestamp>.json, and stops the centre by its PID.
# Extra arguments are passed to centre-bench (`--help` lists them).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
bench_target="${BENCH_TARGET_DIR:-$repo/target/bench}"
main_target="${CARGO_TARGET_DIR:-$repo/target}"

# 1,000 TLS event streams on the centre plus the client's sockets need file descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "open-files limit: $(ulimit -n)"

echo "== building dodvpn (release)"
(cd "$repo" && cargo build --release -p dodvpn)
dodvpn="$main_target/release/dodvpn"
[ -x "$dodvpn" ] || { echo "error: $dodvpn not found after the build" >&2; exit 1; }

echo "== building centre-bench (release, target dir $bench_target)"
CARGO_TARGET_DIR="$bench_target" cargo build --release --manifest-path "$here/centre/Cargo.toml"
bench="$bench_target/release/centre-bench"

work="$(mktemp -d "${TMPDIR:-/tmp}/dodvpn-bench-centre.XXXXXX")"
data="$work/centre"
log="$work/centre.log"
centre_pid=""

cleanup() {
    # Stop only the centre this script started, by its PID.
    if [ -n "$centre_pid" ] && kill -0 "$centre_pid" 2>/dev/null; then
        kill -TERM "$centre_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$centre_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$centre_pid" 2>/dev/null && kill -KILL "$centre_pid" 2>/dev/null || true
        wait "$centre_pid" 2>/dev/null || true
    fi
    if [ "${KEEP_DATA:-0}" = "1" ]; then
        echo "centre data and log kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting a fresh centre (SQLite) in $data"
# Port 0: the kernel picks a free port; the centre prints the address it bound.
"$dodvpn" center --data "$data" --listen 127.0.0.1:0 >"$log" 2>&1 &
centre_pid=$!

url=""
for _ in $(seq 1 600); do   # at most 60 s
    if ! kill -0 "$centre_pid" 2>/dev/null; then
        echo "error: the centre exited during start-up:" >&2
        cat "$log" >&2
        exit 1
    fi
    if grep -qx "ready" "$log"; then
        url="$(sed -n 's#^ *API  *\(https://127\.0\.0\.1:[0-9]*\)/$#\1#p' "$log" | head -n1)"
        break
    fi
    sleep 0.1
done
[ -n "$url" ] || { echo "error: the centre did not report ready with an API address:" >&2; cat "$log" >&2; exit 1; }
echo "centre pid $centre_pid at $url"

commit="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null || true)" ]; then
    commit="$commit+dirty"
fi
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="$here/results/centre-$stamp.json"
mkdir -p "$here/results"

"$bench" --url "$url" --data "$data" --pid "$centre_pid" \
    --commit "$commit" --build "release (profile.release: lto=thin, codegen-units=4)" \
    --out "$out" "$@"

if grep -qiE "panicked|error" "$log"; then
    echo "note: the centre log mentions errors:"
    grep -iE "panicked|error" "$log" | head -n 20
fi
