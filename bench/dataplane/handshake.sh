#!/usr/bin/env bash
# IKE handshake setup time by Diffie-Hellman group (issue 16, Benchmark): many cold
# IKE_SA_INIT + IKE_AUTH exchanges with MODP-2048 (group 14) beside ECP-256 (group 19),
# everything else equal, on two network namespaces joined by a veth:
#   IKE aes128gcm16-prfsha256-<group>, ESP aes128gcm16 (no PFS: the child SA comes with
#   IKE_AUTH, so each handshake has exactly one DH), ECDSA P-256 certificates from one CA.
#
#   dodvpn <-> dodvpn   two `dodvpn tunnel` daemons, start = "trap". Per handshake both SAs are
#                       deleted (`dodvpn tunnel down` on both sides, traps kept), then the probe
#                       sends the first echo. Figures:
#                         ike   = initiator's own log, "initiating IKE to" -> "child SA installed"
#                                 (tracing timestamps, µs): the two exchanges, both sides' DH,
#                                 signatures and chain checks, SA install;
#                         probe = first ICMP echo on the cold tunnel -> first reply
#                                 (bench/dataplane/setup_probe.py), i.e. on-demand setup as a
#                                 user sees it (trap, IKE, child install, the echo's round trip).
#   strongSwan <-> strongSwan (5.9, kernel-libipsec), same certificates and proposals: per
#                       handshake `swanctl --terminate`, then `swanctl --initiate` (blocks until
#                       the CHILD_SA is up). Figures:
#                         ike   = charon's log, "initiating IKE_SA" -> "CHILD_SA ... established"
#                                 (millisecond timestamps: resolution 1 ms);
#                         swanctl = wall time of `swanctl --initiate` (adds swanctl's start-up
#                                 and the vici round trip).
#
#   sudo DODVPN_BIN=target/release/dodvpn bash bench/dataplane/handshake.sh
#   HANDSHAKES=20 ONLY=dodvpn sudo -E bash bench/dataplane/handshake.sh    # quick run
#
# Knobs: HANDSHAKES (200 per system and group), DH_GROUPS ("ecp256 modp2048"),
# ONLY ("dodvpn strongswan"). Writes a table to stdout and JSON to
# bench/results/handshake-<UTC timestamp>.json (all samples). p99 of 200 samples is the
# second-largest; on a shared 2-core machine single outliers (another job) dominate it.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=../../tests/netns/lib.sh
. "$repo/tests/netns/lib.sh"

HANDSHAKES="${HANDSHAKES:-200}"
DH_GROUPS="${DH_GROUPS:-ecp256 modp2048}"
ONLY="${ONLY:-dodvpn strongswan}"
want() { [[ " $ONLY " == *" $1 "* ]]; }
if want strongswan; then require_root_and_tools strongswan python; else require_root_and_tools python; fi
netns_trap_cleanup

PROBE="$here/setup_probe.py"
PY="$(command -v /usr/bin/python3 || command -v python3)"
RESULTS_DIR="${RESULTS_DIR:-$repo/bench/results}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
json_out="$RESULTS_DIR/handshake-$stamp.json"
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if want dodvpn; then
  DODVPN_BIN="${DODVPN_BIN:-$repo/target/release/dodvpn}"
  [[ -x "$DODVPN_BIN" ]] || { echo "set DODVPN_BIN (cargo build --release -p dodvpn)" >&2; exit 1; }
fi

# stats FILE -> "p50 p99 min max n" (nearest-rank percentiles)
stats() {
  sort -g "$1" | awk '{ v[NR] = $1 }
    function rank(p,  r) { r = int(p * NR); if (r < p * NR) r++; if (r < 1) r = 1; return v[r] }
    END { if (NR) printf "%s %s %s %s %d\n", rank(0.50), rank(0.99), v[1], v[NR], NR; else print "- - - - 0" }'
}

