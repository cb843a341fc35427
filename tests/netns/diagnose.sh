#!/usr/bin/env bash
# R-SVC-5 (issue 14): `dodvpn diagnose` against real Debian servers in namespaces of this
# test's own, compared with nmap on the same targets. Needs root. Prints PASS/FAIL per
# case and "N passed, N failed".
#
#   scanner (dgs) 10.99.0.1 ── 10.99.0.2 target (dgt): vsftpd (anonymous), bind9
#                                        (recursion, AXFR, version), squid (open proxy),
#                                        dante (open SOCKS), snmpd (public), apache2
#                                        (directory listing; a VPN-login page on :10000),
#                                        inetd echo/chargen/daytime on TCP and UDP,
#                                        telnet/RDP/SMB greetings (socat),
#                                        openssl s_server -tls1 with weak suites (:4433) and
#                                        with an expired certificate (:4434), an RFB
#                                        greeting on :5900, a canary HTTP server on :8081;
#                                        the kernel answers ICMP timestamps
#   scanner (dgs) 10.99.1.1 ── 10.99.1.2 clean host (dgc): nothing listening, ICMP
#                                        timestamp requests dropped (nft)
#   The centre runs in the scanner namespace on 127.0.0.1; 10.99.1.3 is never registered.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$HERE/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools socat python openssl nat diagnose
netns_trap_cleanup

S=dgs$$; T=dgt$$; C=dgc$$
W="$(netns_workdir diagnose)"
chmod 755 "$W"
_nl_ns_add "$S"; _nl_ns_add "$T"; _nl_ns_add "$C"
_nl_veth "$S" t0 10.99.0.1/24 "$T" s0 10.99.0.2/24 1500
_nl_veth "$S" c0 10.99.1.1/24 "$C" s0 10.99.1.2/24 1500
ip -n "$S" link set lo up; ip -n "$T" link set lo up; ip -n "$C" link set lo up
jqe() { jq -e "$@" >/dev/null; }
TGT=10.99.0.2; CLEAN=10.99.1.2; PORTS=7,13,19,21,22,23,53,80,445,1080,3128,3389,4433,4434,5900,8081,10000

# --- vsftpd: anonymous login, read-only, one world-writable directory to be seen
mkdir -p "$W/ftp/pub" "$W/ftp/incoming" "$W/empty"; chmod 555 "$W/ftp"; chmod 777 "$W/ftp/incoming"
echo hello >"$W/ftp/pub/readme.txt"
cat >"$W/vsftpd.conf" <<EOF
listen=YES
listen_address=$TGT
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=NO
anon_root=$W/ftp
ftp_username=ftp
no_anon_password=YES
secure_chroot_dir=$W/empty
seccomp_sandbox=NO
pasv_enable=YES
pasv_min_port=40000
pasv_max_port=40010
xferlog_enable=NO
EOF
netns_spawn "$T" "$W/vsftpd.log" vsftpd "$W/vsftpd.conf"

# --- bind9: recursion for anyone, AXFR for anyone, version shown
cat >"$W/example.test.zone" <<'EOF'
$TTL 60
@ IN SOA ns.example.test. admin.example.test. 1 60 60 60 60
@ IN NS ns.example.test.
ns IN A 10.99.0.2
secret-pacs IN A 10.99.0.50
EOF
# A second zone under a TLD nmap's dns-zone-transfer knows (docs/diagnose.md: for a name
# under an unknown TLD, or under a second-level domain such as or.jp, that script asks the
# transfer of a shorter zone than the one given); canary.example.com names the target, so
# that nmap's socks-open-proxy, which resolves the test URL's host by DNS, can be pointed at it.
cat >"$W/example.com.zone" <<'EOF'
$TTL 60
@ IN SOA ns.example.com. admin.example.com. 1 60 60 60 60
@ IN NS ns.example.com.
ns IN A 10.99.0.2
canary IN A 10.99.0.2
secret-pacs IN A 10.99.0.50
EOF
cat >"$W/named.conf" <<EOF
options { directory "$W"; listen-on { $TGT; }; listen-on-v6 { none; };
  recursion yes; allow-recursion { any; }; allow-query { any; }; allow-transfer { any; };
  version "9.99-diagnose-test"; pid-file "$W/named.pid"; session-keyfile "$W/session.key";
  dnssec-validation no; };
