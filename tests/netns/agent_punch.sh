#!/usr/bin/env bash
# Sites without a fixed address (issue 19 items 1–3): clinics behind nftables NATs of
# this test's own, registered without an endpoint, reach each other and are reached
# on demand. A packet for a peer without a fixed address makes the agent dial the
# peer's reported candidates and ask the centre to introduce them; the centre tells
# both at once and the called side opens its NAT (hole punching). Behind symmetric
# NATs punching cannot work: the centre allocates the provider relay (`dodvpn relay`),
# which forwards ciphertext only.
#
#   sudo bash tests/netns/agent_punch.sh
#   PUNCH_SETUP_OUT=FILE PUNCH_REPS=N  (bench/nat.sh): every case N times, setup time,
#     round trip and iperf3 throughput as JSON lines; the NATs' UDP mappings then expire
#     after 3 s and each repetition waits 9 s (the called side's 4 s of keepalives
#     plus those 3 s, and over the agent's 5 s between two introductions of one
#     peer), so that each punches again (relayed repetitions reuse the
#     relay allocation and go at once: its bindings are refreshed every 15 s, not 3).
#
#   WAN  br0 192.0.2.1/24: centre :8443, relay :4600 (DODVPN_RELAY)
#   H    192.0.2.11 fixed endpoint, site 10.1.0.1
#   L    192.0.2.12 fixed endpoint, site 10.6.0.1 (a lab: hospital → lab as before)
#   Nk   wan0 192.0.2.10k, lan0 198.51.10x.1/24 → Ck 198.51.10x.2, site 10.(k+1).0.1
#        N1 port-restricted (masquerade, unsolicited inbound dropped)
#        N2 full-cone-like (the same, plus a port forward of UDP 4500 to C2)
#        N3, N4 symmetric (masquerade random: a new public port per destination)
#
# Prints "PASS/FAIL <check>" and "N passed, M failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$here/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools nat socat
command -v tcpdump >/dev/null || { echo "tcpdump is needed for the capture at the relay" >&2; exit 1; }
netns_trap_cleanup

work="$(netns_workdir agpunch)"
tag="ap$$"; tag="${tag:0:8}"
WAN="${tag}-wan" H="${tag}-h" L="${tag}-l"
CENTRE=192.0.2.1 H_OUT=192.0.2.11 RELAY="192.0.2.1:4600"
URL="https://$CENTRE:8443"
export DODVPN_KEYSTORE_PASSPHRASE="agent-punch-$$-$RANDOM"
die() { result 1 "setup" "$*"; netns_summary; exit 1; }
admin() { ip netns exec "$WAN" "$DODVPN_BIN" admin --json --center "$URL" --ca "$work/centre/pki/root.pem" \
  --credential-file "$work/centre/admin.token" "$@"; }
status() { ip netns exec "$1" "$DODVPN_BIN" tunnel status --json --control "$work/$2.sock"; } # NS K
conn() { status "$1" "$2" | jq -c --arg n "$3" '.connections[] | select(.name == $n)'; }      # NS K PEER
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- topology
_nl_ns_add "$WAN"; _nl_ns_add "$H"; _nl_ns_add "$L"
# A fixed MAC: a bridge otherwise takes its ports' lowest, which changes as veths
# join, and neighbours caching the old one lose the centre until their ARP expires.
ip -n "$WAN" link add br0 address 02:00:00:00:19:01 type bridge && ip -n "$WAN" addr add "$CENTRE/24" dev br0 && ip -n "$WAN" link set br0 up || die "bridge"
attach() { # NS IF ADDR : a veth from the bridge into NS
  ip link add "v$1" netns "$WAN" type veth peer name "$2" netns "$1" || die "veth $1"
  ip -n "$WAN" link set "v$1" master br0 up
  ip -n "$1" addr add "$3/24" dev "$2" && ip -n "$1" link set "$2" up
}
attach "$H" out0 "$H_OUT"; _nl_site "$H" 10.1.0.1
attach "$L" out0 192.0.2.12; _nl_site "$L" 10.6.0.1

