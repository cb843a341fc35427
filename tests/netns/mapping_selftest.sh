#!/usr/bin/env bash
# R-DP-8 (TR D.7 c): two clinics with the SAME inside subnet (10.2.0.0/24, 10.2.0.1 on
# both) reach one hospital (10.10.9.0/24) and each other through `dodvpn tunnel`
# with address mapping: clinic A is seen as 100.64.0.0/24, clinic B as 100.64.1.0/24
# (local_map; IKE selectors name the visible prefixes). Real ICMP, TCP (8 MiB, sha256
# compared) and UDP (an ICMP port-unreachable whose quoted header must be translated
# back for the sender's socket to see it). Needs root. Prints PASS/FAIL per case and
# "N passed, N failed".
#
#   clinic A (dmpa) out0 192.0.2.1 ──── 192.0.2.2 out0 ┐
#                                         hospital (dmph), forwards outer traffic
#   clinic B (dmpb) out0 198.51.100.1 ── 198.51.100.2 out1 ┘
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$HERE/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools socat python
netns_trap_cleanup


A=dmpa$$; B=dmpb$$; H=dmph$$
W="$(netns_workdir mapping)"
_nl_ns_add "$A"; _nl_ns_add "$B"; _nl_ns_add "$H"
_nl_veth "$A" out0 192.0.2.1/24 "$H" out0 192.0.2.2/24 1500
_nl_veth "$B" out0 198.51.100.1/24 "$H" out1 198.51.100.2/24 1500
ip -n "$A" route add default via 192.0.2.2
ip -n "$B" route add default via 198.51.100.2
_nl_site "$A" 10.2.0.1
_nl_site "$B" 10.2.0.1
_nl_site "$H" 10.10.9.1
PSK='psk = "a test key that is long enough"'

conn() { # NAME LOCAL_ADDR REMOTE_ADDR LOCAL_NET REMOTE_NET LOCAL_ID REMOTE_ID [MAP_REAL MAP_VISIBLE]
  cat <<CONF
[[connection]]
name = "$1"
local_addr = "$2"
remote_addr = "$3"
local_subnets = ["$4"]
remote_subnets = ["$5"]
local_id = "$6"
remote_id = "$7"
$PSK
start = "trap"
idle_timeout = "60s"
CONF
  [[ -n "${8:-}" ]] && echo "local_map = [{ real = \"$8\", visible = \"$9\" }]"
  echo
}
{ echo "interface = \"dvh\""; echo "control = \"$W/h.sock\""
  conn clinic-a 192.0.2.2 192.0.2.1 10.10.9.0/24 100.64.0.0/24 h.test a.test
  conn clinic-b 198.51.100.2 198.51.100.1 10.10.9.0/24 100.64.1.0/24 h.test b.test
} >"$W/h.toml"
{ echo "interface = \"dva\""; echo "control = \"$W/a.sock\""
  conn hosp 192.0.2.1 192.0.2.2 100.64.0.0/24 10.10.9.0/24 a.test h.test 10.2.0.0/24 100.64.0.0/24
  conn clinic-b 192.0.2.1 198.51.100.1 100.64.0.0/24 100.64.1.0/24 a.test b.test 10.2.0.0/24 100.64.0.0/24
} >"$W/a.toml"
{ echo "interface = \"dvb\""; echo "control = \"$W/b.sock\""
  conn hosp 198.51.100.1 198.51.100.2 100.64.1.0/24 10.10.9.0/24 b.test h.test 10.2.0.0/24 100.64.1.0/24
  conn clinic-a 198.51.100.1 192.0.2.1 100.64.1.0/24 100.64.0.0/24 b.test a.test 10.2.0.0/24 100.64.1.0/24
} >"$W/b.toml"
for n in h a b; do
  ns=$H; [[ $n == a ]] && ns=$A; [[ $n == b ]] && ns=$B
  netns_spawn "$ns" "$W/$n.log" env DODVPN_LOG=info "$DODVPN_BIN" tunnel --config "$W/$n.toml"
done
for n in h a b; do
  netns_wait_for 10 grep -q ready "$W/$n.log" || { result 1 "daemon $n starts" "$(tail -3 "$W/$n.log")"; }
done