controls { };
zone "example.test" { type primary; file "$W/example.test.zone"; };
zone "example.com" { type primary; file "$W/example.com.zone"; };
EOF
chown -R bind "$W/named.conf" "$W/example.test.zone" "$W/example.com.zone" 2>/dev/null
netns_spawn "$T" "$W/named.log" named -g -c "$W/named.conf"

# --- squid: an open proxy
mkdir -p "$W/squid"; chown proxy "$W/squid"
cat >"$W/squid.conf" <<EOF
http_port $TGT:3128
http_access allow all
cache deny all
pid_filename $W/squid/squid.pid
access_log none
cache_log $W/squid/cache.log
coredump_dir $W/squid
shutdown_lifetime 1 seconds
# A fresh root may not resolve its own host name, and squid refuses to start without one.
visible_hostname diagnose-target
EOF
# squid keeps shared memory in /dev/shm, which a fresh root's /dev lacks: give it a
# private tmpfs there, in a mount namespace of its own (nothing outside sees it).
netns_spawn "$T" "$W/squid.log" unshare -m --propagation private \
  sh -c 'mount -t tmpfs -o mode=1777 squid-shm /dev/shm && exec squid -N -f "$1"' squid "$W/squid.conf"

# --- dante: an open SOCKS server (no authentication, anyone to anywhere)
cat >"$W/danted.conf" <<EOF
logoutput: stderr
internal: $TGT port = 1080
external: $TGT
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
EOF
netns_spawn "$T" "$W/danted.log" danted -f "$W/danted.conf" -p "$W/danted.pid"

# --- snmpd: read-only community "public" for anyone (no default config files read)
mkdir -p "$W/snmp"
cat >"$W/snmpd.conf" <<EOF
rocommunity public default
sysDescr dodvpn-diagnose-test-agent
EOF
netns_spawn "$T" "$W/snmpd.log" env SNMP_PERSISTENT_DIR="$W/snmp" snmpd -f -Lo -C -c "$W/snmpd.conf" -p "$W/snmpd.pid" udp:$TGT:161

# --- apache2: an automatic directory index on :80, a VPN appliance's login page on :10000
mkdir -p "$W/www/files" "$W/vpn" "$W/apache"
echo report >"$W/www/files/patients-2025.csv"; echo backup >"$W/www/backup.tar.gz"
printf '<html><head><title>SSL-VPN Portal - Login</title></head><body>login</body></html>\n' >"$W/vpn/index.html"
M=/usr/lib/apache2/modules
cat >"$W/apache2.conf" <<EOF
ServerRoot $W/apache
ServerName diagnose-target
PidFile $W/apache/httpd.pid
DefaultRuntimeDir $W/apache
ErrorLog $W/apache/error.log
LoadModule mpm_event_module $M/mod_mpm_event.so
LoadModule authz_core_module $M/mod_authz_core.so
LoadModule dir_module $M/mod_dir.so
LoadModule autoindex_module $M/mod_autoindex.so
LoadModule mime_module $M/mod_mime.so
TypesConfig /etc/mime.types
User www-data
Group www-data
Listen $TGT:80
Listen $TGT:10000
<VirtualHost $TGT:80>
  DocumentRoot $W/www
  <Directory $W/www>
    Options +Indexes
    Require all granted
  </Directory>
</VirtualHost>
<VirtualHost $TGT:10000>
  DocumentRoot $W/vpn
  DirectoryIndex index.html
  <Directory $W/vpn>
    Require all granted
  </Directory>
</VirtualHost>
EOF
chmod -R a+rX "$W/www" "$W/vpn"
# apache's workers run as www-data: they must be able to pass through this run's work root.
chmod o+x "$(dirname "$W")"
netns_spawn "$T" "$W/apache2.log" apache2 -f "$W/apache2.conf" -DFOREGROUND

# --- echo, chargen, daytime on TCP and UDP: inetd's internal services (openbsd-inetd,
# with a configuration file of this test's own, in the foreground)
inetd_conf() { # SERVICE/PROTO... : the internal services to offer
  local sp
  for sp in "$@"; do
    case "${sp#*/}" in
      tcp) echo "$TGT:${sp%/*} stream tcp nowait root internal" ;;
      udp) echo "$TGT:${sp%/*} dgram udp wait root internal" ;;
    esac
  done >"$W/inetd.conf"
}
inetd_conf echo/tcp chargen/tcp daytime/tcp echo/udp chargen/udp daytime/udp
netns_spawn "$T" "$W/inetd.log" inetd -i "$W/inetd.conf"