A="hsb$$a" B="hsb$$b"
work="$(netns_workdir handshake)"
netns_pair "$A" "$B" 1500
pki_make "$work/pki" ecdsa a.bench b.bench
for s in a b; do openssl pkcs8 -topk8 -nocrypt -in "$work/pki/$s.bench.key" -out "$work/pki/$s.p8"; done
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
say "handshake benchmark $stamp: $HANDSHAKES handshakes per system and group; groups: $DH_GROUPS; systems: $ONLY; load $load_start"

# ------------------------------------------------------------------ dodvpn <-> dodvpn
dd_conf() { # SIDE GROUP FILE
  local me="$1" g="$2" peer lnet rnet laddr raddr
  if [[ "$me" == a ]]; then peer=b lnet="$SITE_NET_A" rnet="$SITE_NET_B" laddr="$OUTER_A" raddr="$OUTER_B"
  else peer=a lnet="$SITE_NET_B" rnet="$SITE_NET_A" laddr="$OUTER_B" raddr="$OUTER_A"; fi
  cat >"$3" <<EOF
interface = "hsb$me"
control = "$DDW/$me.sock"
[[connection]]
name = "$peer"
local_addr = "$laddr"
remote_addr = "$raddr"
local_subnets = ["$lnet"]
remote_subnets = ["$rnet"]
local_id = "$me.bench"
remote_id = "$peer.bench"
cert = "$work/pki/$me.bench.crt"
key = "$work/pki/$me.p8"
ca = "$work/pki/ca.crt"
ike_proposals = ["aes128gcm16-prfsha256-$g"]
esp_proposals = ["aes128gcm16"]
start = "trap"
idle_timeout = "0s"
EOF
}
dd_state_trap() { # SIDE : the connection is back to "trap" with no SA
  "$DODVPN_BIN" tunnel status --control "$DDW/$1.sock" --json | jq -e '[.connections[].state] == ["trap"]' >/dev/null
}
# dodvpn log line -> seconds since midnight with µs ("2026-12-02T19:40:01.123456Z  INFO ...")
dd_log_ms() { # LOG FROM_LINE : ms from the first "initiating IKE to" after FROM_LINE to the next "child SA installed"
  tail -n +"$2" "$1" | sed 's/\x1b\[[0-9;]*m//g' | awk '
    function sec(ts,  a) { split(substr(ts, 12, 15), a, ":"); return a[1] * 3600 + a[2] * 60 + a[3] }
    /initiating IKE to/ && !t0 { t0 = sec($1) }
    /child SA installed/ && t0 && !t1 { t1 = sec($1) }
    END { if (t0 && t1 >= t0) printf "%.3f\n", (t1 - t0) * 1000 }'
}
run_dodvpn() { # GROUP
  local g="$1" key="dodvpn-$1" i out ms from
  DDW="$work/$key"; mkdir -p "$DDW"
  dd_conf a "$g" "$DDW/a.toml"; dd_conf b "$g" "$DDW/b.toml"
  NETNS_TAG=dodvpn netns_spawn "$A" "$DDW/a.log" env DODVPN_LOG=info "$DODVPN_BIN" tunnel --config "$DDW/a.toml"; local pa=$NETNS_LAST_PID
  NETNS_TAG=dodvpn netns_spawn "$B" "$DDW/b.log" env DODVPN_LOG=info "$DODVPN_BIN" tunnel --config "$DDW/b.toml"; local pb=$NETNS_LAST_PID
  netns_wait_for 10 dd_state_trap a && netns_wait_for 10 dd_state_trap b || { say "$key: daemons did not start (logs $DDW)"; netns_kill "$pa" "$pb"; return 1; }
  # one warm-up handshake (page cache, first-use allocations), not counted
  ip netns exec "$A" ping -c 2 -i 0.2 -W 2 -q -I "$SITE_A" "$SITE_B" >/dev/null 2>&1 || { say "$key: no ping across (logs $DDW)"; netns_kill "$pa" "$pb"; return 1; }
  : >"$work/$key.ike"; : >"$work/$key.probe"
  for ((i = 1; i <= HANDSHAKES; i++)); do
    local p; for p in "$pa" "$pb"; do
      [[ -e /proc/$p ]] && continue
      wait "$p"; say "$key: rep $i: a daemon (pid $p) exited with status $? (logs $DDW)"; netns_kill "$pa" "$pb"; return 1
    done
    "$DODVPN_BIN" tunnel down --control "$DDW/a.sock" >/dev/null; "$DODVPN_BIN" tunnel down --control "$DDW/b.sock" >/dev/null
    netns_wait_for 5 dd_state_trap a && netns_wait_for 5 dd_state_trap b || { say "$key: rep $i: SAs not gone"; continue; }
    sleep 0.05
    from=$(($(wc -l <"$DDW/a.log") + 1))
    out="$(ip netns exec "$A" "$PY" "$PROBE" --src "$SITE_A" --dst "$SITE_B" --interval-ms 1 --timeout 10)"
    ms="${out%% *}"
    [[ "$ms" == timeout || -z "$ms" ]] && { say "$key: rep $i: no reply within 10 s"; continue; }
    echo "$ms" >>"$work/$key.probe"
    netns_wait_for 2 sh -c "tail -n +$from '$DDW/a.log' | grep -q 'child SA installed'"
    ms="$(dd_log_ms "$DDW/a.log" "$from")"; [[ -n "$ms" ]] && echo "$ms" >>"$work/$key.ike"
    ((i % 50 == 0)) && say "$key: $i/$HANDSHAKES"
  done
  netns_kill "$pa" "$pb"
}

