#!/usr/bin/env bash
# Two dodvpn builds side by side in one run: baseline.sh's dodvpn path (iperf3 1 and 4
# streams, cold-tunnel setup), alternating BEFORE and AFTER for ROUNDS rounds so that the
# machine's noise falls on both alike. Prints each round and the medians, and the ratio
# after/before. Needs root (network namespaces).
#
#   sudo bash bench/dataplane/compare.sh BEFORE_BIN AFTER_BIN      # ROUNDS=3 IPERF_TIME=5 SETUP_REPS=10
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[[ $# == 2 && -x "$1" && -x "$2" ]] || { echo "usage: $0 BEFORE_BIN AFTER_BIN (both executable)" >&2; exit 2; }
ROUNDS="${ROUNDS:-3}"
export IPERF_TIME="${IPERF_TIME:-5}" SETUP_REPS="${SETUP_REPS:-10}" ONLY=dodvpn
results="$(mktemp -d)"; export RESULTS_DIR="$results"
out="$results/rounds.txt"
trap 'rm -rf "$results"' EXIT
for ((r = 1; r <= ROUNDS; r++)); do
  for which in before after; do
    bin="$1"; [[ $which == after ]] && bin="$2"
    echo "compare: round $r/$ROUNDS, $which ($bin)" >&2
    rm -f "$results"/dataplane-*.json
    DODVPN_BIN="$bin" bash "$here/baseline.sh" >/dev/null
    f="$(ls "$results"/dataplane-*.json 2>/dev/null | head -1)"
    [[ -n "$f" ]] || { echo "compare: baseline.sh wrote no result" >&2; exit 1; }
    python3 - "$f" "$which" >>"$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = next(p for p in d["paths"] if p["key"] == "dodvpn")
t, s = p["throughput_mbit_s"], p["setup_ms"]
print(sys.argv[2], t["streams_1"], t["streams_4"], s["p50"], s["p99"])
PY
  done
done
python3 - "$out" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
cols = ["1 stream Mbit/s", "4 streams Mbit/s", "setup p50 ms", "setup p99 ms"]
med = {}
for which in ("before", "after"):
    rs = [list(map(float, r[1:])) for r in rows if r[0] == which]
    for r in rs:
        print(which, " ".join(f"{x:9.2f}" for x in r))
    med[which] = [statistics.median(c) for c in zip(*rs)]
print()
print(f"{'median':8}" + "".join(f"{c:>18}" for c in cols))
for which in ("before", "after"):
    print(f"{which:8}" + "".join(f"{x:18.2f}" for x in med[which]))
print(f"{'after/before':8}" + "".join(f"{a / b:18.3f}" if b else f"{'-':>18}" for a, b in zip(med["after"], med["before"])))
PY