nat_rules() { # KIND CLINIC_ADDR : an nftables NAT of the given kind
  local masq="masquerade" fwd=""
  [[ "$1" == symmetric ]] && masq="masquerade random"
  [[ "$1" == fullcone ]] && fwd="iifname \"wan0\" udp dport 4500 dnat to $2:4500"
  cat <<EOF
table ip dodvpn_nat {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    $fwd
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" $masq
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan0" ct state new counter drop comment "unsolicited: a home router drops it"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname "lan0" oifname "wan0" accept
    ct status dnat accept
    ct state established,related accept
  }
}
EOF
}
declare -A KIND=([1]=portrestricted [2]=fullcone [3]=symmetric [4]=symmetric)
for k in 1 2 3 4; do
  n="${tag}-n$k" c="${tag}-c$k" pub="192.0.2.10$k" lan="198.51.10$((k - 1))"
  _nl_ns_add "$n"; _nl_ns_add "$c"
  attach "$n" wan0 "$pub"
  _nl_veth "$n" lan0 "$lan.1/24" "$c" out0 "$lan.2/24" 1500
  ip -n "$c" route add default via "$lan.1" || die "clinic $k default route"
  _nl_site "$c" "10.$((k + 1)).0.1"
  nat_rules "${KIND[$k]}" "$lan.2" | ip netns exec "$n" nft -f - || die "nftables NAT in $n"
  if [[ -n "${PUNCH_SETUP_OUT:-}" ]]; then
    ip netns exec "$n" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=3 net.netfilter.nf_conntrack_udp_timeout_stream=3
  fi
  netns_wait_for 5 ip netns exec "$c" ping -c1 -W1 -q "$CENTRE" || die "clinic $k → centre through its NAT: no ping"
  printf -v "C$k" %s "$c"; printf -v "N$k" %s "$n"
done
dropped() { ip netns exec "$1" nft list chain ip dodvpn_nat input | grep -o 'packets [0-9]*' | awk '{print $2}'; }

# ---------------------------------------------------------------- centre, relay, sites
netns_spawn "$WAN" "$work/centre.log" env DODVPN_RELAY="$RELAY" "$DODVPN_BIN" center --data "$work/centre" \
  --listen "$CENTRE:8443" --tls-name "$CENTRE"
netns_wait_for 60 sh -c "[ -f '$work/centre/admin.token' ]" && netns_wait_for 30 admin org list ||
  die "the centre did not come up: $(tail -3 "$work/centre.log")"
netns_spawn "$WAN" "$work/relay.log" env DODVPN_LOG=info "$DODVPN_BIN" relay --listen "$RELAY" --secret-file "$work/centre/relay.key"
pid_relay="$NETNS_LAST_PID"
provider="$(admin org create "Device Provider" --kind vendor | jq -r .id)"
order="$(admin order create --org "$provider" --model DV-100 | jq -r .id)"
org="$(admin org create "Punch Clinics" --kind clinic | jq -r .id)"
echo '{"inbound":[{"from":"*","services":["any"]}],"outbound":[{"to":"*","services":["any"]}]}' >"$work/open.json"
admin policy set "$org" --file "$work/open.json" >/dev/null || die "policy"
admin group create GP >/dev/null || die "group"
enrolled=0
for row in "h=$H=10.1.0.0/24=$H_OUT" "l=$L=10.6.0.0/24=192.0.2.12" "c1=$C1=10.2.0.0/24=" "c2=$C2=10.3.0.0/24=" "c3=$C3=10.4.0.0/24=" "c4=$C4=10.5.0.0/24="; do
  IFS== read -r k ns subnet ep <<<"$row"
  args=(--serial "PUNCH-$k-$$" --model DV-100 --owner "$org" --order "$order" --subnet "$subnet")
  [[ -n "$ep" ]] && args+=(--endpoint "$ep")
  dev="$(admin device register "${args[@]}" | jq -r .id)"
  [[ -n "$dev" && "$dev" != null ]] || die "register $k"
  d6_enrol "$DODVPN_BIN" "$WAN" "$ns" "$URL" "$work/centre" "$dev" "$work/$k-ks" && enrolled=$((enrolled + 1))
  admin group add GP "$dev" >/dev/null || die "group add $k"
  printf -v "dev_$k" %s "$dev"
done
check "six sites enrolled, four clinics through their NATs without an endpoint" test "$enrolled" = 6