# ------------------------------------------------------------------ strongSwan <-> strongSwan
charon_ms() { # LOG FROM_LINE
  tail -n +"$2" "$1" | awk '
    function ms(t,  a) { split(t, a, /[:.]/); return ((a[1] * 60 + a[2]) * 60 + a[3]) * 1000 + a[4] }
    /initiating IKE_SA/ && !t0 { t0 = ms($1) }
    /CHILD_SA .* established/ && t0 && !t1 { t1 = ms($1) }
    END { if (t0 && t1 >= t0) print t1 - t0 }'
}
sw_none() { [[ "$(swanctl_sa_count "$1")" == 0 ]]; }
run_strongswan() { # GROUP
  local g="$1" key="strongswan-$1" i t0 t1 from ms
  local SA="$work/$key-a" SB="$work/$key-b"; mkdir -p "$SA" "$SB"
  swanctl_conf_write "$SA/swanctl.conf" --local-addrs "$OUTER_A" --remote-addrs "$OUTER_B" --auth pubkey \
    --cert "$work/pki/a.bench.crt" --key "$work/pki/a.bench.key" --cacert "$work/pki/ca.crt" \
    --local-id a.bench --remote-id b.bench --ike "aes128gcm16-prfsha256-$g" --esp aes128gcm16 \
    --local-ts "$SITE_NET_A" --remote-ts "$SITE_NET_B" --mobike no
  swanctl_conf_write "$SB/swanctl.conf" --local-addrs "$OUTER_B" --remote-addrs %any --auth pubkey \
    --cert "$work/pki/b.bench.crt" --key "$work/pki/b.bench.key" --cacert "$work/pki/ca.crt" \
    --local-id b.bench --remote-id a.bench --ike "aes128gcm16-prfsha256-$g" --esp aes128gcm16 \
    --local-ts "$SITE_NET_B" --remote-ts "$SITE_NET_A" --mobike no
  strongswan_start "$A" "$SA" && strongswan_start "$B" "$SB" || { say "$key: charon failed"; strongswan_stop; return 1; }
  swanctl_initiate "$SA" site 15 || { say "$key: warm-up initiate failed (logs $SA)"; strongswan_stop; return 1; }
  : >"$work/$key.ike"; : >"$work/$key.swanctl"
  for ((i = 1; i <= HANDSHAKES; i++)); do
    swanctl_terminate "$SA" tun 5
    netns_wait_for 5 sw_none "$SA" && netns_wait_for 5 sw_none "$SB" || { say "$key: rep $i: SAs not gone"; continue; }
    sleep 0.05
    from=$(($(wc -l <"$SA/charon.log") + 1))
    t0=$(date +%s%N)
    swanctl_initiate "$SA" site 10 || { say "$key: rep $i: initiate failed"; continue; }
    t1=$(date +%s%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e6 }' >>"$work/$key.swanctl"
    ms="$(charon_ms "$SA/charon.log" "$from")"; [[ -n "$ms" ]] && echo "$ms" >>"$work/$key.ike"
    ((i % 50 == 0)) && say "$key: $i/$HANDSHAKES"
  done
  strongswan_stop "$SA"; strongswan_stop "$SB"
}

