#!/usr/bin/env bash
# A strongSwan site (issue 4, item 7): a hospital whose standard IKEv2 router (charon with
# kernel-libipsec) is given a service certificate and its connection info by hand, and a
# clinic running the dodvpn agent, both on the centre-driven network.
#
#   sudo bash tests/netns/strongswan_site.sh
#
# Namespaces: WAN (bridge, centre at 192.0.2.1:8443), CLINIC (agent, 192.0.2.11, site
# 10.1.0.0/24), HOSP (strongSwan router, 192.0.2.12, site 10.2.0.0/24). The router's key is
# made on the router with strongSwan's `pki`; the operator enrols it from its request
# (`dodvpn agent enroll --csr`), reads the grant's connection info (`dodvpn admin grant
# show`) and writes swanctl.conf from it. Prints "PASS/FAIL <check>" and "N passed, M failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$here/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools strongswan socat python
netns_trap_cleanup

MB="${TRANSFER_MB:-4}"
work="$(netns_workdir site)"
tag="ss$$"; tag="${tag:0:8}"
WAN="${tag}-wan" CLINIC="${tag}-cl" HOSP="${tag}-hr"
CENTRE=192.0.2.1 CL_OUT=192.0.2.11 HR_OUT=192.0.2.12
CL_HOST=10.1.0.1 HR_HOST=10.2.0.1
URL="https://$CENTRE:8443"
export DODVPN_KEYSTORE_PASSPHRASE="strongswan-site-$$-$RANDOM"
die() { result 1 "setup" "$*"; netns_summary; exit 1; }
admin() { ip netns exec "$WAN" "$DODVPN_BIN" admin --json --center "$URL" --ca "$work/centre/pki/root.pem" \
  --credential-file "$work/centre/admin.token" "$@"; }
jid() { jq -r "$1"; }
jqt() { jq -e "$@" >/dev/null; }

# ---------------------------------------------------------------- topology
_nl_ns_add "$WAN"; _nl_ns_add "$CLINIC"; _nl_ns_add "$HOSP"
ip -n "$WAN" link add br0 type bridge && ip -n "$WAN" addr add "$CENTRE/24" dev br0 && ip -n "$WAN" link set br0 up ||
  die "bridge"
for pair in "$CLINIC:$CL_OUT:$CL_HOST" "$HOSP:$HR_OUT:$HR_HOST"; do
  IFS=: read -r ns outer host <<<"$pair"
  ip link add "v$ns" netns "$WAN" type veth peer name out0 netns "$ns" || die "veth $ns"
  ip -n "$WAN" link set "v$ns" master br0 up
  ip -n "$ns" addr add "$outer/24" dev out0 && ip -n "$ns" link set out0 up
  _nl_site "$ns" "$host"
done

# ---------------------------------------------------------------- centre, TR D.6 a–l
netns_spawn "$WAN" "$work/centre.log" "$DODVPN_BIN" center --data "$work/centre" --listen "$CENTRE:8443" --tls-name "$CENTRE"
netns_wait_for 60 sh -c "[ -f '$work/centre/admin.token' ]" && netns_wait_for 30 admin org list ||
  die "the centre did not come up: $(tail -3 "$work/centre.log")"
provider="$(admin org create "Device Provider" --kind vendor | jid .id)"
order="$(admin order create --org "$provider" --model DV-100 | jid .id)"
clinic_org="$(admin org create Clinic --kind clinic | jid .id)"
hosp_org="$(admin org create "Core Hospital" --kind hospital | jid .id)"
clinic="$(admin device register --serial SS-CLINIC --model DV-100 --owner "$clinic_org" --order "$order" \
  --endpoint "$CL_OUT" --subnet 10.1.0.0/24 | jid .id)"
router="$(admin device register --serial SS-ROUTER --model "standard IKEv2 router" --owner "$hosp_org" \
  --order "$order" --endpoint "$HR_OUT" --subnet 10.2.0.0/24 | jid .id)"
[[ -n "$clinic" && "$clinic" != null && -n "$router" && "$router" != null ]] || die "device registration"
d6_enrol "$DODVPN_BIN" "$WAN" "$CLINIC" "$URL" "$work/centre" "$clinic" "$work/clinic-ks" || die "clinic enrolment"

# The router makes its key and certificate request itself (strongSwan's pki); the key
# stays in its swanctl directory.
ss="$work/router"; mkdir -p "$ss/private" "$ss/x509" "$ss/x509ca"
ip netns exec "$HOSP" pki --gen --type ecdsa --size 256 --outform pem >"$ss/private/router.key" || die "pki --gen"
chmod 600 "$ss/private/router.key"
ip netns exec "$HOSP" pki --req --type priv --in "$ss/private/router.key" --dn "CN=$router" \
  --san "$router.dodvpn" --outform pem >"$work/router.csr" || die "pki --req"
