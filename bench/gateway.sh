#!/usr/bin/env bash
# The gateway centre's cost (issue 12, R-SVC-1), side by side in one run:
#   dodvpn    `dodvpn gateway run` on the node's tunnel-side address (CONNECT, SNI peeked)
#   squid     Squid from Debian on the same node and address, same allowlist (dstdomain)
#   direct    a plain TCP relay (socat) on the same node and address: the path with no proxy
# all reached by the same member site over the same dodvpn tunnel, to an HTTPS server in an
# "Internet" namespace. Measured: one large HTTPS download (throughput), new-connection
# request latency p50/p99 (and what each proxy adds over direct), requests per second on
# one keep-alive connection; plus the cost of one decision with 100,000 allowlist entries.
# Medians of ROUNDS runs; ratios against direct. Results: bench/results/gateway-<UTC>.json.
#
#   sudo bash bench/gateway.sh            # DODVPN_BIN defaults to target/release/dodvpn
#   ROUNDS=5 BIG_MB=200 sudo bash bench/gateway.sh
#
# Squid peeks at the ClientHello and splices only the allowed SNI (`ssl_bump peek step1`
# + `splice`), as dodvpn checks SNI = CONNECT host. Debian's default `squid` is the GnuTLS
# build without ssl_bump; this script installs Debian's `squid-openssl` (the same Squid
# 5.7 built with OpenSSL; it replaces `squid` and provides the same /usr/sbin/squid) when
# the installed Squid cannot bump. SQUID_BUMP=0 compares on the CONNECT host only.
set -uo pipefail
SQUID_BUMP="${SQUID_BUMP:-1}"
if [[ "$SQUID_BUMP" == 1 ]] && ! squid -v 2>/dev/null | grep -q -- --with-openssl; then
  echo "installing squid-openssl (Squid with ssl_bump) for the comparison"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq squid-openssl >/dev/null ||
    { echo "cannot install squid-openssl; run with SQUID_BUMP=0" >&2; exit 1; }
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$here/.."
. "$repo/tests/netns/lib.sh"
ROUNDS="${ROUNDS:-3}" BIG_MB="${BIG_MB:-100}" LAT_N="${LAT_N:-100}" KA_N="${KA_N:-300}"
DODVPN_BIN="${DODVPN_BIN:-$repo/target/release/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || DODVPN_BIN="$repo/target/debug/dodvpn"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build --release -p dodvpn)" >&2; exit 1; }
build="$(basename "$(dirname "$DODVPN_BIN")")"
require_root_and_tools python openssl gateway socat
netns_trap_cleanup

work="$(netns_workdir gwbench)"
tag="gb$$"; tag="${tag:0:8}"
WAN="${tag}-wan" G="${tag}-g" A="${tag}-a" INET="${tag}-i"
CENTRE=192.0.2.1 G_OUT=192.0.2.20 A_OUT=192.0.2.11 INET_WAN=192.0.2.50 WWW=203.0.113.10
G_SITE=10.99.0.1 A_HOST=10.1.0.1
URL="https://$CENTRE:8443"
export DODVPN_KEYSTORE_PASSPHRASE="gateway-bench-$$-$RANDOM"
trap 'rc=$?; rm -rf "/etc/netns/$G"; _nl_on_exit $rc; cleanup_all; exit $rc' EXIT
die() { echo "bench setup failed: $*" >&2; exit 1; }
admin() { ip netns exec "$WAN" "$DODVPN_BIN" admin --json --center "$URL" --ca "$work/centre/pki/root.pem" \
  --credential-file "$work/centre/admin.token" "$@"; }
ulimit -n 65536

# ---------------------------------------------------------------- topology and the "Internet"
for ns in "$WAN" "$G" "$A" "$INET"; do _nl_ns_add "$ns"; done
ip -n "$WAN" link add br0 type bridge && ip -n "$WAN" addr add "$CENTRE/24" dev br0 && ip -n "$WAN" link set br0 up || die bridge
for pair in "$G:$G_OUT" "$A:$A_OUT" "$INET:$INET_WAN"; do
  IFS=: read -r ns outer <<<"$pair"
  ip link add "v$ns" netns "$WAN" type veth peer name out0 netns "$ns" || die "veth $ns"
  ip -n "$WAN" link set "v$ns" master br0 up
  ip -n "$ns" addr add "$outer/24" dev out0 && ip -n "$ns" link set out0 up
