#!/usr/bin/env bash
# The gateway centre (issue 12, R-SVC-1): `dodvpn gateway run` as a provider node that
# member sites reach over their tunnels only, giving allowlisted, approved Internet access.
#
#   sudo bash tests/netns/gateway_centre.sh
#
# Topology (every address inside namespaces this script creates):
#   WAN  br0 192.0.2.1 (centre)                 INET 192.0.2.50 / 2001:db8:ffff::50 on the WAN,
#   G    gateway node, out0 192.0.2.20,              203.0.113.10 + 2001:db8:1::10 (HTTPS :443,
#        site0 10.99.0.1 (proxy :3128)              HTTP :80, self-signed *.example.test),
#   A    hospital site (org 1), 10.1.0.1             203.0.113.53 (bind9, zone example.test)
#   B    clinic site (org 2), 10.2.0.1, no grant to G
# The gateway resolves with the zone's server (/etc/netns/G/resolv.conf) and is told that
# 203.0.113.0/24 and 2001:db8:1::/64 stand for the Internet here (--permit).
#
# Checks: allowed → 200; not allowed → 403 with the page (ja + en); an approval by push →
# allowed without a restart; expiry → blocked; SNI ≠ CONNECT and no SNI → refused; names
# resolving to 10.x, 127.x, the VPN range, the gateway itself, CGNAT, ::1 and ::ffff:127.0.0.1 →
# refused; `0x7f.1` and `2130706433` → refused even when 127.0.0.1 is approved; IPv6 upstream;
# a site without a grant cannot reach the gateway at all; the node's log lines and the
# centre's per-organisation log; the daily digest in the audit chain; bad input (malformed,
# huge head, slowloris, 10,000 concurrent CONNECTs) gets HTTP errors and the gateway stays
# up with bounded memory. Prints "PASS/FAIL <check>" and "N passed, M failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$here/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools python openssl gateway
netns_trap_cleanup

work="$(netns_workdir gwc)"
tag="gc$$"; tag="${tag:0:8}"
WAN="${tag}-wan" G="${tag}-g" A="${tag}-a" B="${tag}-b" INET="${tag}-i"
CENTRE=192.0.2.1 G_OUT=192.0.2.20 A_OUT=192.0.2.11 B_OUT=192.0.2.12 INET_WAN=192.0.2.50
WWW=203.0.113.10 DNS=203.0.113.53 WWW6=2001:db8:1::10
G_SITE=10.99.0.1 A_HOST=10.1.0.1 B_HOST=10.2.0.1
PROXY="$G_SITE:3128"
URL="https://$CENTRE:8443"
export DODVPN_KEYSTORE_PASSPHRASE="gateway-centre-$$-$RANDOM"
# The resolver the gateway's namespace sees; removed on exit with the namespaces.
trap 'rc=$?; rm -rf "/etc/netns/$G"; _nl_on_exit $rc; cleanup_all; exit $rc' EXIT
not() { ! "$@"; }
die() { result 1 "setup" "$*"; netns_summary; exit 1; }
admin() { ip netns exec "$WAN" "$DODVPN_BIN" admin --json --center "$URL" --ca "$work/centre/pki/root.pem" \
  --credential-file "$work/centre/admin.token" "$@"; }
as_org() { local tok="$1"; shift; ip netns exec "$WAN" "$DODVPN_BIN" admin --json --center "$URL" --ca "$work/centre/pki/root.pem" \
  --credential-file "$tok" "$@"; }
jid() { jq -r "$1"; }
client() { ip netns exec "$1" python3 "$here/gateway_client.py" "${@:2}"; }
# (Output is captured before it is matched: with pipefail, `grep -q` closing the pipe early
# would fail the writer.)
# curl from site A's host address through the gateway.
pcurl() { ip netns exec "$A" curl -sS --max-time 10 --interface "$A_HOST" -x "http://$PROXY" --cacert "$work/www/cert.pem" "$@"; }

