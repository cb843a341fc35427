#!/usr/bin/env bash
# Data-plane baseline (see bench/README.md, "Data plane"): one run, side by side on the same two
# network namespaces, of
#   (a) the plain veth, (b) strongSwan 5.9 + kernel-libipsec (AES-GCM-128), (c) wireguard-go,
#   (d) nebula (cipher aes = AES-256-GCM), (e) dodvpn (slot: run_dodvpn, when DODVPN_BIN is set),
#   and (issue 16) strongswan-cbc / dodvpn-cbc: ESP aes128-sha256 (AES-CBC + HMAC-SHA-256-128)
#   with IKE aes128-sha256-modp2048, so their setup figures are MODP-2048 handshakes beside
#   the ECP-256 ones of strongswan / dodvpn
# measuring
#   - iperf3 TCP throughput, IPERF_TIME (10) s, 1 stream and 4 streams (-P 4), site A -> site B
#   - setup latency: first ICMP echo sent on a cold tunnel -> first reply, SETUP_REPS (20) times,
#     the tunnel torn down and re-established between repetitions; p50 and p99.
#     strongSwan/libipsec has no trap (on-demand) support, so `swanctl --initiate` is started at
#     the first packet; wireguard-go and nebula come up on the first packet by themselves.
# Writes a table to stdout and JSON to bench/results/dataplane-<timestamp>.json.
#
#   sudo bash bench/dataplane/baseline.sh
#   IPERF_TIME=3 SETUP_REPS=5 sudo -E bash bench/dataplane/baseline.sh      # quick smoke run
#   ONLY="veth wireguard" sudo -E bash bench/dataplane/baseline.sh          # subset
#   DODVPN_BIN=target/release/dodvpn sudo -E bash bench/dataplane/baseline.sh
#
# Tunnels run with inner MTU TUNNEL_MTU (1400; libipsec's TUN is fixed at 1400); the veth has
# MTU 1500.  Figures on a shared 2-core machine are noisy: nproc and the load average are recorded.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=../../tests/netns/lib.sh
. "$repo/tests/netns/lib.sh"

require_root_and_tools strongswan wireguard nebula iperf3 python
netns_trap_cleanup

IPERF_TIME="${IPERF_TIME:-10}"
SETUP_REPS="${SETUP_REPS:-20}"
TUNNEL_MTU="${TUNNEL_MTU:-1400}"
ONLY="${ONLY:-veth strongswan strongswan-cbc wireguard nebula dodvpn dodvpn-cbc}"
PROBE="$here/setup_probe.py"
PY="$(command -v /usr/bin/python3 || command -v python3)"
RESULTS_DIR="${RESULTS_DIR:-$repo/bench/results}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
json_out="$RESULTS_DIR/dataplane-$stamp.json"

A="dpb$$a" B="dpb$$b"
declare -A T1 T4 R1 R4 P50 P99 PMIN PMAX NREP NOTE
PATHS=()

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

# ------------------------------------------------------------------ measurement helpers
IPERF_PID=""
iperf_server_start() {
  [[ -n "$IPERF_PID" ]] && return 0
  netns_spawn "$B" "$work/iperf3-server.log" iperf3 -s -p 5201
  IPERF_PID="$NETNS_LAST_PID"
  netns_wait_for 5 ip netns exec "$B" sh -c "ss -ltn | grep -q ':5201 '" || { say "iperf3 server did not start"; return 1; }
}

# iperf_run KEY SRC DST : fills T1/T4 (Mbit/s received) and R1/R4 (retransmits)
iperf_run() {
  local key="$1" src="$2" dst="$3" p out
  for p in 1 4; do
    say "$key: iperf3 TCP ${IPERF_TIME} s, -P $p ($src -> $dst)"
    out="$work/iperf-$key-P$p.json"
    ip netns exec "$A" timeout $((IPERF_TIME + 30)) iperf3 -c "$dst" -B "$src" -p 5201 -t "$IPERF_TIME" -P "$p" -J >"$out" 2>&1
    local bps rtx
    bps="$(jq -r '.end.sum_received.bits_per_second // empty' "$out" 2>/dev/null)"
    rtx="$(jq -r '.end.sum_sent.retransmits // empty' "$out" 2>/dev/null)"
    if [[ -z "$bps" ]]; then
      say "$key: iperf3 -P $p failed: $(jq -r '.error // empty' "$out" 2>/dev/null || tail -n 2 "$out")"
      bps=""
    else
      bps="$(awk -v b="$bps" 'BEGIN{printf "%.1f", b/1e6}')"
      say "$key: -P $p = $bps Mbit/s (retransmits ${rtx:-?})"
    fi
    if ((p == 1)); then T1[$key]="$bps"; R1[$key]="${rtx:-}"; else T4[$key]="$bps"; R4[$key]="${rtx:-}"; fi
    sleep 1
  done
}