# --- a VNC server's greeting (no VNC server package here: the RFB version line is all
# the check and nmap's version probe read)
printf '#!/bin/sh\nprintf "RFB 003.008\\n"; sleep 2\n' >"$W/rfb.sh"; chmod 755 "$W/rfb.sh"
netns_spawn "$T" "$W/vnc.log" socat TCP-LISTEN:5900,bind=$TGT,fork,reuseaddr EXEC:"$W/rfb.sh"
# --- and, the same way, what a telnet server, an RDP server and an SMB server show first:
# telnet's option negotiation (IAC DO TERMINAL-TYPE), RDP's X.224 Connection Confirm with
# a negotiation response (TLS), an SMB port that accepts. No server packages are used for
# these: the first bytes are all either scanner reads.
printf '#!/bin/sh\nprintf "\\377\\375\\030\\377\\375\\040"; sleep 2\n' >"$W/telnet.sh"; chmod 755 "$W/telnet.sh"
netns_spawn "$T" "$W/telnet.log" socat TCP-LISTEN:23,bind=$TGT,fork,reuseaddr EXEC:"$W/telnet.sh"
printf '#!/bin/sh\nhead -c 11 >/dev/null; printf "\\003\\000\\000\\023\\016\\320\\000\\000\\022\\064\\000\\002\\000\\010\\000\\001\\000\\000\\000"; sleep 2\n' >"$W/rdp.sh"; chmod 755 "$W/rdp.sh"
netns_spawn "$T" "$W/rdp.log" socat TCP-LISTEN:3389,bind=$TGT,fork,reuseaddr EXEC:"$W/rdp.sh"
netns_spawn "$T" "$W/smb.log" socat TCP-LISTEN:445,bind=$TGT,fork,reuseaddr EXEC:"sleep 3"

# --- the clean host drops ICMP timestamp requests, as a hardened edge does
printf 'table inet dgclean {\n chain input_ts {\n  type filter hook input priority 0;\n  icmp type timestamp-request drop\n }\n}\n' \
  | ip netns exec "$C" nft -f - || echo "nft: the clean host's ICMP timestamp rule failed" >&2


# --- openssl s_server offering TLS 1.0 only, anonymous and NULL suites among its
# ciphers, with a self-signed certificate
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/tls.key" -out "$W/tls.crt" -days 2 -subj /CN=target.test >/dev/null 2>&1
netns_spawn "$T" "$W/s_server.log" openssl s_server -accept "$TGT:4433" -tls1 -cipher 'ALL:eNULL:@SECLEVEL=0' -cert "$W/tls.crt" -key "$W/tls.key" -www -quiet
# --- and TLS 1.2 with good suites but an expired (self-signed) certificate
openssl req -new -newkey rsa:2048 -nodes -keyout "$W/old.key" -out "$W/old.csr" -subj /CN=expired.test >/dev/null 2>&1
openssl x509 -req -in "$W/old.csr" -signkey "$W/old.key" -days -1 -out "$W/old.crt" >/dev/null 2>&1
netns_spawn "$T" "$W/s_server2.log" openssl s_server -accept "$TGT:4434" -tls1_2 -cert "$W/old.crt" -key "$W/old.key" -www -quiet

# --- the provider's canary (what the proxy is asked to reach)
mkdir -p "$W/canary"; echo canary-ok >"$W/canary/index.html"
netns_spawn "$T" "$W/canary.log" python3 -m http.server 8081 --bind $TGT --directory "$W/canary"

for p in 7 13 19 21 23 53 80 445 1080 3128 3389 4433 4434 5900 8081 10000; do
  netns_wait_for 15 ip netns exec "$S" bash -c "exec 3<>/dev/tcp/$TGT/$p" || echo "port $p did not open" >&2
done

