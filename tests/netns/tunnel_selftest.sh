#!/usr/bin/env bash
# dodvpn tunnel ↔ dodvpn tunnel in two namespaces: on-demand (trap) setup with PSK and
# with ECDSA and RSA certificates, real ICMP and TCP across, status counters, idle teardown; with PSK
# also a UDP 500/4500 flood of garbage mixed with replays of captured live ESP-in-UDP datagrams.
# Needs root. Prints PASS/FAIL per case and "N passed, N failed".
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$HERE/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools socat python openssl
netns_trap_cleanup


conf() { # FILE IFACE CTRL LOCAL REMOTE LNET RNET LID RID AUTHLINES IDLE
  cat > "$1" <<CONF
interface = "$2"
control = "$3"
[[connection]]
name = "peer"
local_addr = "$4"
remote_addr = "$5"
local_subnets = ["$6"]
remote_subnets = ["$7"]
local_id = "$8"
remote_id = "$9"
${10}
start = "trap"
idle_timeout = "${11}"
CONF
}

run_case() { # NAME AUTH_A AUTH_B
  local name="$1" auth_a="$2" auth_b="$3" W
  W="$(netns_workdir "tun-$name")"
  netns_pair "dta$name" "dtb$name" 1500 >/dev/null
  conf "$W/a.toml" dva "$W/a.sock" "$OUTER_A" "$OUTER_B" "$SITE_NET_A" "$SITE_NET_B" a.test b.test "$auth_a" 4s
  conf "$W/b.toml" dvb "$W/b.sock" "$OUTER_B" "$OUTER_A" "$SITE_NET_B" "$SITE_NET_A" b.test a.test "$auth_b" 4s
  netns_spawn "dta$name" "$W/a.log" env DODVPN_LOG=info "$DODVPN_BIN" tunnel --config "$W/a.toml"; local pa=$NETNS_LAST_PID
  netns_spawn "dtb$name" "$W/b.log" env DODVPN_LOG=info "$DODVPN_BIN" tunnel --config "$W/b.toml"; local pb=$NETNS_LAST_PID
  netns_wait_for 10 grep -q ready "$W/a.log" && netns_wait_for 10 grep -q ready "$W/b.log" \
    || { result 1 "$name: daemons start" "$(tail -3 "$W/a.log" "$W/b.log")"; return; }
  # No tunnel before the first packet.
  local st; st="$("$DODVPN_BIN" tunnel status --control "$W/a.sock" --json)"
  [[ "$(jq '.connections[0].children | length' <<<"$st")" == 0 ]]; result $? "$name: nothing negotiated before traffic"
  # The first ping triggers the negotiation; the packets are queued, not lost.
  local t0 t1; t0=$(date +%s%N)
  netns_exec "dta$name" ping -c 3 -i 0.2 -W 2 -I "$SITE_A" "$SITE_B" >"$W/ping.log" 2>&1
  local rc=$?; t1=$(date +%s%N)
  result $rc "$name: ping across the on-demand tunnel ($(( (t1-t0)/1000000 )) ms for 3 echoes)" "$(tail -2 "$W/ping.log")"
  grep -q "icmp_seq=1 " "$W/ping.log"; result $? "$name: the first packet was queued and delivered, not dropped"
  # TCP with checksums compared on both ends.
  tcp_transfer "dta$name" "dtb$name" "$SITE_B" "$SITE_A" 8 "$W" >/dev/null 2>&1; result $? "$name: 8 MiB TCP transfer, sha256 equal on both ends"
  # The status is answered by the control thread itself: the counts are current.
  netns_wait_for 3 sh -c "[ \"\$(\"$DODVPN_BIN\" tunnel status --control \"$W/a.sock\" --json | jq '.connections[0].children[0].bytes_out // 0')\" -ge 8000000 ]"
  local rc=$?
  st="$("$DODVPN_BIN" tunnel status --control "$W/a.sock" --json)"
  local bytes; bytes="$(jq '.connections[0].children[0].bytes_out // 0' <<<"$st")"
  result $rc "$name: status counts the bytes ($bytes out)"
  "$DODVPN_BIN" tunnel status --control "$W/b.sock" | sed 's/^/    /'
  if [[ "$name" == psk ]]; then
    # Garbage on UDP 500/4500 (from A's outer address to B's) mixed with replays of real
    # ESP-in-UDP datagrams of this tunnel, captured on B's side while pings crossed, all
    # while the tunnel carries traffic: the live tunnel keeps working, the garbage and the
    # replays are counted as drops, nothing is crashed on or delivered twice.
    drop_of() { "$DODVPN_BIN" tunnel status --control "$W/b.sock" --json | jq "[.drops[] | select(.[0] == \"$1\") | .[1]] | add // 0"; }
    local before; before="$("$DODVPN_BIN" tunnel status --control "$W/b.sock" --json | jq '[.drops[][1]] | add // 0')"
    local rp0 to0; rp0="$(drop_of replay)"; to0="$(drop_of too_old)"
    netns_exec "dtb$name" python3 "$HERE/esp_capture.py" out0 "$OUTER_B" 5 40 "$W/esp.hex" >"$W/capture.log" 2>&1 &
    local cpid=$!
    sleep 0.3
    netns_exec "dta$name" ping -c 40 -i 0.05 -W 2 -q -I "$SITE_A" "$SITE_B" >/dev/null 2>&1
    wait "$cpid"
    local captured; captured="$(cat "$W/capture.log")"
    [[ "${captured:-0}" =~ ^[0-9]+$ && "$captured" -ge 20 ]]; result $? "$name: captured ${captured} live ESP-in-UDP datagrams to replay"
    netns_exec "dta$name" python3 "$HERE/udp_flood.py" "$OUTER_B" 3 200000 "$W/esp.hex" >"$W/flood.log" 2>&1 &
    local fpid=$!
    netns_exec "dta$name" ping -c 20 -i 0.1 -W 2 -I "$SITE_A" "$SITE_B" >"$W/ping-flood.log" 2>&1
    local received; received="$(grep -oE '[0-9]+ received' "$W/ping-flood.log" | cut -d' ' -f1)"
    wait "$fpid"
    local sent replayed; read -r sent replayed <"$W/flood.log"
    [[ "${received:-0}" -ge 18 ]]; result $? "$name: tunnel keeps serving under a UDP 500/4500 flood of garbage and replays (${received:-0}/20 echoes; ${sent:-0} datagrams sent, ${replayed:-0} of them replays)"
    ! grep -q 'DUP!' "$W/ping-flood.log"; result $? "$name: no replayed echo request was delivered (no duplicate replies)"
    tcp_transfer "dta$name" "dtb$name" "$SITE_B" "$SITE_A" 4 "$W" 5003 >/dev/null 2>&1; result $? "$name: TCP transfer after the flood, sha256 equal"
    netns_exec "dta$name" ping -c 3 -i 0.2 -W 2 -q -I "$SITE_A" "$SITE_B" >/dev/null 2>&1; result $? "$name: echoes still answered after the flood"
    local after rp1 to1; after="$("$DODVPN_BIN" tunnel status --control "$W/b.sock" --json | jq '[.drops[][1]] | add // 0')"
    rp1="$(drop_of replay)"; to1="$(drop_of too_old)"
    [[ "$after" -gt "$before" ]] && kill -0 "$pb" 2>/dev/null; result $? "$name: the garbage was counted as drops ($before -> $after) and the daemon lives"
    [[ "$rp1" -gt "$rp0" ]]; result $? "$name: replays counted as replay drops (replay $rp0 -> $rp1, too_old $to0 -> $to1, ${replayed:-0} sent)"
  fi
  # An operator takes the tunnel down; the trap stays and the next packet renegotiates.
  "$DODVPN_BIN" tunnel down --control "$W/a.sock" >"$W/down.log" 2>&1
  local rc=$?
  st="$("$DODVPN_BIN" tunnel status --control "$W/a.sock" --json)"
  [[ $rc == 0 ]] && grep -q "deleted 1 IKE SA" "$W/down.log" && jq -e '.connections[0].state == "trap" and (.connections[0].children | length == 0)' <<<"$st" >/dev/null
  result $? "$name: \`tunnel down\` deletes the SAs and keeps the trap" "$(cat "$W/down.log")"
  netns_exec "dta$name" ping -c 2 -i 0.2 -W 3 -I "$SITE_A" "$SITE_B" >/dev/null 2>&1; result $? "$name: back on demand after \`tunnel down\`"
  ! "$DODVPN_BIN" tunnel down no-such-conn --control "$W/a.sock" >/dev/null 2>"$W/down-err.log" && grep -q "no connection named" "$W/down-err.log"
  result $? "$name: \`tunnel down\` of an unknown connection is a clear error" "$(cat "$W/down-err.log")"
  # Idle: the child and the IKE SA go away after idle_timeout.
  netns_wait_for 15 sh -c "\"$DODVPN_BIN\" tunnel status --control \"$W/a.sock\" --json | jq -e '.connections[0].children | length == 0' >/dev/null"
  result $? "$name: idle tunnel deleted"
  netns_exec "dta$name" ping -c 2 -i 0.5 -W 3 -I "$SITE_A" "$SITE_B" >/dev/null 2>&1; result $? "$name: comes back on demand after idle"
  netns_kill "$pa" "$pb"
  netns_del "dta$name" "dtb$name"
}