# setup_series KEY TEARDOWN_FN REESTABLISH_FN [TRIGGER_CMD]
#   for each repetition: TEARDOWN_FN (tunnel cold), REESTABLISH_FN (config back, nothing sent),
#   then the probe; fills P50/P99/PMIN/PMAX/NREP.
setup_series() {
  local key="$1" down="$2" up="$3" trig="${4:-}" i out ms
  local samples="$work/setup-$key.txt"
  : >"$samples"
  for ((i = 1; i <= SETUP_REPS; i++)); do
    "$down" || { say "$key: teardown failed (rep $i)"; continue; }
    "$up" || { say "$key: re-establish failed (rep $i)"; continue; }
    out="$(ip netns exec "$A" "$PY" "$PROBE" --src "$SITE_A" --dst "$SITE_B" --interval-ms 1 --timeout 10 \
           ${trig:+--trigger "$trig"})"
    ms="${out%% *}"
    if [[ "$ms" == timeout || -z "$ms" ]]; then
      say "$key: setup rep $i/$SETUP_REPS: no reply within 10 s"
    else
      echo "$ms" >>"$samples"
      [[ -n "${SETUP_AFTER:-}" ]] && "$SETUP_AFTER"
      say "$key: setup rep $i/$SETUP_REPS: $ms ms (reply to echo #$(cut -d' ' -f2 <<<"$out") of $(cut -d' ' -f3 <<<"$out"))"
    fi
  done
  local n; n="$(wc -l <"$samples")"
  NREP[$key]="$n"
  if ((n > 0)); then
    read -r P50[$key] P99[$key] PMIN[$key] PMAX[$key] < <(sort -g "$samples" | awk '
      { v[NR] = $1 }
      function rank(p,  r) { r = int(p * NR); if (r < p * NR) r++; if (r < 1) r = 1; return v[r] }
      END { printf "%s %s %s %s\n", rank(0.50), rank(0.99), v[1], v[NR] }')
  fi
}

SETUP_AFTER=""
sw_after() { # record charon's own view of the exchange for this repetition
  sleep 0.05
  local t; t="$(charon_ike_ms "$SA_DIR/charon.log")"
  [[ -n "$t" ]] && echo "$t" >>"$work/ike-${SW_KEY:-strongswan}.txt"
}

wait_route() { # NS NET SECONDS : route to NET exists (any table)
  netns_wait_for "$3" sh -c "ip -n '$1' route show table all | grep -q '^$2 '"
}

warm_ping() { # KEY : the tunnel carries traffic
  ip netns exec "$A" ping -c 3 -i 0.2 -W 2 -q -I "$SITE_A" "$SITE_B" >/dev/null 2>&1 ||
  ip netns exec "$A" ping -c 5 -i 0.5 -W 2 -q -I "$SITE_A" "$SITE_B" >/dev/null 2>&1 ||
    { say "$1: no ping across the tunnel"; return 1; }
}

# ------------------------------------------------------------------ (a) plain veth
run_veth() {
  PATHS+=(veth); NOTE[veth]="veth MTU 1500, no tunnel"
  iperf_run veth "$OUTER_A" "$OUTER_B"
}

# ------------------------------------------------------------------ (b) strongSwan + kernel-libipsec
SA_DIR="" SB_DIR=""
# run_strongswan [KEY IKE ESP]: KEY strongswan (aes128gcm16-prfsha256-ecp256 / aes128gcm16) or
# strongswan-cbc (aes128-sha256-modp2048 / aes128-sha256)
run_strongswan() {
  local key="${1:-strongswan}" ike="${2:-aes128gcm16-prfsha256-ecp256}" esp="${3:-aes128gcm16-ecp256}"
  PATHS+=("$key"); NOTE[$key]="strongSwan $(/usr/lib/ipsec/charon --version 2>/dev/null | awk '{print $NF}') kernel-libipsec, PSK, IKE $ike, ESP $esp, ESP-in-UDP, MTU 1400"
  SA_DIR="$work/$key-a" SB_DIR="$work/$key-b"; mkdir -p "$SA_DIR" "$SB_DIR"
  local psk="bench-$$-$RANDOM$RANDOM"
  swanctl_conf_write "$SA_DIR/swanctl.conf" --local-addrs "$OUTER_A" --remote-addrs "$OUTER_B" \
    --local-id a.bench --remote-id b.bench --psk "$psk" --ike "$ike" --esp "$esp" \
    --local-ts "$SITE_NET_A" --remote-ts "$SITE_NET_B" --mobike no
  swanctl_conf_write "$SB_DIR/swanctl.conf" --local-addrs "$OUTER_B" --remote-addrs %any \
    --local-id b.bench --remote-id a.bench --psk "$psk" --ike "$ike" --esp "$esp" \
    --local-ts "$SITE_NET_B" --remote-ts "$SITE_NET_A" --mobike no
  strongswan_start "$A" "$SA_DIR" && strongswan_start "$B" "$SB_DIR" || { say "strongswan: charon failed"; return 1; }
  swanctl_initiate "$SA_DIR" site 15 || { say "$key: initiate failed"; return 1; }
  warm_ping "$key" || return 1
  iperf_run "$key" "$SITE_A" "$SITE_B"
  say "$key: setup latency, $SETUP_REPS repetitions (terminate, then initiate at the first echo)"
  SETUP_AFTER=sw_after SW_KEY="$key"
  setup_series "$key" sw_down sw_up \
    "swanctl --initiate --uri unix://$SA_DIR/charon.vici --child site --timeout 10"
  SETUP_AFTER=""
  if [[ -s "$work/ike-$key.txt" ]]; then
    local p50; p50="$(sort -g "$work/ike-$key.txt" | awk '{v[NR]=$1} END{r=int(0.5*NR); if (r<0.5*NR) r++; print v[r]}')"
    [[ "$key" == strongswan ]] && IKE_P50="$p50"
    NOTE[$key]+="; charon log IKE_SA_INIT->CHILD_SA p50 ${p50} ms"
    say "$key: charon log, initiating IKE_SA -> CHILD_SA established: p50 $p50 ms (the rest is swanctl start-up, route install, ICMP)"
  fi
  strongswan_stop "$SA_DIR"; strongswan_stop "$SB_DIR"
}
sw_down() {
  swanctl_terminate "$SA_DIR" tun 5
  netns_wait_for 5 bash -c "[[ \$(swanctl --list-sas --uri unix://$SA_DIR/charon.vici --raw | grep -c 'list-sa event') == 0 ]] &&
                            [[ \$(swanctl --list-sas --uri unix://$SB_DIR/charon.vici --raw | grep -c 'list-sa event') == 0 ]]" || return 1
  # no route to site B left: the first echo really finds a cold tunnel
  ! ip -n "$A" route show table 220 | grep -q "^$SITE_NET_B "
}
sw_up() { sleep 0.2; }
# charon_ike_ms LOG : ms from the last "initiating IKE_SA" to its CHILD_SA "established" (filelog time_add_ms)
charon_ike_ms() {
  awk '
    function ms(t,  a) { split(t, a, /[:.]/); return ((a[1] * 60 + a[2]) * 60 + a[3]) * 1000 + a[4] }
    /initiating IKE_SA/ { t0 = ms($1); done = 0 }
    /CHILD_SA .* established/ && !done { t1 = ms($1); done = 1 }
    END { if (t0 && done && t1 >= t0) print t1 - t0 }' "$1"
}

# ------------------------------------------------------------------ (c) wireguard-go
WA_DIR="" WB_DIR=""
run_wireguard() {
  PATHS+=(wireguard); NOTE[wireguard]="wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go 2>/dev/null), ChaCha20-Poly1305, MTU $TUNNEL_MTU"
  WA_DIR="$work/wg-a" WB_DIR="$work/wg-b"
  wg_start "$A" "$WA_DIR" 51820 "" "$TUNNEL_MTU" && wg_start "$B" "$WB_DIR" 51820 "" "$TUNNEL_MTU" ||
    { say "wireguard: wireguard-go failed"; return 1; }
  wg_up || return 1
  warm_ping wireguard || return 1
  iperf_run wireguard "$SITE_A" "$SITE_B"
  say "wireguard: setup latency, $SETUP_REPS repetitions (peers removed and re-added on both sides)"
  setup_series wireguard wg_down wg_up
  wg_stop "$WA_DIR"; wg_stop "$WB_DIR"
}
wg_down() { wg_remove_peer "$A" "$WA_DIR" "$WB_DIR" && wg_remove_peer "$B" "$WB_DIR" "$WA_DIR"; }
wg_up() {
  wg_add_peer "$A" "$WA_DIR" "$WB_DIR" "$OUTER_B:51820" "$SITE_NET_B" "$SITE_A" &&
  wg_add_peer "$B" "$WB_DIR" "$WA_DIR" "$OUTER_A:51820" "$SITE_NET_A" "$SITE_B" && sleep 0.2
}

# ------------------------------------------------------------------ (d) nebula
NB_DIR=""
run_nebula() {
  PATHS+=(nebula); NOTE[nebula]="nebula $(dpkg-query -W -f='${Version}' nebula 2>/dev/null), cipher aes (AES-256-GCM), static_host_map, no lighthouse, MTU $TUNNEL_MTU"
  NB_DIR="$work/nebula"
  nebula_ca "$NB_DIR"
  nebula_cert "$NB_DIR" a 10.99.0.1/24 "$SITE_NET_A"
  nebula_cert "$NB_DIR" b 10.99.0.2/24 "$SITE_NET_B"
  NEBULA_LOG_LEVEL=warning nebula_config_write "$NB_DIR" a 10.99.0.1 4242 10.99.0.2 "$OUTER_B:4242" "$SITE_NET_B" "$TUNNEL_MTU" aes
  NEBULA_LOG_LEVEL=warning nebula_config_write "$NB_DIR" b 10.99.0.2 4242 10.99.0.1 "$OUTER_A:4242" "$SITE_NET_A" "$TUNNEL_MTU" aes
  nb_up || { say "nebula: start failed"; return 1; }
  warm_ping nebula || return 1
  iperf_run nebula "$SITE_A" "$SITE_B"
  say "nebula: setup latency, $SETUP_REPS repetitions (both nodes restarted)"
  setup_series nebula nb_down nb_up
  nb_down
}
nb_down() { nebula_stop "$NB_DIR" a; nebula_stop "$NB_DIR" b; }
nb_up() {
  nebula_start "$A" "$NB_DIR" a && nebula_start "$B" "$NB_DIR" b &&
  wait_route "$A" "$SITE_NET_B" 5 && wait_route "$B" "$SITE_NET_A" 5 && sleep 0.2
}

# ------------------------------------------------------------------ (e) dodvpn — SLOT
# run_dodvpn: a no-op until the dodvpn tunnel exists.  It runs when DODVPN_BIN is set and
# `$DODVPN_BIN tunnel --help` mentions --config.  The config file is written by
# dodvpn_write_config below (a proposed layout: adapt that one function to the real format),
# or by an executable DODVPN_CONFIG_HOOK called as `HOOK a|b FILE` with the same environment
# (OUTER_A OUTER_B SITE_NET_A SITE_NET_B SITE_A SITE_B TUNNEL_MTU DODVPN_PKI).
# The tunnel is expected to come up on demand at the first packet (R-DP-3); teardown between
# setup repetitions = restart both processes.
DD_DIR=""
dodvpn_write_config() { # SIDE FILE
  local side="$1" file="$2" me peer lnet rnet laddr raddr
  if [[ "$side" == a ]]; then me=a peer=b lnet="$SITE_NET_A" rnet="$SITE_NET_B" laddr="$OUTER_A" raddr="$OUTER_B"
  else me=b peer=a lnet="$SITE_NET_B" rnet="$SITE_NET_A" laddr="$OUTER_B" raddr="$OUTER_A"; fi
  # dodvpn reads PKCS#8 keys; strongSwan's pki writes SEC1.
  [[ -f "$DODVPN_PKI/$me.p8" ]] || openssl pkcs8 -topk8 -nocrypt -in "$DODVPN_PKI/$me.bench.key" -out "$DODVPN_PKI/$me.p8"
  cat >"$file" <<EOF
# bench/dataplane/baseline.sh: dodvpn static tunnel (README.md, "Static tunnels")
interface = "dodvpn0"
mtu = $TUNNEL_MTU
control = "$DD_DIR/$me.sock"

[[connection]]
name = "$peer"
local_addr = "$laddr"
remote_addr = "$raddr"
local_subnets = ["$lnet"]
remote_subnets = ["$rnet"]
local_id = "$me.bench"
remote_id = "$peer.bench"
cert = "$DODVPN_PKI/$me.bench.crt"
key = "$DODVPN_PKI/$me.p8"
ca = "$DODVPN_PKI/ca.crt"
ike_proposals = ["${DD_IKE:-aes128gcm16-prfsha256-ecp256}"]
esp_proposals = ["${DD_ESP:-aes128gcm16}"]
start = "trap"
idle_timeout = "0s"
EOF
}
# run_dodvpn [KEY IKE ESP]: KEY dodvpn (aes128gcm16-prfsha256-ecp256 / aes128gcm16) or
# dodvpn-cbc (aes128-sha256-modp2048 / aes128-sha256)
run_dodvpn() {
  local key="${1:-dodvpn}"
  DD_IKE="${2:-aes128gcm16-prfsha256-ecp256}" DD_ESP="${3:-aes128gcm16}"
  if [[ -z "${DODVPN_BIN:-}" ]]; then echo "dodvpn: not yet available" >&2; return 0; fi
  if [[ ! -x "$DODVPN_BIN" ]] || ! "$DODVPN_BIN" tunnel --help 2>&1 | grep -q -- '--config'; then
    echo "dodvpn: not yet available ($DODVPN_BIN has no 'tunnel --config')" >&2; return 0
  fi
  PATHS+=("$key"); NOTE[$key]="dodvpn $("$DODVPN_BIN" --version 2>/dev/null | head -1), ECDSA P-256 certs, IKE $DD_IKE, ESP $DD_ESP, MTU $TUNNEL_MTU"
  DD_DIR="$work/$key"; mkdir -p "$DD_DIR"
  export DODVPN_PKI="$DD_DIR/pki" OUTER_A OUTER_B SITE_NET_A SITE_NET_B SITE_A SITE_B TUNNEL_MTU
  pki_make "$DODVPN_PKI" ecdsa a.bench b.bench
  local s
  for s in a b; do
    if [[ -n "${DODVPN_CONFIG_HOOK:-}" ]]; then "$DODVPN_CONFIG_HOOK" "$s" "$DD_DIR/$s.toml" || return 1
    else dodvpn_write_config "$s" "$DD_DIR/$s.toml"; fi
  done
  dd_up || { say "$key: tunnel did not start (logs in $DD_DIR)"; return 1; }
  warm_ping "$key" || return 1
  iperf_run "$key" "$SITE_A" "$SITE_B"
  say "$key: setup latency, $SETUP_REPS repetitions (IKE SAs deleted on both sides with \`dodvpn tunnel down\`, traps kept; on-demand at the first echo)"
  setup_series "$key" dd_sas_down dd_trapped
  dd_down
}
dd_down() {
  [[ -f "$DD_DIR/a.pid" ]] && netns_kill "$(cat "$DD_DIR/a.pid")"
  [[ -f "$DD_DIR/b.pid" ]] && netns_kill "$(cat "$DD_DIR/b.pid")"
  rm -f "$DD_DIR/a.pid" "$DD_DIR/b.pid"
}
dd_up() {
  NETNS_TAG=dodvpn netns_spawn "$A" "$DD_DIR/a.log" "$DODVPN_BIN" tunnel --config "$DD_DIR/a.toml"
  echo "$NETNS_LAST_PID" >"$DD_DIR/a.pid"
  NETNS_TAG=dodvpn netns_spawn "$B" "$DD_DIR/b.log" "$DODVPN_BIN" tunnel --config "$DD_DIR/b.toml"
  echo "$NETNS_LAST_PID" >"$DD_DIR/b.pid"
  wait_route "$A" "$SITE_NET_B" 10 && wait_route "$B" "$SITE_NET_A" 10 && sleep 0.2
}
# The processes stay up (as wireguard-go does between its repetitions): the SAs go, the
# traps stay, and the next packet negotiates from scratch (IKE_SA_INIT + IKE_AUTH).
dd_sas_down() {
  "$DODVPN_BIN" tunnel down --control "$DD_DIR/a.sock" >/dev/null &&
  "$DODVPN_BIN" tunnel down --control "$DD_DIR/b.sock" >/dev/null
}
dd_trapped() { # both daemons back to "trap" with no SA left, then a quiet moment
  local s
  for s in a b; do
    netns_wait_for 5 sh -c "\"$DODVPN_BIN\" tunnel status --control \"$DD_DIR/$s.sock\" --json | jq -e '[.connections[].state] == [\"trap\"]' >/dev/null" || return 1
  done
  sleep 0.2
}

# ------------------------------------------------------------------ run
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
cores="$(nproc)"
say "dataplane baseline $stamp: nproc $cores, load average $load_start, kernel $(uname -r)"
say "iperf3 ${IPERF_TIME} s per figure, $SETUP_REPS setup repetitions, tunnel MTU $TUNNEL_MTU; paths: $ONLY"
work="$(netns_workdir bench)"
netns_pair "$A" "$B" 1500
iperf_server_start || exit 1

want veth && run_veth
want strongswan && { run_strongswan || say "strongswan: FAILED (logs: $SA_DIR, $SB_DIR)"; strongswan_stop; }
want strongswan-cbc && { run_strongswan strongswan-cbc aes128-sha256-modp2048 aes128-sha256 ||
  say "strongswan-cbc: FAILED (logs: $SA_DIR, $SB_DIR)"; strongswan_stop; }
want wireguard && { run_wireguard || say "wireguard: FAILED"; wg_stop; }
want nebula && { run_nebula || say "nebula: FAILED"; nebula_stop; }
want dodvpn && { run_dodvpn || say "dodvpn: FAILED"; dd_down; }
want dodvpn-cbc && { run_dodvpn dodvpn-cbc aes128-sha256-modp2048 aes128-sha256 || say "dodvpn-cbc: FAILED"; dd_down; }
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------------ report
ratio() { # A B -> A/B with 2 decimals, or -
  [[ -n "${1:-}" && -n "${2:-}" ]] && awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else printf "-" }' || printf -- "-"
}
label() {
  case "$1" in
    veth) echo "plain veth" ;;
    strongswan) echo "strongSwan/libipsec (AES-GCM-128, ECP-256)" ;;
    wireguard) echo "wireguard-go (ChaCha20-Poly1305)" ;;
    nebula) echo "nebula (AES-256-GCM)" ;;
    dodvpn) echo "dodvpn (AES-GCM-128, ECP-256)" ;;
    strongswan-cbc) echo "strongSwan/libipsec (AES-CBC-128 + HMAC-SHA-256, MODP-2048)" ;;
    dodvpn-cbc) echo "dodvpn (AES-CBC-128 + HMAC-SHA-256, MODP-2048)" ;;
    *) echo "$1" ;;
  esac
}
fmt() { [[ -n "${1:-}" ]] && printf '%s' "$1" || printf -- "–"; }