# --- the centre, in the scanner namespace
netns_spawn "$S" "$W/center.log" "$DODVPN_BIN" center --data "$W/center" --listen 127.0.0.1:18443
netns_wait_for 30 test -f "$W/center/admin.token"
sleep 1
export DODVPN_CENTER=https://127.0.0.1:18443 DODVPN_CA="$W/center/pki/root.pem" DODVPN_ADMIN_CREDENTIAL_FILE="$W/center/admin.token"
dv() { ip netns exec "$S" env DODVPN_CENTER="$DODVPN_CENTER" DODVPN_CA="$DODVPN_CA" DODVPN_ADMIN_CREDENTIAL_FILE="$DODVPN_ADMIN_CREDENTIAL_FILE" "$DODVPN_BIN" "$@"; }
netns_wait_for 30 dv admin org list
ORG="$(dv admin --json org create "Diagnosed Hospital" --kind hospital | jq -r .id)"
check "provider registers the public addresses" dv admin org public-addresses set "$ORG" $TGT $CLEAN
dv admin --json org public-addresses list "$ORG" >"$W/addrs.json"
check "the list reads back" jqe '.addresses == ["10.99.0.2/32","10.99.1.2/32"]' "$W/addrs.json"

# An organisation's own administrator may diagnose itself but not change its addresses.
dv admin --json org admin "$ORG" --out "$W/org.token" >/dev/null
dv_org() { ip netns exec "$S" env DODVPN_CENTER="$DODVPN_CENTER" DODVPN_CA="$DODVPN_CA" DODVPN_ADMIN_CREDENTIAL_FILE="$W/org.token" "$DODVPN_BIN" "$@"; }
dv_org admin org public-addresses set "$ORG" 10.99.1.3 >"$W/org-set.out" 2>&1
result $((! $?)) "an organisation cannot change its own public addresses"

# --- an unregistered address is refused, before any packet is sent
dv diagnose --org "$ORG" 10.99.1.3 --ports $PORTS >"$W/refused.out" 2>&1
rc=$?
check "unregistered address refused (non-zero exit)" test $rc -ne 0
check "refusal is in Japanese and English" grep -q '登録されていない.*not registered' "$W/refused.out"
dv diagnose --org "$ORG" 10.99.0.0/24 --ports $PORTS >"$W/refused2.out" 2>&1
check "a prefix reaching outside is refused" test $? -ne 0

# --- diagnose the target and the clean host
dv diagnose --org "$ORG" --ports $PORTS --canary $TGT:8081 --dns-zone example.test --dns-zone example.com --json >"$W/run1.json" 2>"$W/run1.err"
result $? "diagnose runs" "$(tail -3 "$W/run1.err")"
has() { jqe --arg t "$1" --arg c "$2" '[.report.findings[] | select(.target==$t and .check==$c)] | length > 0' "$W/run1.json" >/dev/null; }
for c in ftp.anonymous ftp.anonymous_writable ftp.banner dns.version dns.recursion dns.axfr echo.tcp chargen.tcp daytime.tcp tls.v1_0 proxy.http_get proxy.http_connect \
         echo.udp chargen.udp daytime.udp snmp.public socks.open icmp.timestamp http.banner http.dir_listing http.vpn_login \
         tls.cert_self_signed tls.cert_expired tls.weak_cipher vnc.exposed telnet.exposed rdp.exposed smb.exposed; do
  check "finding $c on the target" has $TGT $c
done
at() { jq -e --arg c "$1" --argjson p "$2" '[.report.findings[] | select(.check==$c and .port==$p)] | length > 0' "$W/run1.json" >/dev/null; }
check "directory listing on :80 with Apache's Server and title" jqe '.report.findings[] | select(.check=="http.dir_listing" and .port==80) | .evidence | (contains("Apache") and contains("Index of /"))' "$W/run1.json"
check "VPN login page on :10000 (by title)" at http.vpn_login 10000
check "RDP identified by its X.224 Connection Confirm" jqe '.report.findings[] | select(.check=="rdp.exposed") | .evidence | startswith("X.224 Connection Confirm")' "$W/run1.json"
check "telnet on :23" at telnet.exposed 23
check "SMB on :445" at smb.exposed 445
check "expired certificate on :4434" at tls.cert_expired 4434
result $(at tls.cert_expired 4433; echo $((! $?))) "no expired certificate on :4433"
check "weak suite accepted on :4433" at tls.weak_cipher 4433
result $(at tls.weak_cipher 4434; echo $((! $?))) "no weak suite on :4434"
check "SNMP evidence shows sysDescr" jqe '.report.findings[] | select(.check=="snmp.public") | .evidence | contains("dodvpn-diagnose-test-agent")' "$W/run1.json"
check "SOCKS evidence shows the CONNECT granted" jqe '.report.findings[] | select(.check=="socks.open") | .evidence | contains("reply 00")' "$W/run1.json"
has $TGT proxy.http_get || { echo "squid's log:"; tail -n 20 "$W/squid.log"; } >&2
check "one AXFR finding for the server, naming both zones and their hosts" jqe '[.report.findings[] | select(.check=="dns.axfr") | .evidence] | length == 1 and (.[0] | contains("AXFR example.test:") and contains("AXFR example.com:") and contains("secret-pacs.example.com."))' "$W/run1.json"
check "TLS 1.1 not reported (s_server offers 1.0 only)" bash -c "! jqe '.report.findings[] | select(.check==\"tls.v1_1\")' '$W/run1.json' >/dev/null"
check "the clean host has no findings" jqe --arg t $CLEAN '[.report.findings[] | select(.target==$t)] | length == 0' "$W/run1.json"
check "evidence shows the bytes seen (version.bind)" jqe '.report.findings[] | select(.check=="dns.version") | .evidence | contains("9.99-diagnose-test")' "$W/run1.json"
check "recommendations in Japanese and English" jqe '.report.findings | all(.recommendation_ja != "" and .recommendation_en != "")' "$W/run1.json"
check "first run: everything is new" jqe '(.comparison.new | length) == (.report.findings | length) and (.comparison.unchanged | length) == 0' "$W/run1.json"
check "nothing written on the FTP server" bash -c "[ -z \"\$(ls -A '$W/ftp/incoming')\" ]"