# ---------------------------------------------------------------- topology
for ns in "$WAN" "$G" "$A" "$B" "$INET"; do _nl_ns_add "$ns"; done
ip -n "$WAN" link add br0 type bridge && ip -n "$WAN" addr add "$CENTRE/24" dev br0 && ip -n "$WAN" link set br0 up ||
  die "bridge"
for pair in "$G:$G_OUT" "$A:$A_OUT" "$B:$B_OUT" "$INET:$INET_WAN"; do
  IFS=: read -r ns outer <<<"$pair"
  ip link add "v$ns" netns "$WAN" type veth peer name out0 netns "$ns" || die "veth $ns"
  ip -n "$WAN" link set "v$ns" master br0 up
  ip -n "$ns" addr add "$outer/24" dev out0 && ip -n "$ns" link set out0 up
done
ip -n "$G" addr add 2001:db8:ffff::20/64 dev out0 nodad
ip -n "$INET" addr add 2001:db8:ffff::50/64 dev out0 nodad
# The servers' addresses on loopback: local delivery is all they need.
ip -n "$INET" addr add "$WWW/32" dev lo && ip -n "$INET" addr add "$DNS/32" dev lo || die "server addresses"
ip -n "$INET" addr add "$WWW6/128" dev lo nodad || die "server IPv6 address"
ip -n "$G" route add 203.0.113.0/24 via "$INET_WAN"
ip -n "$G" route add 2001:db8:1::/64 via 2001:db8:ffff::50
_nl_site "$G" "$G_SITE"
_nl_site "$A" "$A_HOST"
_nl_site "$B" "$B_HOST"
# B knows where the gateway's site lives (as an attacker would): only the firewall and the
# missing grant stand between them.
ip -n "$B" route add 10.99.0.0/24 via "$G_OUT"

# ---------------------------------------------------------------- the "Internet": DNS, HTTPS, HTTP
mkdir -p "$work/www" "$work/dns"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=example.test \
  -addext "subjectAltName=DNS:updates.example.test,DNS:news.example.test,DNS:evil.example.test,DNS:v6.example.test" \
  -keyout "$work/www/key.pem" -out "$work/www/cert.pem" 2>/dev/null || die "certificate"
cat >"$work/www/serve.py" <<EOF
import http.server, socket, ssl, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + self.headers.get("Host", "?") + " path " + self.path + "\n").encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
def run(port, tls):
    s = S(("::", port), H)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("$work/www/cert.pem", "$work/www/key.pem")
        s.socket = ctx.wrap_socket(s.socket, server_side=True)
    s.serve_forever()
threading.Thread(target=run, args=(80, False), daemon=True).start()
run(443, True)
EOF
netns_spawn "$INET" "$work/www.log" timeout 900 python3 "$work/www/serve.py"
cat >"$work/dns/example.test.db" <<'EOF'
$TTL 5
@           IN SOA ns.example.test. root.example.test. 1 60 60 600 5
@           IN NS  ns.example.test.
ns          IN A   203.0.113.53
updates     IN A   203.0.113.10
news        IN A   203.0.113.10
evil        IN A   203.0.113.10
v6          IN AAAA 2001:db8:1::10
ten.trap    IN A   10.0.0.5
loop.trap   IN A   127.0.0.1
vpn.trap    IN A   10.1.0.1
gw.trap     IN A   10.99.0.1
cgnat.trap  IN A   100.64.1.1
v6loop.trap IN AAAA ::1
mapped.trap IN AAAA ::ffff:127.0.0.1
EOF
cat >"$work/dns/named.conf" <<EOF
options {
  directory "$work/dns"; pid-file "$work/dns/named.pid"; session-keyfile "$work/dns/session.key";
  listen-on port 53 { $DNS; }; listen-on-v6 { none; }; recursion no; dnssec-validation no;
};
zone "example.test" { type primary; file "$work/dns/example.test.db"; };
EOF
netns_spawn "$INET" "$work/named.log" named -g -n 1 -c "$work/dns/named.conf"
mkdir -p "/etc/netns/$G"
printf 'nameserver %s\noptions timeout:1 attempts:2\n' "$DNS" >"/etc/netns/$G/resolv.conf"
netns_wait_for 10 ip netns exec "$G" getent hosts updates.example.test ||
  die "the test's DNS does not answer: $(tail -3 "$work/named.log")"
