#!/usr/bin/env bash
# Identity, not address (issue 19 item 5): a clinic behind a masquerading nftables NAT,
# registered without an endpoint, reaches a fixed-address hospital on demand, and the
# hospital answers; a fixed-address hospital ↔ lab pair works as before. Endpoint
# discovery (item 1): the clinic learns its public address from the centre and its
# candidates reach the hospital's grant. Address changes (item 4): the clinic takes a
# new DHCP lease (198.51.100.2 → .3, so a new NAT mapping too) during an 8 MiB
# transfer; MOBIKE moves the session (same id at both ends), sha256 equal.
#
#   sudo bash tests/netns/agent_nat.sh
#
#   WAN  br0 192.0.2.1/24 (centre)
#   H    out0 192.0.2.11/24, site0 10.1.0.1/24          (hospital, --endpoint 192.0.2.11)
#   L    out0 192.0.2.12/24, site0 10.3.0.1/24          (lab, --endpoint 192.0.2.12)
#   NAT  wan0 192.0.2.101/24, lan0 198.51.100.1/24, nftables masquerade out of wan0,
#        forward: lan0 → wan0 and established/related only
#   C    out0 198.51.100.2/24 (default via the NAT), site0 10.2.0.1/24  (clinic, no endpoint)
#
# Prints "PASS/FAIL <check>" and "N passed, M failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$here/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools nat socat
netns_trap_cleanup

work="$(netns_workdir agnat)"
tag="an$$"; tag="${tag:0:8}"
WAN="${tag}-wan" H="${tag}-h" L="${tag}-l" NAT="${tag}-n" C="${tag}-c"
CENTRE=192.0.2.1 H_OUT=192.0.2.11 L_OUT=192.0.2.12 NAT_PUB=192.0.2.101 NAT_LAN=198.51.100.1 C_OUT=198.51.100.2
H4=10.1.0.1 C4=10.2.0.1 L4=10.3.0.1
URL="https://$CENTRE:8443"
export DODVPN_KEYSTORE_PASSPHRASE="agent-nat-$$-$RANDOM"
die() { result 1 "setup" "$*"; netns_summary; exit 1; }
admin() { ip netns exec "$WAN" "$DODVPN_BIN" admin --json --center "$URL" --ca "$work/centre/pki/root.pem" \
  --credential-file "$work/centre/admin.token" "$@"; }
status() { ip netns exec "$1" "$DODVPN_BIN" tunnel status --json --control "$work/$2.sock"; } # NS K
conn() { status "$1" "$2" | jq -c --arg n "$3" '.connections[] | select(.name == $n)'; }      # NS K PEER

# ---------------------------------------------------------------- topology
for ns in "$WAN" "$H" "$L" "$NAT" "$C"; do _nl_ns_add "$ns"; done
ip -n "$WAN" link add br0 type bridge && ip -n "$WAN" addr add "$CENTRE/24" dev br0 && ip -n "$WAN" link set br0 up || die "bridge"
attach() { # NS IF ADDR : a veth from the bridge into NS
  ip link add "v$1" netns "$WAN" type veth peer name "$2" netns "$1" || die "veth $1"
  ip -n "$WAN" link set "v$1" master br0 up
  ip -n "$1" addr add "$3/24" dev "$2" && ip -n "$1" link set "$2" up
}
attach "$H" out0 "$H_OUT"; _nl_site "$H" "$H4"
attach "$L" out0 "$L_OUT"; _nl_site "$L" "$L4"
attach "$NAT" wan0 "$NAT_PUB"
_nl_veth "$NAT" lan0 "$NAT_LAN/24" "$C" out0 "$C_OUT/24" 1500
ip -n "$C" route add default via "$NAT_LAN" || die "clinic default route"
_nl_site "$C" "$C4"
ip netns exec "$NAT" nft -f - <<EOF || die "nftables NAT in $NAT"
table ip dodvpn_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname "lan0" oifname "wan0" accept
    ct state established,related accept
  }
}
EOF
netns_wait_for 5 ip netns exec "$C" ping -c1 -W1 -q "$CENTRE" || die "clinic → centre through the NAT: no ping"
check "the hospital has no route to the clinic's private address ($C_OUT)" \
  sh -c "! ip netns exec '$H' ping -c1 -W1 -q '$C_OUT'"

