#!/usr/bin/env bash
# The agent over IPv6-only outer addresses (issue 16 point 4, R-DP-2): the centre's endpoint
# is IPv6 (https://[2001:db8:17::1]:8443), the devices' registered endpoints are IPv6, and the
# outer interfaces carry no IPv4 address at all. Two sites, each with an IPv4 and an IPv6
# inside subnet, enrolled through TR D.6 over IPv6, agent ↔ agent IKE and ESP-in-UDP over IPv6.
#
#   sudo bash tests/netns/agent_ipv6.sh
#
#   WAN  br0 2001:db8:17::1/64 (centre)
#   A    out0 2001:db8:17::11/64, site0 10.1.0.1/24 + fd00:17:1::1/64
#   B    out0 2001:db8:17::12/64, site0 10.2.0.1/24 + fd00:17:2::1/64
#
# Checks: no IPv4 on any outer interface; enrolment over IPv6; a grant B → A: B initiates on
# demand, ping and TCP (sha256) over IPv4 inner and IPv6 inner, both ways; the IKE SA's peer is
# the IPv6 endpoint and the agents' UDP 500/4500 sockets are IPv6; both ends report the session to
# the centre; a grant A → B: after both SAs are gone A initiates (A as initiator over IPv6).
# Prints "PASS/FAIL <check>" and "N passed, M failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$here/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools socat python
netns_trap_cleanup

work="$(netns_workdir agv6)"
tag="a6$$"; tag="${tag:0:8}"
WAN="${tag}-wan" A="${tag}-a" B="${tag}-b"
CENTRE=2001:db8:17::1 A_OUT=2001:db8:17::11 B_OUT=2001:db8:17::12
A4=10.1.0.1 B4=10.2.0.1 A6=fd00:17:1::1 B6=fd00:17:2::1
URL="https://[$CENTRE]:8443"
export DODVPN_KEYSTORE_PASSPHRASE="agent-ipv6-$$-$RANDOM"
die() { result 1 "setup" "$*"; netns_summary; exit 1; }
admin() { ip netns exec "$WAN" "$DODVPN_BIN" admin --json --center "$URL" --ca "$work/centre/pki/root.pem" \
  --credential-file "$work/centre/admin.token" "$@"; }
status() { ip netns exec "$1" "$DODVPN_BIN" tunnel status --json --control "$work/$2.sock"; } # NS K

# tcp6_transfer SRC_NS DST_NS DST_ADDR SRC_ADDR MBYTES PORT — sha256 compared on both ends
tcp6_transfer() {
  local src="$1" dst="$2" daddr="$3" saddr="$4" mb="$5" port="$6"
  head -c "$((mb * 1024 * 1024))" /dev/urandom >"$work/tx6.bin"; rm -f "$work/rx6.bin"
  netns_spawn "$dst" "$work/socat6-rx.log" timeout 120 socat -u \
    "TCP6-LISTEN:$port,bind=[$daddr],reuseaddr" "OPEN:$work/rx6.bin,creat,trunc"
  local rxpid="$NETNS_LAST_PID"
  netns_wait_for 5 ip netns exec "$dst" sh -c "ss -ltn | grep -qF '[$daddr]:$port '" || { netns_kill "$rxpid"; return 1; }
  ip netns exec "$src" timeout 120 socat -u "OPEN:$work/tx6.bin" "TCP6:[$daddr]:$port,bind=[$saddr]" 2>"$work/socat6-tx.log" ||
    { netns_kill "$rxpid"; return 1; }
  local i; for ((i = 0; i < 200; i++)); do [[ -e /proc/$rxpid ]] || break; sleep 0.05; done
  netns_kill "$rxpid"
  [[ "$(sha256sum <"$work/tx6.bin" | cut -d' ' -f1)" == "$(sha256sum <"$work/rx6.bin" 2>/dev/null | cut -d' ' -f1)" ]]
}

# ---------------------------------------------------------------- topology: IPv6-only outside
for ns in "$WAN" "$A" "$B"; do _nl_ns_add "$ns"; done
ip -n "$WAN" link add br0 type bridge && ip -n "$WAN" addr add "$CENTRE/64" dev br0 nodad && ip -n "$WAN" link set br0 up ||
  die "bridge"
ip -n "$WAN" link set lo up
for pair in "$A=$A_OUT=$A4=$A6" "$B=$B_OUT=$B4=$B6"; do
  IFS== read -r ns outer in4 in6 <<<"$pair"
  ip link add "v$ns" netns "$WAN" type veth peer name out0 netns "$ns" || die "veth $ns"
  ip -n "$WAN" link set "v$ns" master br0 up
  ip -n "$ns" addr add "$outer/64" dev out0 nodad && ip -n "$ns" link set out0 up && ip -n "$ns" link set lo up
  _nl_site "$ns" "$in4"
  ip -n "$ns" addr add "$in6/64" dev site0 nodad