netns_wait_for 10 ip netns exec "$G" curl -s --max-time 2 --cacert "$work/www/cert.pem" https://updates.example.test/ ||
  die "the test's HTTPS server does not answer"

# ---------------------------------------------------------------- centre, orgs, devices (TR D.6)
netns_spawn "$WAN" "$work/centre.log" "$DODVPN_BIN" center --data "$work/centre" --listen "$CENTRE:8443" --tls-name "$CENTRE"
netns_wait_for 60 sh -c "[ -f '$work/centre/admin.token' ]" && netns_wait_for 30 admin org list ||
  die "the centre did not come up: $(tail -3 "$work/centre.log")"
vendor="$(admin org create "Device Provider" --kind vendor | jid .id)"
order="$(admin order create --org "$vendor" --model DV-100 | jid .id)"
org1="$(admin org create "Core Hospital" --kind hospital | jid .id)"
org2="$(admin org create "Small Clinic" --kind clinic | jid .id)"
echo '{"inbound":[{"from":"*","services":["any"]}],"outbound":[{"to":"*","services":["any"]}]}' >"$work/open.json"
for o in "$vendor" "$org1" "$org2"; do admin policy set "$o" --file "$work/open.json" >/dev/null || die "policy $o"; done
admin group create GW >/dev/null || die "group"
for spec in "g:$vendor:$G_OUT:10.99.0.0/24:$G" "a:$org1:$A_OUT:10.1.0.0/24:$A" "b:$org2:$B_OUT:10.2.0.0/24:$B"; do
  IFS=: read -r k owner outer net ns <<<"$spec"
  dev="$(admin device register --serial "GC-$k-$$" --model DV-100 --owner "$owner" --order "$order" \
    --endpoint "$outer" --subnet "$net" | jid .id)"
  [[ -n "$dev" && "$dev" != null ]] || die "register $k"
  d6_enrol "$DODVPN_BIN" "$WAN" "$ns" "$URL" "$work/centre" "$dev" "$work/$k-ks" || die "enrol $k"
  admin group add GW "$dev" >/dev/null || die "group add $k"
  printf -v "dev_$k" %s "$dev"
done
admin org admin "$org1" --out "$work/org1.token" >/dev/null || die "org1 admin"
admin org admin "$org2" --out "$work/org2.token" >/dev/null || die "org2 admin"
node_added() { admin gateway node add "$dev_g" | jq -e ".device_id == \"$dev_g\"" >/dev/null; }
check "the provider makes its device a gateway node" node_added
check "…an organisation's administrator may not" not as_org "$work/org1.token" gateway node add "$dev_a"
admin gateway category set updates --title-en "Update servers" --title-ja "更新サーバ" \
  --entry updates.example.test --entry 'http://updates.example.test/pub/' --entry v6.example.test >/dev/null || die "category"
check "a wildcard at a public suffix is refused as an entry (*.co.jp)" not as_org "$work/org1.token" gateway apply --org "$org1" --entry '*.co.jp' --reason test
as_org "$work/org1.token" gateway settings --org "$org1" --category updates >/dev/null || die "org1 opts into updates"

g="$(admin connection apply --from "$dev_a" --to "$dev_g" | jq -r '.outcomes[0].grant_id')"
[[ -n "$g" && "$g" != null ]] || die "a → gateway not granted"

# ---------------------------------------------------------------- agents and the gateway node
start() { # K NS CMD [ARGS...] ; sets PID
  local k="$1" ns="$2"; shift 2
  netns_spawn "$ns" "$work/$k.log" env DODVPN_LOG=info "$DODVPN_BIN" "$@" --keystore "$work/$k-ks" --control "$work/$k.sock"
  PID="$NETNS_LAST_PID"
  netns_wait_for 20 ip netns exec "$ns" "$DODVPN_BIN" tunnel status --json --control "$work/$k.sock" ||
    die "$k did not start: $(tail -3 "$work/$k.log")"
}
start a "$A" agent run --idle-timeout 120s; pid_a="$PID"
start b "$B" agent run --idle-timeout 120s; pid_b="$PID"
ulimit -n 65536
start g "$G" gateway run --listen "$PROXY" --permit 203.0.113.0/24 --permit 2001:db8:1::/64 \
  --log-dir "$work/gwlog" --head-timeout 3s --idle-timeout 120s; pid_g="$PID"