PSK='psk = "a test key that is long enough"'
run_case psk "$PSK" "$PSK"

CERTS="$(netns_workdir certs)"
pki_make "$CERTS" ecdsa a.test b.test >/dev/null
for n in a b; do
  openssl pkcs8 -topk8 -nocrypt -in "$CERTS/$n.test.key" -out "$CERTS/$n.p8" 2>/dev/null || cp "$CERTS/$n.test.key" "$CERTS/$n.p8"
done
run_case ecdsa "cert = \"$CERTS/a.test.crt\"
key = \"$CERTS/a.p8\"
ca = \"$CERTS/ca.crt\"" "cert = \"$CERTS/b.test.crt\"
key = \"$CERTS/b.p8\"
ca = \"$CERTS/ca.crt\""

# RSA certificates: A signs RSASSA-PKCS1-v1_5, B signs RSASSA-PSS (RFC 7427, SHA-256).
RSACERTS="$(netns_workdir rsacerts)"
pki_make "$RSACERTS" rsa a.test b.test >/dev/null
for n in a b; do
  openssl pkcs8 -topk8 -nocrypt -in "$RSACERTS/$n.test.key" -out "$RSACERTS/$n.p8" 2>/dev/null || cp "$RSACERTS/$n.test.key" "$RSACERTS/$n.p8"
