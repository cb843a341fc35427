#!/usr/bin/env bash
# Scale of the centre on PostgreSQL (issue 17 item 7; see bench/README.md, "Scale").
#
#   bash bench/scale.sh                        # 250,000 registered devices, 10,000 streams
#   bash bench/scale.sh --scale 20000 --push-devices 2000   # a quicker run
#
# Starts a throwaway PostgreSQL server (scripts/pg.sh), two release `dodvpn center`
# replicas on one database (one data directory, the second started after the first has
# initialised it), and runs centre-bench with --scale-first: N devices are registered
# first, then every other phase runs at that size; phase E holds its streams on both
# replicas (every second one on the second replica). Prints the table, writes
# bench/results/scale-<timestamp>.json, stops everything it started by PID.
# Extra arguments go to centre-bench (`--help` lists them) and override the defaults.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
bench_target="${BENCH_TARGET_DIR:-$repo/target/bench}"
main_target="${CARGO_TARGET_DIR:-$repo/target}"
pg_port="${SCALE_PG_PORT:-54439}"

"$repo/scripts/setup.sh" --check postgresql

# 10,000 TLS event streams in this client, 5,000 in each replica.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "open-files limit: $(ulimit -n)"

echo "== building dodvpn (release)"
(cd "$repo" && cargo build --release -p dodvpn)
dodvpn="$main_target/release/dodvpn"
echo "== building centre-bench (release, target dir $bench_target)"
CARGO_TARGET_DIR="$bench_target" cargo build --release --manifest-path "$here/centre/Cargo.toml"
bench="$bench_target/release/centre-bench"

work="$(mktemp -d "${TMPDIR:-/tmp}/dodvpn-bench-scale.XXXXXX")"
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    "$repo/scripts/pg.sh" stop "$work/pg"
    if [ "${KEEP_DATA:-0}" = "1" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting PostgreSQL on 127.0.0.1:$pg_port"
pg_url="$("$repo/scripts/pg.sh" start "$work/pg" "$pg_port")"
db_url="${pg_url%/*}/dodvpn_scale"
psql "$pg_url" -q -c "CREATE DATABASE dodvpn_scale" >/dev/null

start_replica() { # $1 = log file; prints "PID URL"
    "$dodvpn" center --data "$work/centre" --listen 127.0.0.1:0 --database "$db_url" >"$1" 2>&1 &
    local pid=$! url=""
    for _ in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || { echo "error: a replica exited during start-up:" >&2; cat "$1" >&2; return 1; }
        if grep -qx "ready" "$1"; then
            url="$(sed -n 's#^ *API  *\(https://127\.0\.0\.1:[0-9]*\)/$#\1#p' "$1" | head -n1)"
            break
        fi
        sleep 0.1
    done
    [ -n "$url" ] || { echo "error: a replica did not report ready:" >&2; cat "$1" >&2; return 1; }
    echo "$pid $url"
}

read -r pid1 url1 < <(start_replica "$work/replica1.log")
pids+=("$pid1")
read -r pid2 url2 < <(start_replica "$work/replica2.log")
pids+=("$pid2")
echo "replica 1 pid $pid1 at $url1; replica 2 pid $pid2 at $url2"

commit="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null || true)" ]; then
    commit="$commit+dirty"
fi
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="$here/results/scale-$stamp.json"
mkdir -p "$here/results"

"$bench" --url "$url1" --data "$work/centre" --pid "$pid1" \
    --replica-url "$url2" --replica-pid "$pid2" \
    --database "postgresql $(psql "$pg_url" -tAc 'SHOW server_version'), two replicas" \
    --commit "$commit" --build "release (profile.release: lto=thin, codegen-units=4)" \
    --scale 250000 --scale-first --concurrency 16 --devices 200 --enroll-only 0 \
    --applications 1000 --rate 200 --duration 10 --push-devices 10000 --push-rounds 3 \
    --out "$out" "$@"

for l in "$work"/replica*.log; do
    if grep -qiE "panicked|ERROR" "$l"; then
        echo "note: $(basename "$l") mentions errors:"
        grep -iE "panicked|ERROR" "$l" | head -n 10
    fi
done