netns_wait_for 20 grep -q "gateway policy version" "$work/g.log" || die "the node has no policy: $(tail -5 "$work/g.log")"
only_tunnel_side() { [[ "$(ip netns exec "$G" ss -ltnH | awk '{print $4}' | grep ':3128$')" == "$PROXY" ]]; }
check "the node serves on its tunnel-side address only ($PROXY)" only_tunnel_side
refuse_open=$(ip netns exec "$G" "$DODVPN_BIN" gateway run --listen 0.0.0.0:3128 --keystore "$work/g-ks" --control "$work/g2.sock" 2>&1)
check "--listen 0.0.0.0:3128 is refused (it would serve the open network)" grep -q "unspecified address" <<<"$refuse_open"

# ---------------------------------------------------------------- allowed and not allowed
netns_wait_for 15 pcurl -o /dev/null https://updates.example.test/ || true
out="$(pcurl https://updates.example.test/hello 2>&1)"
check "allowed (category updates, opted in): https://updates.example.test/ → 200 through the tunnel and the proxy" \
  grep -q "hello from updates.example.test path /hello" <<<"$out"
out="$(pcurl -o /dev/null -w '%{http_code}' http://updates.example.test/pub/file 2>&1)"
check "allowed plain HTTP by URL prefix http://updates.example.test/pub/ → 200 ($out)" test "$out" = 200
out="$(pcurl -w '\n%{http_code}' http://updates.example.test/private 2>&1)"
check "…outside the prefix → 403 ($(tail -1 <<<"$out"))" test "$(tail -1 <<<"$out")" = 403
out="$(pcurl https://v6.example.test/ 2>&1)"
check "an allowed name with only an IPv6 address is dialled over IPv6 → 200" grep -q "hello from v6.example.test" <<<"$out"
client "$A" connect "$PROXY" "$A_HOST" news.example.test 443 --ca "$work/www/cert.pem" >"$work/news1.out" 2>&1
check "not allowed: CONNECT news.example.test:443 → 403 not_listed" grep -q "^proxy 403 not_listed" "$work/news1.out"
page_ok() { grep -q "許可リストにありません" "$1" && grep -q "not on your organisation's allowlist" "$1" && grep -q "申請の方法" "$1" && grep -q "How to apply" "$1"; }
check "…with the page saying why and how to apply, in Japanese and English" page_ok "$work/news1.out"
out="$(pcurl -w '\n%{http_code}' http://news.example.test/ 2>&1)"
plain_page() { grep -q 'How to apply' <<<"$out" && [[ "$(tail -1 <<<"$out")" == 403 ]]; }
check "not allowed plain HTTP → 403 with the page" plain_page

# ---------------------------------------------------------------- application → approval by push → expiry
app="$(as_org "$work/org1.token" gateway apply --org "$org1" --entry news.example.test --reason "電子カルテ更新情報 / EHR news" | jid .id)"
pending() { as_org "$work/org1.token" gateway list --org "$org1" --status pending | jq -e ".[0].id == \"$app\"" >/dev/null; }
check "org 1 applies for news.example.test with a reason (pending)" pending
still_refused() { local out; out="$(client "$A" connect "$PROXY" "$A_HOST" news.example.test 443 --ca "$work/www/cert.pem")"; grep -q '^proxy 403' <<<"$out"; }
check "…while pending it is still refused" still_refused
check "org 2's administrator cannot decide org 1's application" not as_org "$work/org2.token" gateway approve "$app" --org "$org1" --expires-in 30s
t0=$(date +%s%N)
as_org "$work/org1.token" gateway approve "$app" --org "$org1" --expires-in 40s --note "approved by the security officer" >/dev/null ||
  die "approve"