# ---------------------------------------------------------------- centre, three sites
netns_spawn "$WAN" "$work/centre.log" "$DODVPN_BIN" center --data "$work/centre" --listen "$CENTRE:8443" --tls-name "$CENTRE"
netns_wait_for 60 sh -c "[ -f '$work/centre/admin.token' ]" && netns_wait_for 30 admin org list ||
  die "the centre did not come up: $(tail -3 "$work/centre.log")"
provider="$(admin org create "Device Provider" --kind vendor | jq -r .id)"
order="$(admin order create --org "$provider" --model DV-100 | jq -r .id)"
org="$(admin org create "NAT Hospital" --kind hospital | jq -r .id)"
echo '{"inbound":[{"from":"*","services":["any"]}],"outbound":[{"to":"*","services":["any"]}]}' >"$work/open.json"
admin policy set "$org" --file "$work/open.json" >/dev/null || die "policy"
admin group create GN >/dev/null || die "group"
enrolled=0
for row in "h=$H=10.1.0.0/24=$H_OUT" "l=$L=10.3.0.0/24=$L_OUT" "c=$C=10.2.0.0/24="; do
  IFS== read -r k ns subnet ep <<<"$row"
  args=(--serial "NAT-$k-$$" --model DV-100 --owner "$org" --order "$order" --subnet "$subnet")
  [[ -n "$ep" ]] && args+=(--endpoint "$ep")
  dev="$(admin device register "${args[@]}" | jq -r .id)"
  [[ -n "$dev" && "$dev" != null ]] || die "register $k"
  d6_enrol "$DODVPN_BIN" "$WAN" "$ns" "$URL" "$work/centre" "$dev" "$work/$k-ks" && enrolled=$((enrolled + 1))
  admin group add GN "$dev" >/dev/null || die "group add $k"
  printf -v "dev_$k" %s "$dev"
done
check "three sites enrolled; the clinic through the NAT, registered without an endpoint" test "$enrolled" = 3
check "the centre holds no endpoint for the clinic" \
  sh -c "admin() { ip netns exec '$WAN' '$DODVPN_BIN' admin --json --center '$URL' --ca '$work/centre/pki/root.pem' --credential-file '$work/centre/admin.token' \"\$@\"; }; admin device list | jq -e --arg d '$dev_c' '.[] | select(.id == \$d) | (.endpoint // null) == null' >/dev/null"

start_agent() { # K NS
  netns_spawn "$2" "$work/agent-$1.log" env DODVPN_LOG=info "$DODVPN_BIN" agent run --keystore "$work/$1-ks" \
    --control "$work/$1.sock" --idle-timeout 60s
  AGENT_PID="$NETNS_LAST_PID"
  netns_wait_for 20 status "$2" "$1" || die "agent $1 did not start: $(tail -3 "$work/agent-$1.log")"
}
start_agent h "$H"; pid_h="$AGENT_PID"
start_agent l "$L"; pid_l="$AGENT_PID"
start_agent c "$C"; pid_c="$AGENT_PID"

# ---------------------------------------------------------------- fixed pair: as before
g="$(admin connection apply --from "$dev_h" --to "$dev_l" | jq -r '.outcomes[0].grant_id')"
[[ -n "$g" && "$g" != null ]] || die "h → l not granted"
netns_wait_for 15 sh -c "ip netns exec '$H' '$DODVPN_BIN' tunnel status --json --control '$work/h.sock' | jq -e --arg n '$dev_l' '.connections[] | select(.name == \$n)' >/dev/null" ||
  die "h → l not installed"
netns_wait_for 10 ip netns exec "$H" ping -c1 -W1 -q -I "$H4" "$L4"; rc=$?
check "fixed addresses: the hospital reaches the lab on demand (ping $H4 → $L4)" test "$rc" = 0
check "fixed addresses: the hospital initiated to the lab's registered endpoint $L_OUT" \
  grep -aq "initiating IKE to $L_OUT:500" "$work/agent-h.log"