done
for ns in "$A" "$B"; do
  netns_wait_for 5 ip netns exec "$ns" ping -6 -c1 -W1 -q "$CENTRE" || die "no IPv6 from $ns to the centre"
done
no_v4_outside() {
  local ns
  for ns in "$A" "$B"; do [[ -z "$(ip -n "$ns" -4 addr show dev out0)" ]] || return 1; done
  [[ -z "$(ip -n "$WAN" -4 addr show dev br0)" ]]
}
check "the outer interfaces (sites' out0, the centre's br0) have no IPv4 address" no_v4_outside

# ---------------------------------------------------------------- centre on IPv6, TR D.6 over IPv6
netns_spawn "$WAN" "$work/centre.log" "$DODVPN_BIN" center --data "$work/centre" --listen "[$CENTRE]:8443" --tls-name "$CENTRE"
netns_wait_for 60 sh -c "[ -f '$work/centre/admin.token' ]" && netns_wait_for 30 admin org list ||
  die "the centre did not come up on [$CENTRE]:8443: $(tail -3 "$work/centre.log")"
provider="$(admin org create "Device Provider" --kind vendor | jq -r .id)"
order="$(admin order create --org "$provider" --model DV-100 | jq -r .id)"
org="$(admin org create "IPv6 Hospital" --kind hospital | jq -r .id)"
echo '{"inbound":[{"from":"*","services":["any"]}],"outbound":[{"to":"*","services":["any"]}]}' >"$work/open.json"
admin policy set "$org" --file "$work/open.json" >/dev/null || die "policy"
admin group create G6 >/dev/null || die "group"
enrolled=0
for pair in "a=$A_OUT=10.1.0.0/24=fd00:17:1::/64=$A" "b=$B_OUT=10.2.0.0/24=fd00:17:2::/64=$B"; do
  IFS== read -r k outer net4 net6 ns <<<"$pair"
  dev="$(admin device register --serial "V6-$k-$$" --model DV-100 --owner "$org" --order "$order" \
    --endpoint "$outer" --subnet "$net4" --subnet "$net6" | jq -r .id)"
  [[ -n "$dev" && "$dev" != null ]] || die "register $k with endpoint $outer"
  d6_enrol "$DODVPN_BIN" "$WAN" "$ns" "$URL" "$work/centre" "$dev" "$work/$k-ks" && enrolled=$((enrolled + 1))
  admin group add G6 "$dev" >/dev/null || die "group add $k"
  printf -v "dev_$k" %s "$dev"
done
check "both sites enrolled (TR D.6 d–l) with the centre over IPv6 ($URL)" test "$enrolled" = 2

start_agent() { # K NS ; sets AGENT_PID
  netns_spawn "$2" "$work/agent-$1.log" env DODVPN_LOG=info "$DODVPN_BIN" agent run --keystore "$work/$1-ks" \
    --control "$work/$1.sock" --idle-timeout 60s
  AGENT_PID="$NETNS_LAST_PID"
  netns_wait_for 20 status "$2" "$1" || die "agent $1 did not start: $(tail -3 "$work/agent-$1.log")"
}
start_agent a "$A"; pid_a="$AGENT_PID"
start_agent b "$B"; pid_b="$AGENT_PID"
v6_sockets() { # NS : the agent's IKE and NAT-T sockets are IPv6 ones
  local s; s="$(ip netns exec "$1" ss -uan)"
  grep -qE '\]:500 |\*:500 ' <<<"$s" && grep -qE '\]:4500 |\*:4500 ' <<<"$s"
}
check "both agents listen for IKE and ESP-in-UDP on IPv6 (UDP [::]:500 and [::]:4500)" \
  bash -c "$(declare -f v6_sockets); v6_sockets '$A' && v6_sockets '$B'"

# ---------------------------------------------------------------- grant B → A: B initiates over IPv6
g1="$(admin connection apply --from "$dev_b" --to "$dev_a" | jq -r '.outcomes[0].grant_id')"
[[ -n "$g1" && "$g1" != null ]] || die "b → a not granted"
installed() { status "$1" "$2" | jq -e --arg n "$3" '.connections[] | select(.name == $n)' >/dev/null; } # NS K PEER
netns_wait_for 10 installed "$B" b "$dev_a" && netns_wait_for 10 installed "$A" a "$dev_b" || die "the grant was not installed at both ends"
check "grant b → a installed at both ends, remote endpoint IPv6 ($A_OUT at b)" \
  sh -c "ip netns exec '$B' '$DODVPN_BIN' tunnel status --json --control '$work/b.sock' | jq -e --arg n '$dev_a' '.connections[] | select(.name == \$n) | tostring | contains(\"$A_OUT\")'"