done
ip -n "$INET" addr add "$WWW/32" dev lo
ip -n "$G" route add 203.0.113.0/24 via "$INET_WAN"
_nl_site "$G" "$G_SITE"
_nl_site "$A" "$A_HOST"
mkdir -p "$work/www" "/etc/netns/$G"
printf '127.0.0.1 localhost\n%s updates.example.test\n' "$WWW" >"/etc/netns/$G/hosts"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=updates.example.test \
  -addext "subjectAltName=DNS:updates.example.test" -keyout "$work/www/key.pem" -out "$work/www/cert.pem" 2>/dev/null || die cert
cat >"$work/www/serve.py" <<EOF
import http.server, socket, ssl
ZERO = b"\0" * 65536
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        # One write per small answer and no Nagle: the server adds no 40 ms stalls.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def do_GET(self):
        n = $BIG_MB * 1024 * 1024 if self.path == "/big" else 16
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n
        if n <= len(ZERO):
            self.wfile.write(head + ZERO[:n]); return
        self.wfile.write(head)
        while n > 0:
            k = min(n, len(ZERO)); self.wfile.write(ZERO[:k]); n -= k
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
s = S(("$WWW", 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("$work/www/cert.pem", "$work/www/key.pem")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
EOF
netns_spawn "$INET" "$work/www.log" python3 "$work/www/serve.py"

# ---------------------------------------------------------------- centre, node, site
netns_spawn "$WAN" "$work/centre.log" "$DODVPN_BIN" center --data "$work/centre" --listen "$CENTRE:8443" --tls-name "$CENTRE"
netns_wait_for 60 sh -c "[ -f '$work/centre/admin.token' ]" && netns_wait_for 30 admin org list || die "centre"
vendor="$(admin org create "Provider" --kind vendor | jq -r .id)"
order="$(admin order create --org "$vendor" --model DV-100 | jq -r .id)"
org="$(admin org create "Hospital" --kind hospital | jq -r .id)"
echo '{"inbound":[{"from":"*","services":["any"]}],"outbound":[{"to":"*","services":["any"]}]}' >"$work/open.json"
for o in "$vendor" "$org"; do admin policy set "$o" --file "$work/open.json" >/dev/null; done
admin group create GW >/dev/null
for spec in "g:$vendor:$G_OUT:10.99.0.0/24:$G" "a:$org:$A_OUT:10.1.0.0/24:$A"; do
  IFS=: read -r k owner outer net ns <<<"$spec"
  dev="$(admin device register --serial "GB-$k-$$" --model DV-100 --owner "$owner" --order "$order" \
    --endpoint "$outer" --subnet "$net" | jq -r .id)"
  d6_enrol "$DODVPN_BIN" "$WAN" "$ns" "$URL" "$work/centre" "$dev" "$work/$k-ks" || die "enrol $k"
  admin group add GW "$dev" >/dev/null
  printf -v "dev_$k" %s "$dev"
done
admin gateway node add "$dev_g" >/dev/null || die "node"
admin gateway category set updates --title-en "Update servers" --title-ja "更新サーバ" --entry updates.example.test >/dev/null
admin gateway settings --org "$org" --category updates >/dev/null
admin connection apply --from "$dev_a" --to "$dev_g" >/dev/null || die grant
netns_spawn "$A" "$work/a.log" "$DODVPN_BIN" agent run --keystore "$work/a-ks" --control "$work/a.sock" --idle-timeout 600s
netns_spawn "$G" "$work/g.log" "$DODVPN_BIN" gateway run --keystore "$work/g-ks" --control "$work/g.sock" \
  --listen "$G_SITE:3128" --permit 203.0.113.0/24 --log-dir "$work/gwlog" --idle-timeout 600s
netns_wait_for 30 grep -q "gateway policy version" "$work/g.log" || die "gateway: $(tail -3 "$work/g.log")"

# Squid: the same allowlist, no cache, on the same address.
mkdir -p "$work/squid" && chmod 777 "$work/squid"
{
  if [[ "$SQUID_BUMP" == 1 ]]; then
    # Peek and splice never decrypt, but Squid wants a certificate on a bumping port.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=squid-bench \
      -keyout "$work/squid/bump.key" -out "$work/squid/bump.pem" >/dev/null 2>&1
    chown proxy "$work/squid/bump.key" 2>/dev/null || true
    echo "http_port $G_SITE:3129 ssl-bump tls-cert=$work/squid/bump.pem tls-key=$work/squid/bump.key generate-host-certificates=off"
  else
    echo "http_port $G_SITE:3129"
  fi
  echo "acl allowed dstdomain updates.example.test"
  echo "acl SSL_ports port 443"
  echo "acl CONNECT method CONNECT"
  if [[ "$SQUID_BUMP" == 1 ]]; then
    echo "acl step1 at_step SslBump1"
    echo "acl allowed_sni ssl::server_name updates.example.test"
    echo "ssl_bump peek step1"; echo "ssl_bump splice allowed_sni"; echo "ssl_bump terminate all"
  fi
  echo "http_access allow CONNECT SSL_ports allowed"
  echo "http_access deny all"
  echo "cache deny all"
  echo "pid_filename $work/squid/squid.pid"
  echo "cache_log $work/squid/cache.log"
  echo "access_log none"
  echo "coredump_dir $work/squid"
  echo "workers 1"
  echo "pinger_enable off"
} >"$work/squid/squid.conf"
netns_spawn "$G" "$work/squid.log" squid -N -f "$work/squid/squid.conf"
# Direct: a plain relay on the same node, no proxy and no decision.
netns_spawn "$G" "$work/socat.log" socat "TCP-LISTEN:8443,bind=$G_SITE,fork,reuseaddr,nodelay" "TCP:$WWW:443,nodelay"
netns_wait_for 30 ip netns exec "$G" sh -c "ss -ltn | grep -q '$G_SITE:3129 ' && ss -ltn | grep -q '$G_SITE:8443 '" || die "squid or socat"

curl_via() { # PATH CURL_ARGS...
  local path="$1"; shift
  local base=(-s --interface "$A_HOST" --cacert "$work/www/cert.pem" -o /dev/null)
  case "$path" in
    dodvpn) ip netns exec "$A" curl "${base[@]}" -x "http://$G_SITE:3128" "$@" ;;
    squid) ip netns exec "$A" curl "${base[@]}" -x "http://$G_SITE:3129" "$@" ;;
    direct) ip netns exec "$A" curl "${base[@]}" --connect-to "updates.example.test:443:$G_SITE:8443" "$@" ;;
  esac
}
for p in dodvpn squid direct; do
  netns_wait_for 20 curl_via "$p" --max-time 5 -f https://updates.example.test/small || die "$p does not answer"