check "fixed addresses: 2 MiB TCP hospital → lab, sha256 equal" tcp_transfer "$H" "$L" "$L4" "$H4" 2 "$work" 5011

# ---------------------------------------------------------------- clinic → hospital through the NAT
g="$(admin connection apply --from "$dev_c" --to "$dev_h" | jq -r '.outcomes[0].grant_id')"
[[ -n "$g" && "$g" != null ]] || die "c → h not granted"
check "the clinic's agent learned its public address from the centre and reported its candidates" \
  grep -aq "reachable at $C_OUT:4500, $NAT_PUB:4500" "$work/agent-c.log"
check "the hospital's grant names the clinic's candidates, the NAT's public address among them" \
  sh -c "ip netns exec '$WAN' '$DODVPN_BIN' admin --json --center '$URL' --ca '$work/centre/pki/root.pem' --credential-file '$work/centre/admin.token' grant show '$g' | jq -e 'tostring | contains(\"$NAT_PUB:4500\")' >/dev/null"
installed() { conn "$1" "$2" "$3" | grep -q .; }
netns_wait_for 15 installed "$H" h "$dev_c" && netns_wait_for 15 installed "$C" c "$dev_h" || die "c → h not installed at both ends"
check "the hospital installs the grant of a peer without an endpoint (not skipped), remote \"any\"" \
  sh -c "ip netns exec '$H' '$DODVPN_BIN' tunnel status --json --control '$work/h.sock' | jq -e --arg n '$dev_c' '.connections[] | select(.name == \$n) | .remote == \"any\"' >/dev/null"
check "no 'no reachable endpoint' skip in the hospital's log" sh -c "! grep -aq 'no reachable endpoint' '$work/agent-h.log'"
netns_wait_for 10 ip netns exec "$C" ping -c1 -W1 -q -I "$C4" "$H4"; rc=$?
check "the clinic behind the NAT reaches the hospital on demand (ping $C4 → $H4)" test "$rc" = 0
check "the hospital's connection to the clinic is up, its peer the NAT's public address $NAT_PUB" \
  sh -c "ip netns exec '$H' '$DODVPN_BIN' tunnel status --json --control '$work/h.sock' | jq -e --arg n '$dev_c' '.connections[] | select(.name == \$n) | .state == \"established\" and .remote == \"$NAT_PUB\"' >/dev/null"
check "the hospital logged that it identified the clinic by its certificate, not its address" \
  grep -aq "peer identified by its certificate" "$work/agent-h.log"
check "the hospital answers over the clinic's SA: 2 MiB TCP clinic → hospital, sha256 equal" \
  tcp_transfer "$C" "$H" "$H4" "$C4" 2 "$work" 5012
answered() { # the hospital's child SA to the clinic carried packets out (its answers)
  conn "$H" h "$dev_c" | jq -e '[.children[].packets_out] | add > 0' >/dev/null
}
check "the hospital's child SA to the clinic sent packets (answers through the NAT)" answered
check "the hospital's child SA sends its ESP to the NAT's public address ($NAT_PUB)" \
  sh -c "grep -a 'child SA installed' '$work/agent-h.log' | grep -aq 'peer=$NAT_PUB:'"

# ---------------------------------------------------------------- the clinic's address changes (MOBIKE)
C_NEW=198.51.100.3
session_of() { conn "$1" "$2" "$3" | jq -r '.session // empty'; } # NS K PEER
s_c0="$(session_of "$C" c "$dev_h")" s_h0="$(session_of "$H" h "$dev_c")"
check "before the move both ends report one session ($s_c0)" sh -c "[ -n '$s_c0' ] && [ '$s_c0' = '$s_h0' ]"
ip netns exec "$C" tc qdisc add dev out0 root tbf rate 10mbit burst 64kb latency 100ms || die "tc tbf on the clinic"
( sleep 2
  printf 'addr del %s/24 dev out0\naddr add %s/24 dev out0\nroute add default via %s\n' "$C_OUT" "$C_NEW" "$NAT_LAN" |
    ip -n "$C" -batch - ) &
mover=$!
t0=$SECONDS
check "an 8 MiB TCP transfer clinic → hospital across the clinic's new lease: sha256 equal" \
  tcp_transfer "$C" "$H" "$H4" "$C4" 8 "$work" 5013