echo
echo "Data-plane baseline $stamp — nproc $cores, load average at start $load_start (end $load_end)"
echo "iperf3 TCP ${IPERF_TIME} s, Mbit/s received; setup = first ICMP echo -> first reply on a cold tunnel, ms (n reps)"
echo
echo "| path | 1 stream | 4 streams | setup p50 | setup p99 | n | 1 / 4 / setup vs strongSwan | 1 / 4 / setup vs wireguard-go |"
echo "|---|---|---|---|---|---|---|---|"
for k in "${PATHS[@]}"; do
  vs_sw="$(ratio "${T1[$k]:-}" "${T1[strongswan]:-}") / $(ratio "${T4[$k]:-}" "${T4[strongswan]:-}") / $(ratio "${P50[$k]:-}" "${P50[strongswan]:-}")"
  vs_wg="$(ratio "${T1[$k]:-}" "${T1[wireguard]:-}") / $(ratio "${T4[$k]:-}" "${T4[wireguard]:-}") / $(ratio "${P50[$k]:-}" "${P50[wireguard]:-}")"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$k")" "$(fmt "${T1[$k]:-}")" "$(fmt "${T4[$k]:-}")" \
    "$(fmt "${P50[$k]:-}")" "$(fmt "${P99[$k]:-}")" "$(fmt "${NREP[$k]:-}")" "$vs_sw" "$vs_wg"