KEYS=()
for g in $DH_GROUPS; do
  want dodvpn && { say "dodvpn <-> dodvpn, $g"; run_dodvpn "$g" && KEYS+=("dodvpn-$g"); }
  want strongswan && { say "strongSwan <-> strongSwan, $g"; run_strongswan "$g" && KEYS+=("strongswan-$g"); }
done
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------------ report
echo
echo "IKE handshake setup time $stamp — nproc $(nproc), load average at start $load_start (end $load_end)"
echo "IKE aes128gcm16-prfsha256-<group>, ESP aes128gcm16, ECDSA P-256 certificates; ms"
echo
echo "| system, group | figure | p50 | p99 | min | max | n |"
echo "|---|---|---|---|---|---|---|"
declare -A P50
for k in "${KEYS[@]}"; do
  for f in ike probe swanctl; do
    [[ -s "$work/$k.$f" ]] || continue
    read -r p50 p99 mn mx n < <(stats "$work/$k.$f")
    P50[$k.$f]="$p50"
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$k" "$f" "$p50" "$p99" "$mn" "$mx" "$n"
  done
done
echo
for sys in dodvpn strongswan; do
  for f in ike probe swanctl; do
    a="${P50[$sys-modp2048.$f]:-}" b="${P50[$sys-ecp256.$f]:-}"
    [[ -n "$a" && -n "$b" ]] && awk -v a="$a" -v b="$b" -v s="$sys" -v f="$f" \
      'BEGIN { if (b > 0) printf "%s %s p50: MODP-2048 / ECP-256 = %.2f\n", s, f, a / b }'
  done
done
for g in $DH_GROUPS; do
  a="${P50[dodvpn-$g.ike]:-}" b="${P50[strongswan-$g.ike]:-}"
  [[ -n "$a" && -n "$b" ]] && awk -v a="$a" -v b="$b" -v g="$g" \
    'BEGIN { if (b > 0) printf "%s ike p50: dodvpn / strongSwan = %.2f\n", g, a / b }'
done

mkdir -p "$RESULTS_DIR"
{
  for k in "${KEYS[@]}"; do
    for f in ike probe swanctl; do
      [[ -s "$work/$k.$f" ]] || continue
      read -r p50 p99 mn mx n < <(stats "$work/$k.$f")
      jq -n --arg key "$k" --arg fig "$f" --argjson p50 "$p50" --argjson p99 "$p99" --argjson min "$mn" \
        --argjson max "$mx" --argjson n "$n" --rawfile s "$work/$k.$f" \
        '{key: $key, figure: $fig, p50_ms: $p50, p99_ms: $p99, min_ms: $min, max_ms: $max, n: $n,
          samples_ms: ($s | split("\n") | map(select(length > 0) | tonumber))}'
    done
  done
} | jq -s --arg stamp "$stamp" --arg kernel "$(uname -r)" --argjson nproc "$(nproc)" \
      --arg ls "$load_start" --arg le "$load_end" --arg commit "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null)" '
  { benchmark: "ike-handshake", timestamp: $stamp, commit: $commit, kernel: $kernel, nproc: $nproc,
    loadavg_start: $ls, loadavg_end: $le,
    proposals: "IKE aes128gcm16-prfsha256-<group>, ESP aes128gcm16, ECDSA P-256 certificates",
    figures: { ike: "initiator log: start of IKE_SA_INIT -> child SA installed",
               probe: "dodvpn: first ICMP echo on a cold (trapped) tunnel -> first reply",
               swanctl: "strongSwan: wall time of swanctl --initiate" },
    results: . }' >"$json_out"
echo "JSON: $json_out"