# --- the same targets through nmap (connect scan, the same scripts)
# (http-open-proxy and socks-open-proxy read proxy.url/proxy.pattern; the names
# prefixed with the script's own are not arguments of theirs.)
ip netns exec "$S" nmap -n -Pn -sT -sV --version-light -p $PORTS \
  --script ftp-anon,dns-zone-transfer,dns-recursion,http-open-proxy,banner,ssl-enum-ciphers,ssl-cert,http-title,http-server-header,http-ls \
  --script-args "dns-zone-transfer.domain=example.com,proxy.url=http://$TGT:8081/,proxy.pattern=canary-ok" \
  $TGT $CLEAN >"$W/nmap.txt" 2>&1
# The zone under the unknown TLD: nmap asks the transfer of "test." instead and stays silent.
ip netns exec "$S" nmap -n -Pn -sT -p 53 --script dns-zone-transfer --script-args dns-zone-transfer.domain=example.test $TGT >"$W/nmap-axfr-test.txt" 2>&1
# socks-open-proxy resolves the URL's host through DNS (an IP literal is not resolved) and
# always asks port 80: give it a name our bind9 answers, and a pattern of apache's page on :80.
ip netns exec "$S" nmap -n -Pn -sT -p 1080 --dns-servers $TGT --script socks-open-proxy \
  --script-args "proxy.url=http://canary.example.com/,proxy.pattern=Index of" $TGT >"$W/nmap-socks.txt" 2>&1