pids=()
for row in "h=$H" "l=$L" "c1=$C1" "c2=$C2" "c3=$C3" "c4=$C4"; do
  IFS== read -r k ns <<<"$row"
  netns_spawn "$ns" "$work/agent-$k.log" env DODVPN_LOG=info "$DODVPN_BIN" agent run --keystore "$work/$k-ks" \
    --control "$work/$k.sock" --idle-timeout 60s
  pids+=("$NETNS_LAST_PID")
  netns_wait_for 20 status "$ns" "$k" || die "agent $k did not start: $(tail -3 "$work/agent-$k.log")"
done
grant() { # FROM TO
  local g; g="$(admin connection apply --from "$1" --to "$2" | jq -r '.outcomes[0].grant_id')"
  [[ -n "$g" && "$g" != null ]] || die "$1 → $2 not granted"
}
grant "$dev_h" "$dev_l"; grant "$dev_c1" "$dev_c2"; grant "$dev_c2" "$dev_c1"; grant "$dev_h" "$dev_c1"; grant "$dev_c3" "$dev_c4"
installed() { conn "$1" "$2" "$3" | jq -e '.name' >/dev/null; }
# Each peer's grant must name the other's candidates before it can be dialled.
has_cands() { conn "$1" "$2" "$3" | grep -q . && grep -aq "reachable at" "$work/agent-$4.log"; }
for row in "$C1 c1 $dev_c2 c2" "$C2 c2 $dev_c1 c1" "$H h $dev_c1 c1" "$C3 c3 $dev_c4 c4" "$C4 c4 $dev_c3 c3"; do
  read -r ns k peer pk <<<"$row"
  netns_wait_for 20 has_cands "$ns" "$k" "$peer" "$pk" || die "$k: no connection to $peer"
done
sleep 2 # the candidates' re-issued grants reach every side

ping_until() { # NS SRC DST SECONDS : ping until one answer; prints ms taken
  local t0; t0="$(now_ms)"
  netns_wait_for "$4" ip netns exec "$1" ping -c1 -W1 -q -I "$2" "$3" || return 1
  echo $(($(now_ms) - t0))
}
record() { # CASE MS
  echo "setup time $1: $2 ms"
  [[ -n "${PUNCH_SETUP_OUT:-}" ]] && echo "{\"kind\":\"setup\",\"case\":\"$1\",\"ms\":$2}" >>"$PUNCH_SETUP_OUT"
  return 0
}
# bench/nat.sh only: the case again PUNCH_REPS-1 times from cold (tunnels down, the
# NATs' mappings expired), then round trip and throughput over the live tunnel.
again() { # CASE NS_A K_A NS_B K_B SRC DST PAUSE_S
  [[ -n "${PUNCH_SETUP_OUT:-}" ]] || return 0
  local r ms rtt bps
  for ((r = 2; r <= ${PUNCH_REPS:-1}; r++)); do
    ip netns exec "$2" "$DODVPN_BIN" tunnel down --control "$work/$3.sock" >/dev/null
    ip netns exec "$4" "$DODVPN_BIN" tunnel down --control "$work/$5.sock" >/dev/null
    sleep "$8"
    ms="$(ping_until "$2" "$6" "$7" 25)" && record "$1" "$ms"
  done
  rtt="$(ip netns exec "$2" ping -c 50 -i 0.02 -q -I "$6" "$7" | awk -F/ '/rtt|round-trip/ {print $5}')"
  netns_spawn "$4" "$work/iperf-$5.log" timeout 30 iperf3 -s -1 -B "$7" -p 5201
  local srv="$NETNS_LAST_PID"
  netns_wait_for 5 ip netns exec "$4" sh -c "ss -ltn | grep -qF '$7:5201 '"
  bps="$(ip netns exec "$2" timeout 30 iperf3 -c "$7" -B "$6" -p 5201 -t 3 -J | jq '.end.sum_received.bits_per_second')"
  netns_kill "$srv"
  echo "{\"kind\":\"path\",\"case\":\"$1\",\"rtt_ms\":${rtt:-null},\"bits_per_second\":${bps:-null}}" >>"$PUNCH_SETUP_OUT"
}

# ---------------------------------------------------------------- hospital → lab: fixed, as before
ms="$(ping_until "$H" 10.1.0.1 10.6.0.1 15)"; rc=$?
check "fixed addresses: the hospital reaches the lab on demand" test "$rc" = 0
record "direct hospital->lab (fixed addresses)" "${ms:-0}"
check "fixed addresses: the hospital dialled the lab's endpoint at the IKE port, as before" \
  grep -aq "initiating IKE to 192.0.2.12:500" "$work/agent-h.log"
