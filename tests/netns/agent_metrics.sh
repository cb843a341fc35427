#!/usr/bin/env bash
# The agent's and the centre's Prometheus metrics with a real data plane (issue 17 item 3,
# docs/metrics.md): a centre and two sites in network namespaces, enrolled through TR D.6, a
# grant b → a limited to tcp/5001 and icmp, each agent serving /metrics on its loopback with a
# bearer token. Scraped with Python's urllib inside the namespaces.
#
#   sudo bash tests/netns/agent_metrics.sh
#
#   WAN  br0 192.0.2.1/24 (centre, /metrics on 127.0.0.1:9464)
#   A    out0 192.0.2.11/24, site0 10.1.0.1/24, /metrics on 127.0.0.1:9465
#   B    out0 192.0.2.12/24, site0 10.2.0.1/24, /metrics on 127.0.0.1:9465
#
# Checks: a wrong or missing token is refused; before traffic the data plane answers, the agents
# are connected to the centre and hold the grant, no tunnel is up; after ping and 2 MiB of TCP
# b → a: one tunnel established at each end, a handshake as initiator at b and as responder at
# a with their durations, bytes and packets per peer in both directions (b's out ≥ 2 MiB, a's
# in ≥ 2 MiB, under the peer's device id); a TCP connection to a port the grant does not name
# counts as an outbound service refusal and a drop at b; after `tunnel down` the per-peer
# counters keep their values; the centre counts two event streams, two devices in service and
# live pushes. Prints "PASS/FAIL <check>" and "N passed, M failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$here/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools socat python
netns_trap_cleanup

work="$(netns_workdir agmet)"
tag="am$$"; tag="${tag:0:8}"
WAN="${tag}-wan" A="${tag}-a" B="${tag}-b"
CENTRE=192.0.2.1 A_OUT=192.0.2.11 B_OUT=192.0.2.12 A4=10.1.0.1 B4=10.2.0.1
URL="https://$CENTRE:8443"
CENTRE_METRICS=http://127.0.0.1:9464/metrics AGENT_METRICS=http://127.0.0.1:9465/metrics
export DODVPN_KEYSTORE_PASSPHRASE="agent-metrics-$$-$RANDOM"
TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(umask 077 && printf '%s\n' "$TOKEN" >"$work/metrics.token")
die() { result 1 "setup" "$*"; netns_summary; exit 1; }
admin() { ip netns exec "$WAN" "$DODVPN_BIN" admin --json --center "$URL" --ca "$work/centre/pki/root.pem" \
  --credential-file "$work/centre/admin.token" "$@"; }

# prom NS URL TOKEN NAME [LABEL=VALUE...] : the sum of the matching samples (exit 2: none, 3: HTTP error)
cat >"$work/prom.py" <<'PY'
import re, sys, urllib.request, urllib.error
url, token, name, want = sys.argv[1], sys.argv[2], sys.argv[3], [a.split("=", 1) for a in sys.argv[4:]]
req = urllib.request.Request(url)
if token:
    req.add_header("Authorization", "Bearer " + token)
try:
    text = urllib.request.urlopen(req, timeout=10).read().decode()
except urllib.error.HTTPError as e:
    print(f"HTTP {e.code}"); sys.exit(3)
total, hits = 0.0, 0
for line in text.splitlines():
    if line.startswith("#") or not line.strip():
        continue
    m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)', line)
    if not m or m.group(1) != name:
        continue
    labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
    if all(labels.get(k) == v for k, v in want):
        total += float(m.group(4)); hits += 1
if not hits:
    print("none"); sys.exit(2)
print(int(total) if total == int(total) else total)
PY
prom() { local ns="$1"; shift; ip netns exec "$ns" python3 "$work/prom.py" "$@"; }
agent_m() { prom "$1" "$AGENT_METRICS" "$TOKEN" "${@:2}"; }   # NS NAME [LABEL=VALUE...]
centre_m() { prom "$WAN" "$CENTRE_METRICS" "" "$@"; }
ge() { local v; v="$("${@:2}")" || { _nl_log "no value for ${*:2}: $v"; return 1; }; python3 -c "import sys; sys.exit(0 if float('$v') >= float('$1') else 1)" || { _nl_log "${*:2} = $v, wanted ≥ $1"; return 1; }; }
eq() { local v; v="$("${@:2}")" || { _nl_log "no value for ${*:2}: $v"; return 1; }; [[ "$v" == "$1" ]] || { _nl_log "${*:2} = $v, wanted $1"; return 1; }; }