# A garbage request is refused with a clear error (nothing is issued).
echo "not a request" >"$work/garbage.csr"
out="$(ip netns exec "$HOSP" "$DODVPN_BIN" agent enroll --keystore "$work/router-ks" --center "$URL" \
  --csr "$work/garbage.csr" --cert-out "$ss/x509/router.crt" 2>&1)"
check "a garbage certificate request is refused: $(tail -1 <<<"$out")" \
  grep -q "not a PKCS#10 certificate request" <<<"$out"
# The operator enrols the router from its request with the router's tier-1 key store.
d6_enrol "$DODVPN_BIN" "$WAN" "$HOSP" "$URL" "$work/centre" "$router" "$work/router-ks" \
  --csr "$work/router.csr" --cert-out "$ss/x509/router.crt" --ca-out "$ss/x509ca/service-ca.pem" --root-out "$ss/x509ca/root-ca.pem" ||
  die "router enrolment"
check "router enrolled from its own request; step j confirmed, so its service could start (status $(admin device show "$router" | jid .status))" \
  test "$(admin device show "$router" | jid .status)" = in_service

# Groups and policies: both in group B, both organisations open to the group.
open='{"inbound":[{"from":"*","services":["any"]}],"outbound":[{"to":"*","services":["any"]}]}'
echo "$open" >"$work/open.json"
admin group create B >/dev/null && admin group add B "$clinic" >/dev/null && admin group add B "$router" >/dev/null ||
  die "group B"
admin policy set "$clinic_org" --file "$work/open.json" >/dev/null && admin policy set "$hosp_org" --file "$work/open.json" >/dev/null ||
  die "policies"

# ---------------------------------------------------------------- the clinic's agent
start_agent() {
  netns_spawn "$CLINIC" "$work/agent.log" env DODVPN_LOG=info "$DODVPN_BIN" agent run --keystore "$work/clinic-ks" \
    --control "$work/clinic.sock" --idle-timeout 60s
  AGENT_PID="$NETNS_LAST_PID"
}
start_agent
status() { ip netns exec "$CLINIC" "$DODVPN_BIN" tunnel status --json --control "$work/clinic.sock"; }
children() { status 2>/dev/null | jq '[.connections[]?.children[]?] | length'; }
no_children() { [ "$(children)" = 0 ]; }
netns_wait_for 20 status || die "the clinic's agent did not start: $(tail -3 "$work/agent.log")"

# ---------------------------------------------------------------- grant, connection info by hand
g1="$(admin connection apply --from "$clinic" --to "$router" | jq -r '.outcomes[0].grant_id')"
[[ -n "$g1" && "$g1" != null ]] || die "clinic → router not granted"
admin grant show "$g1" >"$work/grant1.json" || die "grant show"

# swanctl.conf for the router, by hand from one or more grants' router-side connection
# info: one IKE connection to the clinic, its child covering every grant's selectors.
# A router with in-kernel IPsec would use start_action = trap where a grant makes it the
# initiator; kernel-libipsec has no trap support (docs/TESTING.md), so here the router
# initiates with `swanctl --initiate` instead.
write_swanctl() { # GRANT_JSON...
  local infos ts_l ts_r ike esp lid rid peer start
  infos="$(jq -s '[.[] | if .applicant_connection_info.info.local.device_id == "'"$router"'" then .applicant_connection_info.info else .target_connection_info.info end]' "$@")"
  lid="$(jq -r '.[0].local.identity' <<<"$infos")" rid="$(jq -r '.[0].peer.identity' <<<"$infos")"
  peer="$(jq -r '.[0].peer.endpoint' <<<"$infos")"
  ts_l="$(jq -r '[.[].traffic_selectors.local[]] | unique | join(",")' <<<"$infos")"
  ts_r="$(jq -r '[.[].traffic_selectors.remote[]] | unique | join(",")' <<<"$infos")"
  ike="$(jq -r '.[0].ike_proposals | join(",")' <<<"$infos")" esp="$(jq -r '.[0].esp_proposals | join(",")' <<<"$infos")"
  cat >"$ss/swanctl.conf" <<EOF
# written by hand from \`dodvpn admin grant show\` (grants: $(jq -r '[.[].grant_id] | join(" ")' <<<"$infos"))
connections {
  clinic {
    version = 2
    local_addrs = $HR_OUT
    remote_addrs = $peer
    proposals = $ike
    encap = yes
    mobike = no
    send_cert = always
    local {
      auth = pubkey
      certs = router.crt
      id = $lid
    }
    remote {
      auth = pubkey
      cacerts = service-ca.pem
      id = $rid
    }
    children {
      site {
        mode = tunnel
        local_ts = $ts_l
        remote_ts = $ts_r
        esp_proposals = $esp
        start_action = none
      }
    }
  }
}
EOF
}
write_swanctl "$work/grant1.json"
echo "router's swanctl.conf (from grant $g1):" >&2; sed 's/^/    /' "$ss/swanctl.conf" >&2
check "the router's end of the grant names it responder, identity $router.dodvpn, selectors 10.2.0.0/24 ↔ 10.1.0.0/24" \
  jqt --arg r "$router.dodvpn" '.target_connection_info.info | .role == "responder" and .local.identity == $r
    and .traffic_selectors.local == ["10.2.0.0/24"] and .traffic_selectors.remote == ["10.1.0.0/24"]' "$work/grant1.json"
