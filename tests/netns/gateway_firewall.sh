#!/usr/bin/env bash
# The agent as its site's gateway (issue 9 point 3): nothing reaches the inside around the
# tunnels. Site A's gateway (agent, out0 192.0.2.11) forwards to a real inside host
# (10.1.0.50 in its own namespace behind in0 10.1.0.1); site B (agent, 192.0.2.12, inside
# 10.2.0.1); an outsider X (192.0.2.13) routes 10.1.0.0/24 via A's outer address.
#
#   sudo bash tests/netns/gateway_firewall.sh
#
# Checks: without the agent the path around is open (so the probes can fail); with it,
# plain IP from X to the inside gets no answer while B's host, through the tunnel with a
# grant, does; inside → outside is not forwarded; --allow-in / --allow-out open exactly what
# they name; SIGTERM removes the table, SIGKILL leaves the site closed; it fails closed.
# Prints "PASS/FAIL <check>" and "N passed, M failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$here/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools python nat
netns_trap_cleanup

work="$(netns_workdir gwfw)"
tag="gf$$"; tag="${tag:0:8}"
WAN="${tag}-wan" A="${tag}-a" IN="${tag}-in" B="${tag}-b" X="${tag}-x"
CENTRE=192.0.2.1 A_OUT=192.0.2.11 B_OUT=192.0.2.12 X_OUT=192.0.2.13
INSIDE=10.1.0.50 B_HOST=10.2.0.1
URL="https://$CENTRE:8443"
export DODVPN_KEYSTORE_PASSPHRASE="gateway-firewall-$$-$RANDOM"
not() { ! "$@"; }
die() { result 1 "setup" "$*"; netns_summary; exit 1; }
admin() { ip netns exec "$WAN" "$DODVPN_BIN" admin --json --center "$URL" --ca "$work/centre/pki/root.pem" \
  --credential-file "$work/centre/admin.token" "$@"; }
jid() { jq -r "$1"; }
pingf() { ip netns exec "$1" ping -c1 -W1 -q -I "$2" "$3" >/dev/null 2>&1; } # NS SRC DST
tcpf() { # NS SRC DST PORT : a TCP connection opens (1.5 s)
  ip netns exec "$1" python3 -c "import socket,sys
s=socket.socket(); s.settimeout(1.5); s.bind(('$2',0))
sys.exit(0 if s.connect_ex(('$3',$4))==0 else 1)"
}
tcp_answered() { # NS SRC DST PORT : connected or refused (RST) within 1.5 s
  ip netns exec "$1" python3 -c "import socket,sys
s=socket.socket(); s.settimeout(1.5); s.bind(('$2',0))
sys.exit(0 if s.connect_ex(('$3',$4)) in (0,111) else 1)"
}
table_in() { ip netns exec "$1" nft list table inet dodvpn_agent >/dev/null 2>&1; }

# ---------------------------------------------------------------- topology
for ns in "$WAN" "$A" "$IN" "$B" "$X"; do _nl_ns_add "$ns"; done
ip -n "$WAN" link add br0 type bridge && ip -n "$WAN" addr add "$CENTRE/24" dev br0 && ip -n "$WAN" link set br0 up ||
  die "bridge"
for pair in "$A:$A_OUT" "$B:$B_OUT" "$X:$X_OUT"; do
  IFS=: read -r ns outer <<<"$pair"
  ip link add "v$ns" netns "$WAN" type veth peer name out0 netns "$ns" || die "veth $ns"
  ip -n "$WAN" link set "v$ns" master br0 up
  ip -n "$ns" addr add "$outer/24" dev out0 && ip -n "$ns" link set out0 up && ip -n "$ns" link set lo up
done
_nl_veth "$A" in0 10.1.0.1/24 "$IN" eth0 "$INSIDE/24" 1500
ip -n "$IN" route add default via 10.1.0.1
ip netns exec "$A" sysctl -qw net.ipv4.ip_forward=1
_nl_site "$B" "$B_HOST"
ip -n "$X" route add 10.1.0.0/24 via "$A_OUT"
netns_spawn "$IN" "$work/listen.log" timeout 300 python3 -c "import socket
l=socket.socket(); l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); l.bind(('$INSIDE',22)); l.listen(16)
while True: l.accept()[0].close()"
netns_wait_for 5 ip netns exec "$IN" sh -c "ss -ltn | grep -q '$INSIDE:22 '" || die "listener"