netns_wait_for 10 ip netns exec "$B" ping -c1 -W1 -q -I "$B4" "$A4"; rc=$?
check "IPv4 inner, b initiates on demand over IPv6 outer: ping $B4 → $A4" test "$rc" = 0
check "IPv6 inner: ping6 $B6 → $A6" ip netns exec "$B" ping -6 -c 3 -i 0.2 -W 2 -q -I "$B6" "$A6"
# Direction: the data plane's filter is stateless and lets ICMP through both ways
# (dataplane/src/filter.rs), so the check that only b opens is made with TCP: a's SYN
# towards b is refused while b's connections to a pass.
ip netns exec "$B" socat -u TCP-LISTEN:5009,bind="$B4",reuseaddr OPEN:/dev/null >/dev/null 2>&1 &
listener=$!
sleep 0.3
check "b → a grant only: a cannot open a TCP connection to b ($A4 → $B4:5009)" \
  sh -c "! ip netns exec '$A' timeout 4 socat -u OPEN:/dev/null TCP:$B4:5009,connect-timeout=2"
kill "$listener" 2>/dev/null; wait "$listener" 2>/dev/null
check "IPv4 inner: 4 MiB TCP b → a, sha256 equal" tcp_transfer "$B" "$A" "$A4" "$B4" 4 "$work" 5001
check "IPv6 inner: 4 MiB TCP b → a, sha256 equal" tcp6_transfer "$B" "$A" "$A6" "$B6" 4 5003
ike_peer_v6() { # NS K PEER_ADDR : an IKE SA up with that IPv6 peer (the SA-up line in the log names it)
  grep -a "peer=\[$3\]" "$work/agent-$2.log" | grep -aq "child SA installed"
}
check "b's child SA was installed with peer=$A_OUT (IKE over IPv6, b the initiator)" ike_peer_v6 "$B" b "$A_OUT"
check "a's child SA was installed with peer=$B_OUT (a the responder over IPv6)" ike_peer_v6 "$A" a "$B_OUT"
check "b's log shows b initiating IKE to $A_OUT" grep -aq "initiating IKE to \[$A_OUT\]:500\|initiating IKE to $A_OUT" "$work/agent-b.log"
sessions_up() { admin session list --device "$dev_b" 2>/dev/null | jq -e '[.[] | select(.status == "up")] | length > 0' >/dev/null; }
netns_wait_for 30 sessions_up; rc=$?
check "a session of b is up in the centre's list (reported by the agents over IPv6)" test "$rc" = 0

# ---------------------------------------------------------------- grant A → B: A initiates over IPv6
g2="$(admin connection apply --from "$dev_a" --to "$dev_b" | jq -r '.outcomes[0].grant_id')"
[[ -n "$g2" && "$g2" != null ]] || die "a → b not granted"
sleep 1
ip netns exec "$A" "$DODVPN_BIN" tunnel down --control "$work/a.sock" >/dev/null 2>&1
ip netns exec "$B" "$DODVPN_BIN" tunnel down --control "$work/b.sock" >/dev/null 2>&1
no_children() { status "$1" "$2" | jq -e '[.connections[].children[]?] | length == 0' >/dev/null; }
netns_wait_for 5 no_children "$A" a && netns_wait_for 5 no_children "$B" b; rc=$?
check "\`tunnel down\` on both: no child SA left at either end" test "$rc" = 0
from=$(($(wc -l <"$work/agent-a.log") + 1))
netns_wait_for 10 ip netns exec "$A" ping -6 -c1 -W1 -q -I "$A6" "$B6"; rc=$?
check "IPv6 inner, a initiates on demand over IPv6 outer: ping6 $A6 → $B6" test "$rc" = 0
check "a's log shows a initiating IKE to $B_OUT this time" \
  sh -c "tail -n +$from '$work/agent-a.log' | grep -aq 'initiating IKE to \[$B_OUT\]:500\|initiating IKE to $B_OUT'"
check "IPv4 inner after a's handshake: ping $A4 → $B4" ip netns exec "$A" ping -c 2 -i 0.2 -W 2 -q -I "$A4" "$B4"
check "IPv4 inner: ping $A4 → $B4 (the other way, same SA)" ip netns exec "$A" ping -c 3 -i 0.2 -W 2 -q -I "$A4" "$B4"
check "IPv6 inner: ping6 $A6 → $B6" ip netns exec "$A" ping -6 -c 3 -i 0.2 -W 2 -q -I "$A6" "$B6"
check "IPv4 inner: 4 MiB TCP a → b, sha256 equal" tcp_transfer "$A" "$B" "$B4" "$A4" 4 "$work" 5002
check "IPv6 inner: 4 MiB TCP a → b, sha256 equal" tcp6_transfer "$A" "$B" "$B6" "$A6" 4 5004

netns_kill "$pid_a" "$pid_b"
netns_summary