done
run_case rsa "cert = \"$RSACERTS/a.test.crt\"
key = \"$RSACERTS/a.p8\"
ca = \"$RSACERTS/ca.crt\"
rsa_signature = \"pkcs1\"" "cert = \"$RSACERTS/b.test.crt\"
key = \"$RSACERTS/b.p8\"
ca = \"$RSACERTS/ca.crt\"
rsa_signature = \"pss\""

# Dual stack inside: one connection carries the IPv4 and the IPv6 site networks (the outer
# addresses stay IPv4). Both families cross the on-demand tunnel; traffic selectors of both
# families are negotiated.
run_dual_stack() {
  local W; W="$(netns_workdir tun-dual)"
  netns_pair dtadual dtbdual 1500 >/dev/null
  ip -n dtadual addr add fd00:a::1/64 dev site0 nodad
  ip -n dtbdual addr add fd00:b::1/64 dev site0 nodad
  conf "$W/a.toml" dva "$W/a.sock" "$OUTER_A" "$OUTER_B" "$SITE_NET_A\", \"fd00:a::/64" "$SITE_NET_B\", \"fd00:b::/64" a.test b.test "$PSK" 30s
  conf "$W/b.toml" dvb "$W/b.sock" "$OUTER_B" "$OUTER_A" "$SITE_NET_B\", \"fd00:b::/64" "$SITE_NET_A\", \"fd00:a::/64" b.test a.test "$PSK" 30s
  netns_spawn dtadual "$W/a.log" env DODVPN_LOG=info "$DODVPN_BIN" tunnel --config "$W/a.toml"; local pa=$NETNS_LAST_PID
  netns_spawn dtbdual "$W/b.log" env DODVPN_LOG=info "$DODVPN_BIN" tunnel --config "$W/b.toml"; local pb=$NETNS_LAST_PID
  netns_wait_for 10 grep -q ready "$W/a.log" && netns_wait_for 10 grep -q ready "$W/b.log" \
    || { result 1 "dual stack: daemons start" "$(tail -3 "$W/a.log" "$W/b.log")"; return; }
  netns_exec dtadual ping -6 -c 3 -i 0.2 -W 2 -I fd00:a::1 fd00:b::1 >"$W/ping6.log" 2>&1
  result $? "dual stack: IPv6 echo across the on-demand tunnel" "$(tail -2 "$W/ping6.log")"
  grep -q "icmp_seq=1 " "$W/ping6.log"
  result $? "dual stack: the first IPv6 packet, trapped on the second selector, was queued and delivered"
  netns_exec dtadual ping -c 3 -i 0.2 -W 2 -I "$SITE_A" "$SITE_B" >/dev/null 2>&1
  result $? "dual stack: IPv4 echo on the same connection"
  local st; st="$("$DODVPN_BIN" tunnel status --control "$W/a.sock" --json)"
  jq -e '[.connections[0].children[].remote[]] | (index("fd00:b::/64") != null) and (index("'"$SITE_NET_B"'") != null)' <<<"$st" >/dev/null
  result $? "dual stack: the child SA's selectors hold both families" "$(jq -c '[.connections[0].children[].remote]' <<<"$st")"
  netns_exec dtbdual ping -6 -c 2 -i 0.2 -W 2 -I fd00:b::1 fd00:a::1 >/dev/null 2>&1
  result $? "dual stack: IPv6 echo from the responder's side"
  netns_kill "$pa" "$pb"
  netns_del dtadual dtbdual
}
run_dual_stack

netns_summary