strongswan_start "$HOSP" "$ss" || die "charon did not start (see $ss/charon.log)"
netns_wait_for 10 sh -c "'$DODVPN_BIN' tunnel status --json --control '$work/clinic.sock' | jq -e '.connections[] | select(.name == \"$router\")'" ||
  die "the clinic's agent did not install the grant: $(tail -3 "$work/agent.log")"

# ---------------------------------------------------------------- on demand, dodvpn initiates
check "no SA before any traffic (clinic $(children) child SAs, router $(swanctl_sa_count "$ss") IKE SAs)" \
  test "$(children)" = 0 -a "$(swanctl_sa_count "$ss")" = 0
t0=$(date +%s%N)
ip netns exec "$CLINIC" ping -c1 -W5 -q -I "$CL_HOST" "$HR_HOST" >/dev/null 2>&1; rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check "clinic → router: the first echo brings the tunnel up on demand and is answered ($ms ms)" test "$rc" = 0
check "the clinic (dodvpn) initiated: charon responded to its IKE_SA_INIT" \
  grep -q "is initiating an IKE_SA" "$ss/charon.log"
check "strongSwan authenticated the clinic as $clinic.dodvpn and shows a UDP-encapsulated tunnel" \
  sh -c "grep -q \"authentication of '$clinic.dodvpn'.*successful\" '$ss/charon.log' && swanctl --list-sas --uri 'unix://$ss/charon.vici' | grep -q TUNNEL-in-UDP"
tcp_transfer "$CLINIC" "$HOSP" "$HR_HOST" "$CL_HOST" "$MB" "$work" 5001 >/dev/null 2>&1; rc=$?
check "TCP clinic → router host, $MB MiB, sha256 equal on both ends" test "$rc" = 0
sessions_by_clinic() {
  local id
  for id in $(admin session list --device "$clinic" | jq -r '.[] | select(.status == "up") | .id'); do
    admin session show "$id" | jq -e --arg c "$clinic" --arg r "$router" \
      '([.device_a, .device_b] | sort) == ([$c, $r] | sort) and any(.ends[]; .device_id == $c and .reports > 0)' >/dev/null && return 0
  done
  return 1
}
netns_wait_for 10 sessions_by_clinic; rc=$?
check "the session shows in 'dodvpn admin session list', reported up by the dodvpn end ($(admin session list --device "$clinic" | jq -r '[.[].id] | join(" ")'))" \
  test "$rc" = 0

# ---------------------------------------------------------------- the router initiates
# One-way grant: the clinic's filter is stateless, so ICMP passes either way, but a TCP
# connection from the hospital side (a SYN from the non-opener) is not let in.
tcp_open() { # NS SRC DST PORT : can SRC open a TCP connection to DST:PORT (2 s)?
  ip netns exec "$1" python3 -c "import socket,sys
try:
    socket.create_connection(('$3',$4),timeout=2,source_address=('$2',0)).close()
except OSError: sys.exit(1)"
}
netns_spawn "$CLINIC" "$work/listen.log" timeout 300 python3 -c "import socket
l=socket.socket(); l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); l.bind(('$CL_HOST',8080)); l.listen(16)
while True: l.accept()[0].close()"
netns_wait_for 5 ip netns exec "$CLINIC" sh -c "ss -ltn | grep -q '$CL_HOST:8080 '" || die "listener"
tcp_open "$HOSP" "$HR_HOST" "$CL_HOST" 8080; rc=$?
check "router host → clinic TCP with only the clinic's grant: refused (the grant is one-way; ICMP passes either way)" \
  test "$rc" != 0