# Without the agent the hole of issue 9.3 is there: the probes below can fail.
both_open() { pingf "$X" "$X_OUT" "$INSIDE" && tcpf "$X" "$X_OUT" "$INSIDE" 22; }
check "no agent: the outsider reaches the inside host around the tunnels (ICMP and TCP 22)" both_open
out_open() { pingf "$IN" "$INSIDE" "$X_OUT" && tcp_answered "$IN" "$INSIDE" "$X_OUT" 9; }
check "no agent: the inside host reaches the outsider directly (ICMP, and TCP gets a refusal)" out_open

# ---------------------------------------------------------------- centre, TR D.6
netns_spawn "$WAN" "$work/centre.log" "$DODVPN_BIN" center --data "$work/centre" --listen "$CENTRE:8443" --tls-name "$CENTRE"
netns_wait_for 60 sh -c "[ -f '$work/centre/admin.token' ]" && netns_wait_for 30 admin org list ||
  die "the centre did not come up: $(tail -3 "$work/centre.log")"
provider="$(admin org create "Device Provider" --kind vendor | jid .id)"
order="$(admin order create --org "$provider" --model DV-100 | jid .id)"
org="$(admin org create "Core Hospital" --kind hospital | jid .id)"
echo '{"inbound":[{"from":"*","services":["any"]}],"outbound":[{"to":"*","services":["any"]}]}' >"$work/open.json"
admin policy set "$org" --file "$work/open.json" >/dev/null || die "policy"
admin group create G >/dev/null || die "group"
for pair in "a:$A_OUT:10.1.0.0/24:$A" "b:$B_OUT:10.2.0.0/24:$B"; do
  IFS=: read -r k outer net ns <<<"$pair"
  dev="$(admin device register --serial "GF-$k" --model DV-100 --owner "$org" --order "$order" \
    --endpoint "$outer" --subnet "$net" | jid .id)"
  [[ -n "$dev" && "$dev" != null ]] || die "register $k"
  d6_enrol "$DODVPN_BIN" "$WAN" "$ns" "$URL" "$work/centre" "$dev" "$work/$k-ks" || die "enrol $k"
  admin group add G "$dev" >/dev/null || die "group add $k"
  printf -v "dev_$k" %s "$dev"
done

start_agent() { # K NS [ARGS...] ; sets AGENT_PID
  local k="$1" ns="$2"; shift 2
  netns_spawn "$ns" "$work/agent-$k.log" env DODVPN_LOG=info "$DODVPN_BIN" agent run --keystore "$work/$k-ks" \
    --control "$work/$k.sock" --idle-timeout 60s "$@"
  AGENT_PID="$NETNS_LAST_PID"
  netns_wait_for 20 ip netns exec "$ns" "$DODVPN_BIN" tunnel status --json --control "$work/$k.sock" ||
    die "agent $k did not start: $(tail -3 "$work/agent-$k.log")"
}
start_agent a "$A"; pid_a="$AGENT_PID"
start_agent b "$B"; pid_b="$AGENT_PID"
check "the agent installed its table (inet dodvpn_agent) on its outer interface out0" \
  sh -c "ip netns exec '$A' nft list table inet dodvpn_agent | grep -q 'iifname != \"out0\" accept'"

# ---------------------------------------------------------------- around the tunnels: nothing answers
check "agent up: the outsider → inside host $INSIDE around the tunnels, ICMP: no answer" not pingf "$X" "$X_OUT" "$INSIDE"
check "agent up: the outsider → $INSIDE:22 around the tunnels, TCP: no answer" not tcpf "$X" "$X_OUT" "$INSIDE" 22
check "agent up: the outsider → the gateway's inside address 10.1.0.1: no answer" not pingf "$X" "$X_OUT" 10.1.0.1
check "agent up: the gateway's own outer address still answers the outsider" pingf "$X" "$X_OUT" "$A_OUT"
check "agent up: the inside host is not forwarded to the outside" not pingf "$IN" "$INSIDE" "$X_OUT"