news_ok() { local out; out="$(client "$A" connect "$PROXY" "$A_HOST" news.example.test 443 --ca "$work/www/cert.pem")"; grep -q "^tls ok 200 hello from news.example.test" <<<"$out"; }
netns_wait_for 10 news_ok; rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
pushed() { [[ $rc == 0 && $ms -lt 5000 ]] && kill -0 "$pid_g"; }
check "approved by org 1's security officer: allowed within ${ms} ms by push (gateway.policy), same process" pushed
check "the node logged the push and the new policy version" grep -q "gateway policy version [1-9]" "$work/g.log"
expires_at=$(( $(date +%s) + 40 ))

# ---------------------------------------------------------------- SNI, no SNI
client "$A" connect "$PROXY" "$A_HOST" updates.example.test 443 --sni news.example.test --ca "$work/www/cert.pem" >"$work/front.out" 2>&1
check "SNI ≠ CONNECT (CONNECT updates, SNI news): no TLS session" grep -q "^tls failed" "$work/front.out"
client "$A" connect "$PROXY" "$A_HOST" updates.example.test 443 --sni evil.example.test --ca "$work/www/cert.pem" >"$work/front2.out" 2>&1
check "SNI ≠ CONNECT (SNI evil.example.test, not allowed at all): no TLS session" grep -q "^tls failed" "$work/front2.out"
client "$A" connect "$PROXY" "$A_HOST" updates.example.test 443 --no-sni >"$work/nosni.out" 2>&1
check "a ClientHello without SNI: no TLS session" grep -q "^tls failed" "$work/nosni.out"

# ---------------------------------------------------------------- SSRF: names to internal addresses, IP literals
for e in '*.trap.example.test' '127.0.0.1' 'http://127.0.0.1/'; do
  a2="$(as_org "$work/org1.token" gateway apply --org "$org1" --entry "$e" --reason "test of the address check" | jid .id)"
  as_org "$work/org1.token" gateway approve "$a2" --org "$org1" --expires-in 1h >/dev/null || die "approve $e"
done
sleep 2
refused_as() { # HOST PATTERN : CONNECT HOST:443 is answered 403 with a reason matching PATTERN
  local out; out="$(client "$A" connect "$PROXY" "$A_HOST" "$1" 443)"
  grep -q "^proxy 403 $2" <<<"$out" || { echo "  got: $(head -1 <<<"$out")"; return 1; }
}
check "approved *.trap.example.test, ten.trap → 10.0.0.5: refused (private)" refused_as ten.trap.example.test 'address:private'
check "loop.trap → 127.0.0.1: refused (loopback)" refused_as loop.trap.example.test 'address:loopback'
check "vpn.trap → 10.1.0.1, a member's VPN range: refused (the VPN's own range)" refused_as vpn.trap.example.test "address:the VPN's own range"
check "gw.trap → 10.99.0.1, the gateway itself: refused" refused_as gw.trap.example.test "address:the VPN's own range"
check "cgnat.trap → 100.64.1.1: refused (CGNAT)" refused_as cgnat.trap.example.test 'address:shared address space'
check "v6loop.trap → ::1: refused (loopback)" refused_as v6loop.trap.example.test 'address:loopback'
check "mapped.trap → ::ffff:127.0.0.1: refused (loopback inside)" refused_as mapped.trap.example.test 'address:loopback'
check "approved 127.0.0.1, CONNECT 0x7f.1:443: normalised and refused (loopback)" refused_as 0x7f.1 'address:loopback'
check "CONNECT 2130706433:443: normalised and refused (loopback)" refused_as 2130706433 'address:loopback'
out="$(client "$A" raw "$PROXY" "$A_HOST" 'GET http://2130706433/ HTTP/1.1\r\nHost: 2130706433\r\n\r\n')"
check "GET http://2130706433/ (approved http://127.0.0.1/): refused (loopback)" grep -q "^reason address:loopback" <<<"$out"
out="$(client "$A" raw "$PROXY" "$A_HOST" 'CONNECT [::ffff:7f00:1]:443 HTTP/1.1\r\n\r\n')"
check "CONNECT [::ffff:7f00:1]:443: refused" grep -q "^HTTP/1.1 403" <<<"$out"