wait "$mover"
took=$((SECONDS - t0))
ip netns exec "$C" tc qdisc del dev out0 root
check "the transfer outlasted the move (took $took s)" test "$took" -gt 3
check "the clinic's address changed to $C_NEW" sh -c "ip -n '$C' -4 addr show dev out0 | grep -q '$C_NEW/' && ! ip -n '$C' -4 addr show dev out0 | grep -q '$C_OUT/'"
check "the clinic moved its IKE SA with MOBIKE" sh -c "sed 's/\x1b\[[0-9;]*m//g' '$work/agent-c.log' | grep -q 'moving the IKE SA with MOBIKE'"
check "the hospital followed the clinic to its new NAT mapping" sh -c "sed 's/\x1b\[[0-9;]*m//g' '$work/agent-h.log' | grep -q 'IKE SA moved to new addresses'"
check "the session id is unchanged at the clinic ($(session_of "$C" c "$dev_h"))" test "$(session_of "$C" c "$dev_h")" = "$s_c0"
check "the session id is unchanged at the hospital" test "$(session_of "$H" h "$dev_c")" = "$s_h0"
downs() { sed 's/\x1b\[[0-9;]*m//g' "$work/agent-$1.log" | grep 'IKE SA down' | grep -c "conn=$2"; } # K PEER
check "the clinic ↔ hospital IKE SA never went down (clinic: $(downs c "$dev_h"), hospital: $(downs h "$dev_c"))" \
  test "$(downs c "$dev_h")$(downs h "$dev_c")" = 00
check "the clinic reported its new lease to the centre" \
  netns_wait_for 30 grep -aq "address changed: now reachable at $C_NEW:4500" "$work/agent-c.log"
check "the clinic opened its event stream again from the new address" \
  grep -aq "our address changed: opening the event stream again" "$work/agent-c.log"
check "after the move the clinic still reaches the hospital (ping $C4 → $H4)" \
  ip netns exec "$C" ping -c2 -W2 -q -I "$C4" "$H4"

# ---------------------------------------------------------------- the NAT's public address changes
# The ISP gives the clinic's router a new address: the clinic's host sees nothing, its
# datagrams just leave from the new one. It keeps sending, nothing comes back, so after
# 2 s it sends a liveness check, which the hospital follows (RFC 7296 §2.23).
NAT_PUB2=192.0.2.102
moves_h0="$(sed 's/\x1b\[[0-9;]*m//g' "$work/agent-h.log" | grep -c 'IKE SA moved to new addresses')"
ip netns exec "$C" tc qdisc add dev out0 root tbf rate 10mbit burst 64kb latency 100ms || die "tc tbf on the clinic"
( sleep 2
  printf 'addr del %s/24 dev wan0\naddr add %s/24 dev wan0\n' "$NAT_PUB" "$NAT_PUB2" | ip -n "$NAT" -batch - ) &
mover=$!
t0=$SECONDS
check "an 8 MiB TCP transfer clinic → hospital across the NAT's new public address: sha256 equal" \
  tcp_transfer "$C" "$H" "$H4" "$C4" 8 "$work" 5015
wait "$mover"
took=$((SECONDS - t0))
ip netns exec "$C" tc qdisc del dev out0 root
check "the transfer outlasted the change (took $took s)" test "$took" -gt 3
check "the clinic, hearing nothing back, sent a liveness check" \
  sh -c "sed 's/\x1b\[[0-9;]*m//g' '$work/agent-c.log' | grep -q 'nothing back for'"
check "the hospital followed the clinic to the NAT's new address $NAT_PUB2" \
  sh -c "[ \"\$(sed 's/\x1b\[[0-9;]*m//g' '$work/agent-h.log' | grep 'IKE SA moved to new addresses' | grep -c 'peer=$NAT_PUB2:')\" -ge 1 ]"
check "the session id is still $s_c0 at both ends" \
  sh -c "[ '$(session_of "$C" c "$dev_h")' = '$s_c0' ] && [ '$(session_of "$H" h "$dev_c")' = '$s_h0' ]"

netns_kill "$pid_c" "$pid_h" "$pid_l"
netns_summary