# A TCP server in NS on PORT that answers each client with the address it sees it from.
whoami_server() { # NS PORT
  netns_spawn "$1" "$W/whoami-$1-$2.log" python3 -c "
import socket
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', $2)); s.listen(8); print('listening', flush=True)
while True:
    c,a=s.accept(); c.sendall(a[0].encode()); c.close()"
  netns_wait_for 5 grep -q listening "$W/whoami-$1-$2.log"
}
seen_as() { # NS SRC DST PORT -> the address the server saw
  netns_exec "$1" python3 -c "
import socket
s=socket.create_connection(('$3', $4), timeout=3, source_address=('$2', 0))
print(s.recv(100).decode())" 2>/dev/null
}
whoami_server "$H" 7000
whoami_server "$A" 7001
whoami_server "$B" 7001

# Both clinics, same source address, reach the hospital; it sees them apart.
for c in A B; do
  ns=${!c}
  netns_exec "$ns" ping -c 3 -i 0.2 -W 3 -I 10.2.0.1 10.10.9.1 >"$W/ping-$c.log" 2>&1
  result $? "clinic $c (10.2.0.1) pings the hospital 10.10.9.1" "$(tail -2 "$W/ping-$c.log")"
done
got="$(seen_as "$A" 10.2.0.1 10.10.9.1 7000)"
[[ "$got" == 100.64.0.1 ]]; result $? "the hospital sees clinic A's 10.2.0.1 as 100.64.0.1 (got '$got')"
got="$(seen_as "$B" 10.2.0.1 10.10.9.1 7000)"
[[ "$got" == 100.64.1.1 ]]; result $? "the hospital sees clinic B's 10.2.0.1 as 100.64.1.1 (got '$got')"

# TCP bulk both clinics → hospital (GSO super-packets split, checksums fixed per segment).
tcp_transfer "$A" "$H" 10.10.9.1 10.2.0.1 8 "$W" 5001 >/dev/null 2>&1
result $? "clinic A → hospital: 8 MiB TCP transfer, sha256 equal"
tcp_transfer "$B" "$H" 10.10.9.1 10.2.0.1 8 "$W" 5002 >/dev/null 2>&1
result $? "clinic B → hospital: 8 MiB TCP transfer, sha256 equal"

# The hospital reaches each clinic by its visible address (inbound: destination mapped back).
for pair in "A 100.64.0.1" "B 100.64.1.1"; do
  set -- $pair
  netns_exec "$H" ping -c 3 -i 0.2 -W 3 -I 10.10.9.1 "$2" >"$W/hping-$1.log" 2>&1
  result $? "the hospital pings clinic $1 at $2" "$(tail -2 "$W/hping-$1.log")"
  got="$(seen_as "$H" 10.10.9.1 "$2" 7001)"
  [[ "$got" == 10.10.9.1 ]]; result $? "the hospital opens TCP to clinic $1 at $2 (server saw '$got')"
done

# UDP to a closed port: the clinic's ICMP port-unreachable quotes the datagram with its real
# address; only if the quote is mapped back to 100.64.0.1 does the hospital's socket see it.
netns_exec "$H" python3 -c "
import socket
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.10.9.1', 0))
s.connect(('100.64.0.1', 9)); s.settimeout(3); s.send(b'x')
try:
    s.recv(10); raise SystemExit(1)
except ConnectionRefusedError:
    pass" 2>"$W/udp.log"
result $? "UDP to a closed port at clinic A: the ICMP error reaches the hospital's socket" "$(tail -1 "$W/udp.log")"

# The two clinics reach each other, both mapped (twice translated).
netns_exec "$A" ping -c 3 -i 0.2 -W 3 -I 10.2.0.1 100.64.1.1 >"$W/ping-ab.log" 2>&1
result $? "clinic A (10.2.0.1) pings clinic B (10.2.0.1) at 100.64.1.1" "$(tail -2 "$W/ping-ab.log")"
got="$(seen_as "$A" 10.2.0.1 100.64.1.1 7001)"
[[ "$got" == 100.64.0.1 ]]; result $? "clinic B sees clinic A as 100.64.0.1 (got '$got')"

# The hospital's SAs carry traffic of both clinics: two child SAs, both used.
st="$("$DODVPN_BIN" tunnel status --control "$W/h.sock" --json)"
[[ "$(jq '[.connections[] | select((.children | length) > 0)] | length' <<<"$st")" == 2 ]]
result $? "the hospital has one tunnel per clinic"
"$DODVPN_BIN" tunnel status --control "$W/h.sock" | sed 's/^/    /'

netns_del "$A" "$B" "$H"
netns_summary