cat "$W/nmap-axfr-test.txt" "$W/nmap-socks.txt" >>"$W/nmap.txt"
ip netns exec "$S" nmap -n -Pn -sU -sV --version-light -p 7,13,19,53,161 --script dns-recursion,dns-nsid,snmp-info $TGT $CLEAN >>"$W/nmap.txt" 2>&1
ip netns exec "$S" nmap -n -sn -PP --disable-arp-ping $TGT $CLEAN >"$W/nmap-pp.txt" 2>&1
cat "$W/nmap-pp.txt" >>"$W/nmap.txt"
cp "$W/nmap.txt" "${DIAGNOSE_NMAP_OUT:-/tmp/diagnose-nmap.txt}" 2>/dev/null
cp "$W/run1.json" "${DIAGNOSE_RUN_OUT:-/tmp/diagnose-run1.json}" 2>/dev/null
check "nmap agrees: anonymous FTP" grep -q 'Anonymous FTP login allowed' "$W/nmap.txt"
check "nmap agrees: AXFR of example.com (dns-zone-transfer)" grep -q 'secret-pacs.example.com' "$W/nmap.txt"
# The explained difference (docs/diagnose.md): silent on example.test, which dodvpn transfers.
check "nmap's dns-zone-transfer is silent on example.test (the known difference)" bash -c "! grep -q 'secret-pacs' '$W/nmap-axfr-test.txt'"
check "nmap agrees: recursion" grep -q 'Recursion appears to be enabled' "$W/nmap.txt"
check "nmap agrees: open HTTP proxy (http-open-proxy)" grep -qi 'Potentially OPEN proxy' "$W/nmap.txt"
check "nmap agrees: chargen/daytime/echo ports open" bash -c "grep -q '^7/tcp *open' '$W/nmap.txt' && grep -q '^19/tcp *open' '$W/nmap.txt' && grep -q '^13/tcp *open' '$W/nmap.txt'"
check "nmap agrees: version.bind" grep -q 'bind.version: 9.99-diagnose-test' "$W/nmap.txt"
check "nmap agrees: TLS 1.0 offered" grep -q 'TLSv1.0' "$W/nmap.txt"
check "nmap agrees: SOCKS5 without authentication (-sV)" grep -Eq '^1080/tcp +open +socks5 .*No authentication' "$W/nmap.txt"
check "nmap agrees: open SOCKS proxy (socks-open-proxy)" bash -c "grep -q 'socks-open-proxy:' '$W/nmap-socks.txt' && grep -q 'status: open' '$W/nmap-socks.txt' && grep -q 'socks5' '$W/nmap-socks.txt'"
check "nmap agrees: SNMP public (snmp-info)" grep -q 'snmp-info' "$W/nmap.txt"
check "nmap agrees: UDP echo/chargen/daytime open" bash -c "grep -Eq '^7/udp +open ' '$W/nmap.txt' && grep -Eq '^19/udp +open ' '$W/nmap.txt' && grep -Eq '^13/udp +open ' '$W/nmap.txt'"
check "nmap agrees: expired certificate (ssl-cert)" grep -q 'commonName=expired.test' "$W/nmap.txt"
check "nmap agrees: anonymous/NULL suites (ssl-enum-ciphers)" grep -Eq '_(anon|NULL)_' "$W/nmap.txt"
check "nmap agrees: Apache directory listing (http-title Index of /)" grep -q 'Index of /' "$W/nmap.txt"
check "nmap agrees: VNC (RFB) on 5900" grep -Eq '^5900/tcp +open +vnc' "$W/nmap.txt"
check "nmap agrees: telnet on 23 (-sV)" grep -Eq '^23/tcp +open +telnet' "$W/nmap.txt"
check "nmap agrees: RDP on 3389 and SMB on 445 open" bash -c "grep -Eq '^3389/tcp +open ' '$W/nmap.txt' && grep -Eq '^445/tcp +open ' '$W/nmap.txt'"
check "nmap agrees: ICMP timestamp answered by the target only (-PP)" bash -c "grep -q 'report for $TGT' '$W/nmap-pp.txt' && ! grep -q 'report for $CLEAN' '$W/nmap-pp.txt'"
check "nmap agrees: the clean host shows no open port" bash -c "awk '/report for $CLEAN/{f=1} f' '$W/nmap.txt' | grep -vq '/tcp *open'"

# --- fix one thing (stop TCP echo: inetd rereads its configuration on SIGHUP), run again:
# fixed / unchanged
inetd_conf chargen/tcp daytime/tcp echo/udp chargen/udp daytime/udp
for pid in $(ip netns pids "$T"); do
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^inetd -i $W/inetd.conf" && kill -HUP "$pid"
done
netns_wait_for 10 bash -c "! ip netns exec $S bash -c 'exec 3<>/dev/tcp/$TGT/7' 2>/dev/null"
dv diagnose --org "$ORG" --ports $PORTS --canary $TGT:8081 --dns-zone example.test --dns-zone example.com --json >"$W/run2.json" 2>"$W/run2.err"
check "second run: echo is fixed" jqe '[.comparison.fixed[] | select(.check=="echo.tcp")] | length == 1' "$W/run2.json"
check "second run: anonymous FTP unchanged" jqe '[.comparison.unchanged[] | select(.check=="ftp.anonymous")] | length == 1' "$W/run2.json"
dv admin --json audit list >"$W/audit.json" 2>/dev/null
check "runs are audited with who and what" jqe '[.. | objects | select(.action? == "diagnose.run" and (.actor|startswith("admin:")) and (.details.targets == ["10.99.0.2","10.99.1.2"]))] | length == 2' "$W/audit.json"
check "address changes are audited" jqe '[.. | objects | select(.action? == "org.public_addresses_set")] | length == 1' "$W/audit.json"
check "the refused run left no record" jqe '[.. | objects | select(.action? == "diagnose.run")] | length == 2' "$W/audit.json"

netns_summary