done
# Both proxies enforce the same rule: a CONNECT to the allowed host carrying a
# ClientHello for another name (domain fronting) is refused.
fronted() { curl_via "$1" -k --max-time 5 -f --connect-to news.example.test:443:updates.example.test:443 https://news.example.test/small; }
fronted dodvpn && die "dodvpn let a ClientHello for news.example.test through a CONNECT to updates.example.test"
if [[ "$SQUID_BUMP" == 1 ]]; then
  fronted squid && die "squid (ssl_bump) let a ClientHello for news.example.test through"
  echo "both proxies refuse a ClientHello whose SNI is not the CONNECT host" >&2
fi

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
pct() { sort -g | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if (i<1) i=1; print a[i]}'; }
declare -A thr p50 p99 rps
for r in $(seq "$ROUNDS"); do
  for p in direct dodvpn squid; do
    bps="$(curl_via "$p" -w '%{speed_download}' https://updates.example.test/big)"
    echo "$bps" >>"$work/thr-$p"
    : >"$work/lat-$p-$r"
    for _ in $(seq "$LAT_N"); do curl_via "$p" -w '%{time_total}\n' https://updates.example.test/small >>"$work/lat-$p-$r"; done
    median <"$work/lat-$p-$r" >>"$work/p50-$p"
    pct 99 <"$work/lat-$p-$r" >>"$work/p99-$p"
    urls=(); for _ in $(seq "$KA_N"); do urls+=(https://updates.example.test/small); done
    t0=$(date +%s%N); curl_via "$p" "${urls[@]}"; t1=$(date +%s%N)
    awk -v n="$KA_N" -v ns=$((t1 - t0)) 'BEGIN {printf "%.1f\n", n / (ns / 1e9)}' >>"$work/rps-$p"
    echo "round $r $p: $(tail -1 "$work/thr-$p") B/s, p50 $(tail -1 "$work/p50-$p") s, p99 $(tail -1 "$work/p99-$p") s, $(tail -1 "$work/rps-$p") req/s keep-alive" >&2
  done
done
for p in direct dodvpn squid; do
  thr[$p]="$(median <"$work/thr-$p")"; p50[$p]="$(median <"$work/p50-$p")"
  p99[$p]="$(median <"$work/p99-$p")"; rps[$p]="$(median <"$work/rps-$p")"
done
decide="$(cd "$repo" && cargo run -q --release -p dodvpn-gateway --example decide 100000 9)"
mkdir -p "$repo/bench/results"
out="$repo/bench/results/gateway-$(date -u +%Y%m%dT%H%M%SZ).json"
commit="$(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet || echo +dirty)"
jq -n --arg commit "$commit" --arg build "$build" --arg cpu "$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo)" \
  --argjson nproc "$(nproc)" --argjson rounds "$ROUNDS" --argjson big_mb "$BIG_MB" --argjson lat_n "$LAT_N" --argjson ka_n "$KA_N" \
  --argjson decide "$decide" --arg squid "$(squid -v | head -1)" --argjson bump "$SQUID_BUMP" \
  --argjson t_d "${thr[direct]}" --argjson t_g "${thr[dodvpn]}" --argjson t_s "${thr[squid]}" \
  --argjson l_d "${p50[direct]}" --argjson l_g "${p50[dodvpn]}" --argjson l_s "${p50[squid]}" \
  --argjson q_d "${p99[direct]}" --argjson q_g "${p99[dodvpn]}" --argjson q_s "${p99[squid]}" \
  --argjson r_d "${rps[direct]}" --argjson r_g "${rps[dodvpn]}" --argjson r_s "${rps[squid]}" '
  def path(t; l; q; r): {throughput_MBps: (t / 1048576), latency_p50_ms: (l * 1000), latency_p99_ms: (q * 1000), keepalive_req_per_s: r};
  {bench: "gateway", commit: $commit, dodvpn_build: $build, cpu: $cpu, nproc: $nproc, rounds: $rounds,
   big_download_MiB: $big_mb, latency_requests_per_round: $lat_n, keepalive_requests: $ka_n,
   squid: $squid, squid_sni_peek_splice: ($bump == 1),
   note: "every path crosses the same dodvpn tunnel from the site to the node; medians of the rounds",
   direct: path($t_d; $l_d; $q_d; $r_d), dodvpn: path($t_g; $l_g; $q_g; $r_g), squid_proxy: path($t_s; $l_s; $q_s; $r_s),
   ratios_vs_direct: {
     dodvpn: {throughput: ($t_g / $t_d), keepalive_req_per_s: ($r_g / $r_d), added_latency_p50_ms: (($l_g - $l_d) * 1000), added_latency_p99_ms: (($q_g - $q_d) * 1000)},
     squid: {throughput: ($t_s / $t_d), keepalive_req_per_s: ($r_s / $r_d), added_latency_p50_ms: (($l_s - $l_d) * 1000), added_latency_p99_ms: (($q_s - $q_d) * 1000)}},
   dodvpn_vs_squid: {throughput: ($t_g / $t_s), keepalive_req_per_s: ($r_g / $r_s), latency_p50: ($l_g / $l_s)},
   decision: $decide}' >"$out" || die "results"
cat "$out"
echo "results: $out" >&2