# The provider applies on the router's behalf (it runs no agent): a second grant router → clinic.
g2="$(admin connection apply --from "$router" --to "$clinic" | jq -r '.outcomes[0].grant_id')"
[[ -n "$g2" && "$g2" != null ]] || die "router → clinic not granted"
admin grant show "$g2" >"$work/grant2.json" || die "grant show $g2"
check "the router's end of the second grant names it initiator" \
  jqt '.applicant_connection_info.info.role == "initiator"' "$work/grant2.json"
write_swanctl "$work/grant1.json" "$work/grant2.json"
swanctl_terminate "$ss" clinic 5
swanctl_load "$ss" || die "swanctl reload"
netns_wait_for 10 no_children || true
mark="$(wc -l <"$ss/charon.log")"
swanctl_initiate "$ss" site 15; rc=$?
check "router → clinic: strongSwan initiates and the clinic's agent accepts it as responder" test "$rc" = 0
check "this time the router initiated (charon: initiating IKE_SA, clinic authenticated)" \
  sh -c "tail -n +$mark '$ss/charon.log' | grep -q 'initiating IKE_SA clinic' &&
         tail -n +$mark '$ss/charon.log' | grep -q \"authentication of '$clinic.dodvpn'.*successful\""
ip netns exec "$HOSP" ping -c3 -i0.3 -W3 -q -I "$HR_HOST" "$CL_HOST" >/dev/null 2>&1; rc=$?
check "router host → clinic: echo answered through the router-initiated tunnel" test "$rc" = 0
tcp_open "$HOSP" "$HR_HOST" "$CL_HOST" 8080; rc=$?
check "router host → clinic TCP connection now allowed (router → clinic grant)" test "$rc" = 0
tcp_transfer "$HOSP" "$CLINIC" "$CL_HOST" "$HR_HOST" "$MB" "$work" 5003 >/dev/null 2>&1; rc=$?
check "TCP router host → clinic, $MB MiB, sha256 equal on both ends" test "$rc" = 0

# ---------------------------------------------------------------- the agent stops (issue 16 point 6)
mark="$(wc -l <"$ss/charon.log")"
kill -TERM "$AGENT_PID"
netns_wait_for 3 sh -c "[ \"\$(swanctl --list-sas --uri unix://$ss/charon.vici 2>/dev/null | grep -c ESTABLISHED)\" = 0 ]"; rc=$?
check "SIGTERM to the agent: the router is sent DELETE and lists no SA within 3 s ($(swanctl_sa_count "$ss") left)" \
  sh -c "[ $rc = 0 ] && tail -n +$mark '$ss/charon.log' | grep -q 'received DELETE for IKE_SA'"
netns_wait_for 10 sh -c "! kill -0 $AGENT_PID 2>/dev/null" || die "the agent did not exit after SIGTERM"
mv "$work/agent.log" "$work/agent-1.log"
start_agent
netns_wait_for 20 status || die "the clinic's agent did not restart: $(tail -3 "$work/agent.log")"

# ---------------------------------------------------------------- withdrawal cuts the path
admin grant withdraw "$g2" --reason "test: reverse grant ends" >/dev/null || die "withdraw $g2"
sleep 1
ip netns exec "$CLINIC" ping -c1 -W3 -q -I "$CL_HOST" "$HR_HOST" >/dev/null 2>&1; rc=$?
check "with the reverse grant withdrawn the clinic's own grant still carries clinic → router" test "$rc" = 0
# Timed from before the operator's command (its own start-up included).
t0=$(date +%s%N) cut=""
admin grant withdraw "$g1" --reason "test: withdrawal cuts the path" >/dev/null || die "withdraw $g1"
while (( ($(date +%s%N) - t0) < 5000000000 )); do
  s=$(date +%s%N)
  if ! ip netns exec "$CLINIC" ping -c1 -W0.3 -q -I "$CL_HOST" "$HR_HOST" >/dev/null 2>&1; then
    cut=$(((s - t0) / 1000000)); break
  fi
  sleep 0.05
done
check "withdrawing the grant at the centre cuts clinic → router within 2 s (${cut:-not cut in 5000} ms)" \
  test -n "$cut" -a "${cut:-9999}" -le 2000
netns_wait_for 5 no_children; rc=$?
check "the clinic deleted its SAs with the grant (router: $(swanctl_sa_count "$ss") IKE SAs left)" test "$rc" = 0

netns_summary