# ---------------------------------------------------------------- through the tunnel, with a grant: answers
g="$(admin connection apply --from "$dev_b" --to "$dev_a" | jq -r '.outcomes[0].grant_id')"
[[ -n "$g" && "$g" != null ]] || die "b → a not granted"
netns_wait_for 10 sh -c "ip netns exec '$B' '$DODVPN_BIN' tunnel status --json --control '$work/b.sock' | jq -e '.connections[] | select(.name == \"$dev_a\")'" ||
  die "b did not install the grant"
netns_wait_for 10 sh -c "ip netns exec '$A' '$DODVPN_BIN' tunnel status --json --control '$work/a.sock' | jq -e '.connections[] | select(.name == \"$dev_b\")'" ||
  die "a did not install the grant"
netns_wait_for 5 pingf "$B" "$B_HOST" "$INSIDE"; rc=$?
check "through the tunnel with a grant: site B's host → inside host $INSIDE answers (ICMP)" test "$rc" = 0
check "through the tunnel with a grant: site B's host → $INSIDE:22 (TCP)" tcpf "$B" "$B_HOST" "$INSIDE" 22
check "…while the outsider around the tunnels still gets nothing" not tcpf "$X" "$X_OUT" "$INSIDE" 22

# ---------------------------------------------------------------- SIGTERM removes, SIGKILL leaves it closed
netns_kill "$pid_a"
check "agent stopped with SIGTERM: its table is removed" not table_in "$A"
start_agent a "$A"; pid_a="$AGENT_PID"
kill -KILL "$pid_a"; netns_kill "$pid_a"
stays_closed() { table_in "$A" && ! pingf "$X" "$X_OUT" "$INSIDE"; }
check "agent killed with SIGKILL: the table stays and the site stays closed" stays_closed

# ---------------------------------------------------------------- the operator's exceptions
start_agent a "$A" --allow-in "$INSIDE,tcp/22" --allow-out "$X_OUT,icmp"; pid_a="$AGENT_PID"
check "restarted over the stale table, with --allow-in $INSIDE,tcp/22: the outsider opens $INSIDE:22" \
  tcpf "$X" "$X_OUT" "$INSIDE" 22
check "…but ICMP to $INSIDE from outside is still dropped" not pingf "$X" "$X_OUT" "$INSIDE"
check "--allow-out $X_OUT,icmp: the inside host's echo to the outsider is forwarded and its reply let back" \
  pingf "$IN" "$INSIDE" "$X_OUT"
check "…and TCP from the inside host to the outsider is still not forwarded (not even a refusal comes back)" \
  not tcp_answered "$IN" "$INSIDE" "$X_OUT" 9
netns_kill "$pid_a"

# ---------------------------------------------------------------- fail closed
out="$(ip netns exec "$A" env PATH=/nonexistent "$DODVPN_BIN" agent run --keystore "$work/a-ks" --control "$work/a2.sock" \
  --outer-interface out0 2>&1)"; rc=$?
refused() { # RC OUT PATTERN : a non-zero exit naming PATTERN
  [[ "$1" != 0 ]] && grep -q "$3" <<<"$2"
}
no_tun() { ! ip -n "$A" link show dodvpn0 >/dev/null 2>&1; }
closed() { refused "$rc" "$out" 'cannot install the gateway firewall' && no_tun; }
check "no nft: the agent refuses to start, no data plane ($(grep -o 'cannot install the gateway firewall[^:]*' <<<"$out" | head -1))" closed
out="$(ip netns exec "$A" "$DODVPN_BIN" agent run --keystore "$work/a-ks" --control "$work/a2.sock" --outer-interface lo 2>&1)"; rc=$?
check "--outer-interface lo is refused with a clear error" refused "$rc" "$out" 'lo cannot be an outer interface' 
out="$(ip netns exec "$A" "$DODVPN_BIN" agent run --keystore "$work/a-ks" --control "$work/a2.sock" --allow-in '10.1.0.300,tcp/22' 2>&1)"; rc=$?
check "a malformed --allow-in is refused: $(grep -m1 'not an address' <<<"$out")" refused "$rc" "$out" 'not an address or a prefix' 

netns_kill "$pid_b"
netns_summary