# ---------------------------------------------------------------- topology
for ns in "$WAN" "$A" "$B"; do _nl_ns_add "$ns"; done
ip -n "$WAN" link add br0 type bridge && ip -n "$WAN" addr add "$CENTRE/24" dev br0 && ip -n "$WAN" link set br0 up || die "bridge"
for pair in "$A=$A_OUT=$A4" "$B=$B_OUT=$B4"; do
  IFS== read -r ns outer in4 <<<"$pair"
  ip link add "v$ns" netns "$WAN" type veth peer name out0 netns "$ns" || die "veth $ns"
  ip -n "$WAN" link set "v$ns" master br0 up
  ip -n "$ns" addr add "$outer/24" dev out0 && ip -n "$ns" link set out0 up
  _nl_site "$ns" "$in4"
done
for ns in "$A" "$B"; do netns_wait_for 5 ip netns exec "$ns" ping -c1 -W1 -q "$CENTRE" || die "no route from $ns to the centre"; done

# ---------------------------------------------------------------- centre, TR D.6
netns_spawn "$WAN" "$work/centre.log" "$DODVPN_BIN" center --data "$work/centre" --listen "$CENTRE:8443" \
  --tls-name "$CENTRE" --metrics-listen 127.0.0.1:9464
netns_wait_for 60 sh -c "[ -f '$work/centre/admin.token' ]" && netns_wait_for 30 admin org list >/dev/null ||
  die "the centre did not come up: $(tail -3 "$work/centre.log")"
check "the centre prints its metrics address" grep -q "metrics .*http://127.0.0.1:9464/metrics (scrapers: loopback)" "$work/centre.log"
provider="$(admin org create "Device Provider" --kind vendor | jq -r .id)"
order="$(admin order create --org "$provider" --model DV-100 | jq -r .id)"
org="$(admin org create "Metrics Hospital" --kind hospital | jq -r .id)"
echo '{"inbound":[{"from":"*","services":["any"]}],"outbound":[{"to":"*","services":["any"]}]}' >"$work/open.json"
admin policy set "$org" --file "$work/open.json" >/dev/null || die "policy"
admin group create GM --service tcp/5001 --service icmp >/dev/null || die "group"
enrolled=0
for pair in "a=$A_OUT=10.1.0.0/24=$A" "b=$B_OUT=10.2.0.0/24=$B"; do
  IFS== read -r k outer net4 ns <<<"$pair"
  dev="$(admin device register --serial "MET-$k-$$" --model DV-100 --owner "$org" --order "$order" \
    --endpoint "$outer" --subnet "$net4" | jq -r .id)"
  [[ -n "$dev" && "$dev" != null ]] || die "register $k"
  d6_enrol "$DODVPN_BIN" "$WAN" "$ns" "$URL" "$work/centre" "$dev" "$work/$k-ks" && enrolled=$((enrolled + 1))
  admin group add GM "$dev" >/dev/null || die "group add $k"
  printf -v "dev_$k" %s "$dev"
done
check "both sites enrolled (TR D.6 d–l)" test "$enrolled" = 2

start_agent() { # K NS ; sets AGENT_PID
  netns_spawn "$2" "$work/agent-$1.log" env DODVPN_LOG=info "$DODVPN_BIN" agent run --keystore "$work/$1-ks" \
    --control "$work/$1.sock" --idle-timeout 60s --metrics-listen 127.0.0.1:9465 --metrics-token-file "$work/metrics.token"
  AGENT_PID="$NETNS_LAST_PID"
  netns_wait_for 20 ip netns exec "$2" "$DODVPN_BIN" tunnel status --json --control "$work/$1.sock" >/dev/null ||
    die "agent $1 did not start: $(tail -3 "$work/agent-$1.log")"
}
start_agent a "$A"; pid_a="$AGENT_PID"
start_agent b "$B"; pid_b="$AGENT_PID"

# ---------------------------------------------------------------- access
refused() { # NS TOKEN : the scrape is answered 401
  local out; out="$(prom "$1" "$AGENT_METRICS" "$2" dodvpn_agent_build_info)"; [[ $? == 3 && "$out" == "HTTP 401" ]]
}
check "the agent refuses a scrape without the token (401)" refused "$B" ""
check "the agent refuses a wrong token (401)" refused "$B" "0123456789abcdef0123456789abcdef"
check "the agent answers the right token: build_info 1" eq 1 agent_m "$B" dodvpn_agent_build_info

# ---------------------------------------------------------------- before traffic
g="$(admin connection apply --from "$dev_b" --to "$dev_a" | jq -r '.outcomes[0].grant_id')"
[[ -n "$g" && "$g" != null ]] || die "b → a not granted"
netns_wait_for 15 eq 1 agent_m "$B" dodvpn_agent_grants; rc=$?
check "b's grants gauge shows the grant" test "$rc" = 0
netns_wait_for 15 eq 1 agent_m "$A" dodvpn_agent_grants; rc=$?
check "a's grants gauge shows the grant" test "$rc" = 0
up_and_connected() { eq 1 agent_m "$1" dodvpn_agent_dataplane_up && eq 1 agent_m "$1" dodvpn_agent_center_connected; }
for k in a b; do
  ns="$A"; [[ $k == b ]] && ns="$B"
  check "$k: data plane up, connected to the centre" up_and_connected "$ns"
  check "$k: no tunnel established yet" eq 0 agent_m "$ns" dodvpn_agent_tunnels state=established