# ---------------------------------------------------------------- a site without a grant
nogrant() { ip netns exec "$B" curl -s --max-time 3 --interface "$B_HOST" -x "http://$PROXY" -o /dev/null https://updates.example.test/; }
check "site B (no grant to the gateway, route to it via its outer address): cannot reach the proxy at all" not nogrant
nogrant2() { ip netns exec "$B" python3 -c "import socket,sys
s=socket.socket(); s.settimeout(2); s.bind(('$B_HOST',0))
sys.exit(0 if s.connect_ex(('$G_SITE',3128)) in (0,111) else 1)"; }
check "…not even a TCP answer (SYN dropped by the gateway's firewall)" not nogrant2

# ---------------------------------------------------------------- bad input
out="$(client "$A" raw "$PROXY" "$A_HOST" 'HELLO\r\n\r\n')"
check "a malformed request → 400" grep -q "^HTTP/1.1 400" <<<"$out"
out="$(client "$A" raw "$PROXY" "$A_HOST" 'GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n')"
check "an origin-form request (not to a proxy) → 400" grep -q "^HTTP/1.1 400" <<<"$out"
big="$(python3 -c "print('CONNECT updates.example.test:443 HTTP/1.1\\\\r\\\\n' + 'X-Big: ' + 'a'*20000 + '\\\\r\\\\n\\\\r\\\\n')")"
out="$(client "$A" raw "$PROXY" "$A_HOST" "$big")"
check "a 20 KB header → 431" grep -q "^HTTP/1.1 431" <<<"$out"
many="$(python3 -c "print('CONNECT updates.example.test:443 HTTP/1.1\\\\r\\\\n' + ''.join('X-H%d: v\\\\r\\\\n' % i for i in range(100)) + '\\\\r\\\\n')")"
out="$(client "$A" raw "$PROXY" "$A_HOST" "$many")"
check "100 headers → 431" grep -q "^HTTP/1.1 431" <<<"$out"
out="$(client "$A" slowloris "$PROXY" "$A_HOST")"
check "slowloris (one byte a second): 408 at the head timeout ($out)" grep -Eq "^HTTP/1.1 408 .* after [3-6] s" <<<"$out"
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$pid_g/status")
out="$(client "$A" flood "$PROXY" "$A_HOST" 10000 updates.example.test)"
echo "[flood] $out" >&2
flood_ok() { ! grep -Eq '(^| )(none|connect_error)=' <<<"$out" && grep -Eq '(^| )(200|503)=' <<<"$out"; }
check "10,000 concurrent CONNECTs: every one answered with an HTTP status ($out)" flood_ok
rss_after=$(awk '/VmRSS/ {print $2}' "/proc/$pid_g/status" 2>/dev/null || echo 0)
bounded() { kill -0 "$pid_g" && ((${rss_after:-0} > 0 && ${rss_after:-0} < 409600)); }
check "…the gateway is up, its memory bounded (RSS ${rss_before} → ${rss_after} KiB, < 400 MiB)" bounded
sleep 4
out="$(pcurl https://updates.example.test/after 2>&1)"
check "…and serves the next request (200)" grep -q "hello from updates.example.test path /after" <<<"$out"

# ---------------------------------------------------------------- expiry
wait_s=$(( expires_at - $(date +%s) + 2 ))
((wait_s > 0)) && sleep "$wait_s"
client "$A" connect "$PROXY" "$A_HOST" news.example.test 443 --ca "$work/www/cert.pem" >"$work/news2.out" 2>&1
expired_here() { grep -q '^proxy 403 not_listed' "$work/news2.out" && kill -0 "$pid_g"; }
check "the approval's expiry has passed: news.example.test refused again, no restart" expired_here
expired_there() { as_org "$work/org1.token" gateway list --org "$org1" | jq -e ".[] | select(.id == \"$app\") | .status == \"expired\"" >/dev/null; }
check "…and the centre lists the application as expired" expired_there

# ---------------------------------------------------------------- user authentication (C 4-8-2)
as_org "$work/org1.token" gateway settings --org "$org1" --category updates --user-auth password >/dev/null || die "user auth"
auth_needed() { local out; out="$(client "$A" raw "$PROXY" "$A_HOST" 'CONNECT updates.example.test:443 HTTP/1.1\r\n\r\n')"
  grep -q "^HTTP/1.1 407 Proxy Authentication Required" <<<"$out" && grep -q "^reason auth_required" <<<"$out"; }
netns_wait_for 10 auth_needed; rc=$?
check "org 1 requires sign-in (pushed): a CONNECT without Proxy-Authorization → 407" test "$rc" = 0
out="$(client "$A" raw "$PROXY" "$A_HOST" 'CONNECT updates.example.test:443 HTTP/1.1\r\nProxy-Authorization: Basic bnVyc2UxOndyb25nLXBhc3N3b3Jk\r\n\r\n')"
check "…with a user that is no console account of org 1 → 407" grep -q "^HTTP/1.1 407" <<<"$out"
# A console account of org 1, made as a person makes one: an invitation from the
# provider, then /console/setup in org 1's name (the pre-login CSRF cookie and field).
code="$(admin user invite --role org_approver --org "$org1" | jq -r .code)"
jar="$work/console.jar"
setup_page="$(ip netns exec "$WAN" curl -s --cacert "$work/centre/pki/root.pem" -c "$jar" "$URL/console/setup")"
csrf="$(sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' <<<"$setup_page" | head -1)"
made="$(ip netns exec "$WAN" curl -s --cacert "$work/centre/pki/root.pem" -b "$jar" -c "$jar" \
  --data-urlencode "csrf=$csrf" --data-urlencode "code=$code" --data-urlencode "username=nurse2" \
  --data-urlencode "password=a long enough pass phrase" --data-urlencode "password2=a long enough pass phrase" \
  "$URL/console/setup")"
check "a console account of org 1 is set up through /console/setup" grep -q 'id="totp-secret"' <<<"$made"
basic="$(printf '%s' 'nurse2:a long enough pass phrase' | base64 -w0)"
signed_in() { local out; out="$(client "$A" raw "$PROXY" "$A_HOST" "CONNECT updates.example.test:443 HTTP/1.1\r\nProxy-Authorization: Basic $basic\r\n\r\n")"
  grep -q "^HTTP/1.1 200" <<<"$out"; }
check "…and with that account's password the CONNECT is allowed (200)" signed_in
wrong="$(printf '%s' 'nurse2:not the pass phrase at all' | base64 -w0)"
out="$(client "$A" raw "$PROXY" "$A_HOST" "CONNECT updates.example.test:443 HTTP/1.1\r\nProxy-Authorization: Basic $wrong\r\n\r\n")"
check "…and with a wrong password → 407" grep -q "^HTTP/1.1 407" <<<"$out"
as_org "$work/org1.token" gateway settings --org "$org1" --category updates --user-auth device >/dev/null || die "user auth off"
sleep 1

# ---------------------------------------------------------------- the log: node, centre, per organisation
day="$(date -u +%F)"
nodelog="$work/gwlog/requests-$day.jsonl"
line_ok() { # JQ filter that must match some line of the node's log
  jq -e -s "[.[] | select($1)] | length > 0" "$nodelog" >/dev/null
}
check "node log: the allowed CONNECT to updates.example.test (org, device, host, port, bytes both ways, duration, reason)" \
  line_ok ".org_id == \"$org1\" and .device_id == \"$dev_a\" and .host == \"updates.example.test\" and .port == 443 and .method == \"CONNECT\" and .outcome == \"allowed\" and .reason == \"allowed:updates.example.test\" and .bytes_up > 200 and .bytes_down > 200 and .duration_ms >= 0"
check "node log: the plain GET by prefix (method GET, port 80)" \
  line_ok ".method == \"GET\" and .port == 80 and .host == \"updates.example.test\" and .outcome == \"allowed\""
check "node log: the refused sign-in names the user (nurse1, auth_required:bad_credentials)" \
  line_ok '.user == "nurse1" and .reason == "auth_required:bad_credentials"'
check "node log: the signed-in CONNECT names its user (nurse2)" \
  line_ok '.user == "nurse2" and .method == "CONNECT"'
check "node log: the refused news.example.test (not_listed)" \
  line_ok ".host == \"news.example.test\" and .outcome == \"refused\" and .reason == \"not_listed\""
check "node log: the domain fronting attempt (sni_mismatch:news.example.test)" \
  line_ok ".reason == \"sni_mismatch:news.example.test\""
more_lines() { line_ok '.reason == "no_sni"' && line_ok '.host == "127.0.0.1" and (.reason | startswith("address:loopback"))' &&
  line_ok '.reason == "head_timeout"' && line_ok '.reason == "head_too_large"'; }
check "node log: no_sni, the loopback refusal of 0x7f.1 (logged as 127.0.0.1), the slowloris and the huge head" more_lines
centre_has() { as_org "$work/org1.token" gateway log --org "$org1" --limit 10000 | jq -e "[.[] | select(.host == \"updates.example.test\" and .outcome == \"allowed\" and .device_id == \"$dev_a\")] | length > 0" >/dev/null; }
netns_wait_for 15 centre_has; rc=$?
check "the centre holds org 1's records (sent by the node as LogBatch)" test "$rc" = 0
n_node=$(grep -c "\"org_id\":\"$org1\"" "$nodelog")
all_sent() { (($(as_org "$work/org1.token" gateway log --org "$org1" --limit 10000 | jq length) >= n_node)); }
netns_wait_for 30 all_sent
check "…every line of the node's log for org 1 ($n_node)" all_sent
check "org 2's administrator cannot read org 1's requests" not as_org "$work/org2.token" gateway log --org "$org1"
org2_empty() { as_org "$work/org2.token" gateway log --org "$org2" | jq -e 'length == 0' >/dev/null; }
check "…and org 2's own log holds none of them" org2_empty

# ---------------------------------------------------------------- the daily digest into the audit chain
# A finished day's file (as yesterday's would be after midnight): sent, hashed, audited.
netns_kill "$pid_g"
yday="$(date -u -d yesterday +%F)"
yday_ms=$(( $(date -u -d "$yday 12:00" +%s) * 1000 ))
printf '%s\n' "{\"at_ms\":$yday_ms,\"org_id\":\"$org1\",\"device_id\":\"$dev_a\",\"user\":null,\"host\":\"old.example.test\",\"port\":443,\"method\":\"CONNECT\",\"bytes_up\":1,\"bytes_down\":2,\"duration_ms\":3,\"outcome\":\"refused\",\"reason\":\"not_listed\"}" \
  >"$work/gwlog/requests-$yday.jsonl"
want="$(sha256sum "$work/gwlog/requests-$yday.jsonl" | cut -d' ' -f1)"
start g "$G" gateway run --listen "$PROXY" --permit 203.0.113.0/24 --log-dir "$work/gwlog" --head-timeout 3s; pid_g="$PID"
digest_in_chain() { admin audit list --limit 10000 | jq -e "[.[] | select(.action == \"gateway.log_digest\" and .details.sha256 == \"$want\" and .details.day == \"$yday\")] | length == 1" >/dev/null; }
netns_wait_for 20 digest_in_chain; rc=$?
check "a finished day's log (yesterday's file): its SHA-256 is in the centre's audit chain (gateway.log_digest)" test "$rc" = 0
chain_ok() { local v; v="$(admin audit verify 2>&1)"; jq -e '.ok == true' <<<"$v" >/dev/null || { echo "  $v" | head -5; return 1; }; }
check "the audit chain still verifies" chain_ok
audited() { admin audit list --limit 10000 >"$work/audit.json" &&
  jq -e "[.[] | select(.action == \"gateway.approved\" and .subject == \"$app\")] | length == 1" "$work/audit.json" >/dev/null &&
  jq -e '[.[] | select(.action == "gateway.applied")] | length >= 4' "$work/audit.json" >/dev/null; }
check "the approvals and the applications are audited (gateway.applied, gateway.approved)" audited

netns_kill "$pid_g" "$pid_a" "$pid_b"
netns_summary