check "fixed addresses: the hospital asked for no introduction to the lab" \
  sh -c "! grep -aq 'introduced to $dev_h' '$work/agent-l.log'"
again "direct hospital->lab (fixed addresses)" "$H" h "$L" l 10.1.0.1 10.6.0.1 9

# ---------------------------------------------------------------- clinic ↔ clinic, punched
# Into the port-restricted NAT first: its first IKE is dropped until clinic 1 has
# opened the mapping on the centre's word.
d1_before="$(dropped "$N1")"
ms="$(ping_until "$C2" 10.3.0.1 10.2.0.1 15)"; rc=$?
check "clinic 2 (full-cone-like NAT) reaches clinic 1 behind its port-restricted NAT on demand" test "$rc" = 0
record "punched clinic2->clinic1 (full-cone -> port-restricted)" "${ms:-0}"
check "clinic 2 dialled clinic 1's reported public candidate (192.0.2.101:4500)" \
  grep -aq "initiating IKE to 192.0.2.101:4500" "$work/agent-c2.log"
check "clinic 1 was introduced to clinic 2 by the centre and opened its NAT" \
  grep -aq "introduced to $dev_c2: opening our NAT" "$work/agent-c1.log"
check "clinic 1's NAT dropped the unsolicited IKE before the hole was opened" test "$(dropped "$N1")" -gt "$d1_before"
direct() { conn "$1" "$2" "$3" | jq -e --arg a "$4" '.state == "established" and .remote == $a and .relay == null' >/dev/null; }
check "clinic 2's tunnel to clinic 1 is direct (no relay), at clinic 1's NAT's address" direct "$C2" c2 "$dev_c1" 192.0.2.101
check "2 MiB TCP clinic 2 → clinic 1 through both NATs, sha256 equal" tcp_transfer "$C2" "$C1" 10.2.0.1 10.3.0.1 2 "$work" 5101
again "punched clinic2->clinic1 (full-cone -> port-restricted)" "$C2" c2 "$C1" c1 10.3.0.1 10.2.0.1 9

# The other way, a new session from clinic 1.
ip netns exec "$C2" "$DODVPN_BIN" tunnel down --control "$work/c2.sock" >/dev/null
ip netns exec "$C1" "$DODVPN_BIN" tunnel down --control "$work/c1.sock" >/dev/null
sleep 1
ms="$(ping_until "$C1" 10.2.0.1 10.3.0.1 15)"; rc=$?
check "clinic 1 reaches clinic 2 on demand (a new session the other way)" test "$rc" = 0
record "punched clinic1->clinic2 (port-restricted -> full-cone)" "${ms:-0}"
check "clinic 1's tunnel to clinic 2 is direct, at clinic 2's NAT's address" direct "$C1" c1 "$dev_c2" 192.0.2.102
check "2 MiB TCP clinic 1 → clinic 2, sha256 equal" tcp_transfer "$C1" "$C2" 10.3.0.1 10.2.0.1 2 "$work" 5102

# ---------------------------------------------------------------- hospital → clinic
d1_before="$(dropped "$N1")"
ms="$(ping_until "$H" 10.1.0.1 10.2.0.1 15)"; rc=$?
check "the fixed-address hospital reaches clinic 1 behind its NAT on demand (hospital initiates)" test "$rc" = 0
record "punched hospital->clinic1 (fixed -> port-restricted)" "${ms:-0}"
d1_after="$(dropped "$N1")"
check "the hospital dialled clinic 1's public candidate (192.0.2.101:4500)" \
  grep -aq "initiating IKE to 192.0.2.101:4500" "$work/agent-h.log"
again "punched hospital->clinic1 (fixed -> port-restricted)" "$H" h "$C1" c1 10.1.0.1 10.2.0.1 9
check "clinic 1's NAT dropped the hospital's first IKE (the hole was needed)" test "$d1_after" -gt "$d1_before"
check "the hospital no longer waits for the clinic to connect" \
  sh -c "! grep -aq 'no known address: not initiating' '$work/agent-h.log'"

