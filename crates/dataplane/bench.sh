#!/usr/bin/env bash
# Throughput of the static ESP tunnel against the plain veth, between two
# network namespaces (needs root; what else it needs: scripts/setup.sh --check).
#
#   crates/dataplane/bench.sh [--secs 10] [--aead aes128gcm] [--mtu 1400] [-- extra static_tunnel args]
#
# Builds examples/static_tunnel in release, creates namespaces dpbA/dpbB
# (veth 192.0.2.1/24 <-> 192.0.2.2/24, sites 10.10.1.1/24 and 10.10.2.1/24
# on dummy interfaces), runs iperf3 TCP for 1 and 4 streams through the
# tunnel and through the plain veth, and prints Mbit/s and the ratio.
set -euo pipefail
SECS=10 AEAD=aes128gcm MTU=1400
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --secs) SECS=$2; shift 2;;
    --aead) AEAD=$2; shift 2;;
    --mtu) MTU=$2; shift 2;;
    --) shift; EXTRA=("$@"); break;;
    *) echo "unknown arg $1" >&2; exit 2;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench.sh: must run as root (network namespaces)" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
"$ROOT/scripts/setup.sh" --check netns iperf3 python
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build -q --release -p dodvpn-dataplane --example static_tunnel)
BIN=$CARGO_TARGET_DIR/release/examples/static_tunnel
A=dpbA B=dpbB
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  ip netns del $A 2>/dev/null || true
  ip netns del $B 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns del $A 2>/dev/null || true; ip netns del $B 2>/dev/null || true
ip netns add $A; ip netns add $B
ip link add dpbva netns $A type veth peer name dpbvb netns $B
ip -n $A addr add 192.0.2.1/24 dev dpbva; ip -n $B addr add 192.0.2.2/24 dev dpbvb
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set dpbva up; ip -n $B link set dpbvb up
site() { # NS ADDR: the site subnet on a dummy interface (ifb, then lo, where the kernel has no dummy)
  for kind in dummy ifb; do
    if ip -n "$1" link add site0 type $kind 2>/dev/null; then
      ip -n "$1" addr add "$2/24" dev site0; ip -n "$1" link set site0 up; return
    fi
  done
  ip -n "$1" addr add "$2/32" dev lo
}
site $A 10.10.1.1; site $B 10.10.2.1

K1=000102030405060708090a0b0c0d0e0f10111213
K2=202122232425262728292a2b2c2d2e2f30313233
if [ "$AEAD" != aes128gcm ]; then
  K1=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223
  K2=202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40414243
fi
ip netns exec $A "$BIN" --tun dp0 --mtu "$MTU" --listen 192.0.2.1:4500 --peer 192.0.2.2:4500 --ike-port 0 \
  --aead "$AEAD" --spi-out 0xb0000001 --key-out $K1 --spi-in 0xa0000001 --key-in $K2 \
  --remote 10.10.2.0/24 --src 10.10.1.1 --stats "$WORK/a.stats" "${EXTRA[@]}" >"$WORK/a.log" 2>&1 &
PIDS+=($!)
ip netns exec $B "$BIN" --tun dp0 --mtu "$MTU" --listen 192.0.2.2:4500 --peer 192.0.2.1:4500 --ike-port 0 \
  --aead "$AEAD" --spi-out 0xa0000001 --key-out $K2 --spi-in 0xb0000001 --key-in $K1 \
  --remote 10.10.1.0/24 --src 10.10.2.1 --stats "$WORK/b.stats" "${EXTRA[@]}" >"$WORK/b.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do grep -q ready "$WORK/a.log" && grep -q ready "$WORK/b.log" && break; sleep 0.1; done
grep -h ready "$WORK/a.log" "$WORK/b.log" || { cat "$WORK"/*.log; exit 1; }
ip netns exec $A ping -c 3 -i 0.2 -W 2 10.10.2.1 >/dev/null || { echo "bench.sh: no ping through the tunnel" >&2; cat "$WORK"/*.log; exit 1; }

ip netns exec $B iperf3 -s -D -I "$WORK/iperf.pid" >/dev/null
sleep 0.5
PIDS+=($(cat "$WORK/iperf.pid"))

run() { # dst streams
  ip netns exec $A iperf3 -c "$1" -t "$SECS" -P "$2" -J >"$WORK/ip.json" 2>&1 || { cat "$WORK/ip.json" >&2; echo 0; return; }
  python3 -c 'import json,sys; print("%.0f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e6))' "$WORK/ip.json"
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
T1=$(run 10.10.2.1 1); T4=$(run 10.10.2.1 4)
V1=$(run 192.0.2.2 1); V4=$(run 192.0.2.2 4)
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('%.3f' % (a/b if b else 0))" "$1" "$2"; }
printf '%-28s %10s %10s\n' path "1 stream" "4 streams"
printf '%-28s %10s %10s\n' "static tunnel ($AEAD, mtu $MTU)" "$T1" "$T4"
printf '%-28s %10s %10s\n' "plain veth" "$V1" "$V4"
printf '%-28s %10s %10s\n' "tunnel / veth" "$(ratio $T1 $V1)" "$(ratio $T4 $V4)"
printf '%-28s %10s %10s\n' "tunnel / strongSwan(190)" "$(ratio $T1 190)" "$(ratio $T4 185)"
printf '%-28s %10s %10s\n' "tunnel / wireguard-go(385)" "$(ratio $T1 385)" "$(ratio $T4 375)"
echo "--- counters A"; grep -v ' 0$' "$WORK/a.stats" || true
echo "--- counters B"; grep -v ' 0$' "$WORK/b.stats" || true