done
# CBC + HMAC beside GCM (issue 16): the same system's two suites, and dodvpn beside strongSwan
for pair in "strongswan-cbc strongswan" "dodvpn-cbc dodvpn" "dodvpn-cbc strongswan-cbc"; do
  read -r x y <<<"$pair"
  [[ -n "${T1[$x]:-}" && -n "${T1[$y]:-}" ]] &&
    echo "$x / $y: 1 stream $(ratio "${T1[$x]}" "${T1[$y]}"), 4 streams $(ratio "${T4[$x]:-}" "${T4[$y]:-}"), setup p50 $(ratio "${P50[$x]:-}" "${P50[$y]:-}")"
done
[[ -n "${IKE_P50:-}" ]] && echo "strongSwan: charon's own log puts 'initiating IKE_SA' -> 'CHILD_SA established' at p50 ${IKE_P50} ms; the rest of its setup figure is starting swanctl at the first packet, route install and the ICMP round trip."
echo
echo "(ratios: throughput = path / reference, higher is better; setup = path p50 / reference p50, lower is better)"

mkdir -p "$RESULTS_DIR"
{
  for k in "${PATHS[@]}"; do
    jq -n --arg key "$k" --arg lbl "$(label "$k")" --arg note "${NOTE[$k]:-}" \
      --arg t1 "${T1[$k]:-}" --arg t4 "${T4[$k]:-}" --arg r1 "${R1[$k]:-}" --arg r4 "${R4[$k]:-}" \
      --arg p50 "${P50[$k]:-}" --arg p99 "${P99[$k]:-}" --arg pmin "${PMIN[$k]:-}" --arg pmax "${PMAX[$k]:-}" \
      --arg n "${NREP[$k]:-}" --rawfile samples <(cat "$work/setup-$k.txt" 2>/dev/null) \
      --arg s1 "$(ratio "${T1[$k]:-}" "${T1[strongswan]:-}")" --arg s4 "$(ratio "${T4[$k]:-}" "${T4[strongswan]:-}")" \
      --arg sp "$(ratio "${P50[$k]:-}" "${P50[strongswan]:-}")" \
      --arg w1 "$(ratio "${T1[$k]:-}" "${T1[wireguard]:-}")" --arg w4 "$(ratio "${T4[$k]:-}" "${T4[wireguard]:-}")" \
      --arg wp "$(ratio "${P50[$k]:-}" "${P50[wireguard]:-}")" '
      def num: if . == "" or . == "-" then null else tonumber end;
      { key: $key, "label": $lbl, note: $note,
        throughput_mbit_s: { streams_1: ($t1|num), streams_4: ($t4|num) },
        retransmits: { streams_1: ($r1|num), streams_4: ($r4|num) },
        setup_ms: { p50: ($p50|num), p99: ($p99|num), min: ($pmin|num), max: ($pmax|num), n: ($n|num),
                    samples: ($samples | split("\n") | map(select(length > 0) | tonumber)) },
        ratio_vs_strongswan: { streams_1: ($s1|num), streams_4: ($s4|num), setup_p50: ($sp|num) },
        ratio_vs_wireguard_go: { streams_1: ($w1|num), streams_4: ($w4|num), setup_p50: ($wp|num) } }'
  done
} | jq -s --arg stamp "$stamp" --arg host "$(hostname)" --arg kernel "$(uname -r)" --argjson nproc "$cores" \
      --arg ike "${IKE_P50:-}" --arg load_start "$load_start" --arg load_end "$load_end" --argjson iperf_time "$IPERF_TIME" \
      --argjson reps "$SETUP_REPS" --argjson mtu "$TUNNEL_MTU" '
  { benchmark: "dataplane-baseline", timestamp: $stamp, host: $host, kernel: $kernel, nproc: $nproc,
    loadavg_start: $load_start, loadavg_end: $load_end, iperf3_seconds: $iperf_time,
    setup_repetitions: $reps, tunnel_mtu: $mtu,
    strongswan_charon_ike_p50_ms: (if $ike == "" then null else ($ike|tonumber) end),
    setup_definition: "first ICMP echo sent on a cold tunnel -> first echo reply (strongSwan: swanctl --initiate started at the first echo)",
    paths: . }' >"$json_out"
echo "JSON: $json_out"