done
check "b: its connection to a waits in state trap" eq 1 agent_m "$B" dodvpn_agent_tunnels state=trap

# ---------------------------------------------------------------- traffic b → a
netns_wait_for 10 ip netns exec "$B" ping -c1 -W1 -q -I "$B4" "$A4"; rc=$?
check "ping $B4 → $A4 brings the tunnel up on demand" test "$rc" = 0
check "2 MiB TCP b → a on the granted port, sha256 equal" tcp_transfer "$B" "$A" "$A4" "$B4" 2 "$work" 5001
check "b: one tunnel established" eq 1 agent_m "$B" dodvpn_agent_tunnels state=established
check "a: one tunnel established" eq 1 agent_m "$A" dodvpn_agent_tunnels state=established
check "b: child SAs installed" ge 1 agent_m "$B" dodvpn_agent_child_sas
check "b: a handshake as initiator with a, established" \
  ge 1 agent_m "$B" dodvpn_agent_handshakes_total peer="$dev_a" role=initiator result=established
check "a: a handshake as responder with b, established" \
  ge 1 agent_m "$A" dodvpn_agent_handshakes_total peer="$dev_b" role=responder result=established
check "b: the initiator's handshake duration is in the histogram" \
  ge 1 agent_m "$B" dodvpn_agent_handshake_duration_seconds_count role=initiator
check "a: the responder's handshake duration is in the histogram" \
  ge 1 agent_m "$A" dodvpn_agent_handshake_duration_seconds_count role=responder
check "b: the handshake took more than 0 s and under 10 s" \
  python3 -c "import sys; v=float(sys.argv[1]); sys.exit(0 if 0 < v < 10 else 1)" \
  "$(agent_m "$B" dodvpn_agent_handshake_duration_seconds_sum role=initiator)"
check "b: ≥ 2 MiB out to a (tunnel_bytes_total, peer = a's device id)" \
  ge 2097152 agent_m "$B" dodvpn_agent_tunnel_bytes_total peer="$dev_a" direction=out
check "a: ≥ 2 MiB in from b" ge 2097152 agent_m "$A" dodvpn_agent_tunnel_bytes_total peer="$dev_b" direction=in
packets_both_ways() {
  ge 100 agent_m "$B" dodvpn_agent_tunnel_packets_total peer="$dev_a" direction=out &&
    ge 1 agent_m "$B" dodvpn_agent_tunnel_packets_total peer="$dev_a" direction=in
}
check "b: packets both ways with a" packets_both_ways
check "b: no filter refusal yet" eq 0 agent_m "$B" dodvpn_agent_filter_refusals_total direction=outbound why=service

# ---------------------------------------------------------------- a refused service
ip netns exec "$A" socat -u TCP-LISTEN:5009,bind="$A4",reuseaddr OPEN:/dev/null >/dev/null 2>&1 &
listener=$!
sleep 0.3
check "b cannot open TCP to $A4:5009 (not in the grant)" \
  sh -c "! ip netns exec '$B' timeout 4 socat -u OPEN:/dev/null TCP:$A4:5009,bind=$B4,connect-timeout=2"
kill "$listener" 2>/dev/null; wait "$listener" 2>/dev/null
check "b: the refused SYN counts as an outbound service refusal" \
  ge 1 agent_m "$B" dodvpn_agent_filter_refusals_total direction=outbound why=service
check "b: …and as a drop (reason outbound_filtered)" ge 1 agent_m "$B" dodvpn_agent_drops_total reason=outbound_filtered

# ---------------------------------------------------------------- counters survive the tunnel going
before="$(agent_m "$B" dodvpn_agent_tunnel_bytes_total peer="$dev_a" direction=out)"
ip netns exec "$B" "$DODVPN_BIN" tunnel down --control "$work/b.sock" >/dev/null 2>&1
netns_wait_for 5 eq 0 agent_m "$B" dodvpn_agent_tunnels state=established; rc=$?
check "after \`tunnel down\` at b: no tunnel established" test "$rc" = 0
check "b: the per-peer byte counter kept its value ($before)" ge "$before" agent_m "$B" dodvpn_agent_tunnel_bytes_total peer="$dev_a" direction=out

# ---------------------------------------------------------------- the centre
check "centre: two event streams (both agents)" eq 2 centre_m dodvpn_center_event_streams
check "centre: two devices in service" eq 2 centre_m dodvpn_center_devices state=in_service
check "centre: live pushes (the grant reached both agents)" ge 2 centre_m dodvpn_center_pushes_total source=live
check "centre: the agents' session reports are counted by route" \
  ge 1 centre_m dodvpn_center_http_requests_total method=POST route=/api/v1/device/sessions

netns_kill "$pid_a" "$pid_b"
netns_summary