# ---------------------------------------------------------------- both symmetric: the relay
ip netns exec "$WAN" timeout 90 tcpdump -i br0 -n -s 0 -w "$work/relay.pcap" udp port 4600 2>"$work/tcpdump.log" &
tcpdump_pid=$!
sleep 1
ms="$(ping_until "$C3" 10.4.0.1 10.5.0.1 25)"; rc=$?
check "clinic 3 reaches clinic 4, both behind symmetric NATs, on demand" test "$rc" = 0
record "relayed clinic3->clinic4 (symmetric -> symmetric)" "${ms:-0}"
check "clinic 3 found no direct path and the centre allocated the relay" \
  grep -aq "the centre allocated a relay" "$work/agent-c3.log"
check "clinic 3 went to the relay at once, without trying to punch" \
  grep -aq "straight to the relay" "$work/agent-c3.log"
check "the reflector probes showed clinics 3 and 4 behind symmetric NATs" \
  sh -c "grep -aq 'behind a symmetric NAT' '$work/agent-c3.log' && grep -aq 'behind a symmetric NAT' '$work/agent-c4.log'"
check "the reflector probes showed clinic 1 behind a cone NAT at 192.0.2.101:4500, the hospital on no NAT" \
  sh -c "grep -aq '192.0.2.101:4500 (behind a NAT /' '$work/agent-c1.log' && grep -aq '(no NAT /' '$work/agent-h.log'"
check "both sides bound at the relay" sh -c "[ \$(grep -ac 'side bound' '$work/relay.log') -ge 2 ]"
via_relay() { conn "$1" "$2" "$3" | jq -e --arg r "$RELAY" '.state == "established" and .relay == $r' >/dev/null; }
check "clinic 3's tunnel runs through the relay $RELAY" via_relay "$C3" c3 "$dev_c4"
check "clinic 4's tunnel runs through the relay $RELAY" via_relay "$C4" c4 "$dev_c3"
# Plain text the relay must never see: a known phrase, 2 MiB of it.
yes "DODVPN-RELAY-PLAINTEXT-MARKER patient record 0123456789" | head -c $((2 * 1024 * 1024)) >"$work/marker.txt"
netns_spawn "$C4" "$work/socat-m.log" timeout 60 socat -u "TCP-LISTEN:5103,bind=10.5.0.1,reuseaddr" "OPEN:$work/marker.rx,creat,trunc"
rx="$NETNS_LAST_PID"
netns_wait_for 5 ip netns exec "$C4" sh -c "ss -ltn | grep -qF '10.5.0.1:5103 '"
ip netns exec "$C3" timeout 60 socat -u "OPEN:$work/marker.txt" "TCP:10.5.0.1:5103,bind=10.4.0.1"
for ((i = 0; i < 100; i++)); do [[ -e /proc/$rx ]] || break; sleep 0.05; done
netns_kill "$rx"
check "2 MiB of known plain text clinic 3 → clinic 4 through the relay, sha256 equal" \
  test "$(sha256sum <"$work/marker.txt" | cut -d' ' -f1)" = "$(sha256sum <"$work/marker.rx" | cut -d' ' -f1)"
sleep 1; kill "$tcpdump_pid" 2>/dev/null; wait "$tcpdump_pid" 2>/dev/null
bytes="$(stat -c %s "$work/relay.pcap" 2>/dev/null || echo 0)"
check "the capture at the relay holds the tunnel's traffic (over 2 MiB of it)" test "$bytes" -gt $((2 * 1024 * 1024))
check "the capture at the relay holds no plain text (the marker never appears)" \
  sh -c "! grep -aq 'DODVPN-RELAY-PLAINTEXT-MARKER' '$work/relay.pcap'"
again "relayed clinic3->clinic4 (symmetric -> symmetric; relay already known)" "$C3" c3 "$C4" c4 10.4.0.1 10.5.0.1 0
check "the centre's session list shows the session through the relay" \
  sh -c "ip netns exec '$WAN' '$DODVPN_BIN' admin --json --center '$URL' --ca '$work/centre/pki/root.pem' --credential-file '$work/centre/admin.token' session list --all --device '$dev_c3' | jq -e --arg r '$RELAY' 'any(.[]; .relay == \$r)' >/dev/null"
check "the direct clinic sessions are not marked as relayed" \
  sh -c "ip netns exec '$WAN' '$DODVPN_BIN' admin --json --center '$URL' --ca '$work/centre/pki/root.pem' --credential-file '$work/centre/admin.token' session list --all --device '$dev_c2' | jq -e 'length > 0 and all(.[]; .relay == null)' >/dev/null"

netns_kill "${pids[@]}" "$pid_relay"
netns_summary
