#!/usr/bin/env bash
# Exposure-diagnosis benchmark (issue 14, R-SVC-5): `dodvpn diagnose` beside `nmap -sT`
# with the same scripts, on targets in namespaces of this script's own. Needs root.
#
#   sudo bash bench/diagnose.sh [RUNS]      # RUNS per case (default 3); medians printed
#
#   scanner (dbs) 10.98.0.200 ── target (dbt): 10.98.0.16/28 (all 16 addresses), each
#                                answering on TCP 7 (echo), 21 (vsftpd-like banner via
#                                socat), 80 (python http.server), 443 (openssl s_server)
#   Case A: one host (10.98.0.16), TCP ports 1-1000.
#   Case B: the /28 (its 14 host addresses: the scope leaves out network and broadcast), TCP 1-1000.
# dodvpn: the debug build (`target/debug/dodvpn`, or $DODVPN_BIN), --no-post, default
# rate 100 probes/s per target, and again at --rate 1000; nmap: -sT -n -Pn with
# banner,ssl-enum-ciphers,ftp-anon,http-title and again with --max-rate 100 (nmap's rate
# is per scan, not per target). The centre runs in the scanner namespace on loopback only
# to give the scope. Writes bench/results/diagnose-<timestamp>.txt.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
. "$REPO/tests/netns/lib.sh"
RUNS="${1:-3}"
DODVPN_BIN="${DODVPN_BIN:-$REPO/target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools socat python openssl diagnose
netns_trap_cleanup

S=dbs$$; T=dbt$$
W="$(netns_workdir bench)"
_nl_ns_add "$S"; _nl_ns_add "$T"
_nl_veth "$S" t0 10.98.0.200/24 "$T" s0 10.98.0.16/24 1500
ip -n "$S" link set lo up; ip -n "$T" link set lo up
for i in $(seq 17 31); do ip -n "$T" addr add 10.98.0.$i/24 dev s0; done

netns_spawn "$T" "$W/echo.log" socat TCP-LISTEN:7,fork,reuseaddr EXEC:cat
netns_spawn "$T" "$W/ftp.log" socat TCP-LISTEN:21,fork,reuseaddr SYSTEM:"printf '220 bench FTP\\\\r\\\\n'; sleep 1"
mkdir -p "$W/www"; echo hi >"$W/www/index.html"
netns_spawn "$T" "$W/http.log" python3 -m http.server 80 --directory "$W/www"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/k.pem" -out "$W/c.pem" -days 2 -subj /CN=bench >/dev/null 2>&1
netns_spawn "$T" "$W/tls.log" openssl s_server -accept 443 -cert "$W/c.pem" -key "$W/k.pem" -www -quiet
for p in 7 21 80 443; do netns_wait_for 15 ip netns exec "$S" bash -c "exec 3<>/dev/tcp/10.98.0.31/$p"; done

netns_spawn "$S" "$W/center.log" "$DODVPN_BIN" center --data "$W/center" --listen 127.0.0.1:18444
netns_wait_for 30 test -f "$W/center/admin.token"; sleep 1
dv() { ip netns exec "$S" env DODVPN_CENTER=https://127.0.0.1:18444 DODVPN_CA="$W/center/pki/root.pem" DODVPN_ADMIN_CREDENTIAL_FILE="$W/center/admin.token" "$DODVPN_BIN" "$@"; }
netns_wait_for 30 dv admin org list >/dev/null
ORG="$(dv admin --json org create "Bench Hospital" --kind hospital | jq -r .id)"
dv admin org public-addresses set "$ORG" 10.98.0.16/28 >/dev/null

# time CMD... -> seconds (3 decimals) on stdout; the command's output goes to $W/last.out
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >"$W/last.out" 2>&1; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
SCRIPTS=banner,ssl-enum-ciphers,ftp-anon,http-title
OUT="$REPO/bench/results/diagnose-$(date -u +%Y%m%dT%H%M%SZ).txt"; mkdir -p "$REPO/bench/results"
row() { # NAME CMD...
  local name="$1"; shift; local all=""
  for _ in $(seq "$RUNS"); do all="$all $(secs "$@")"; done
  printf '%-58s median %7s s   runs:%s\n' "$name" "$(echo "$all" | median)" "$all" | tee -a "$OUT"
}
{ echo "diagnose benchmark $(date -u), $(nproc) cores, $RUNS runs per case, dodvpn $("$DODVPN_BIN" --version 2>/dev/null), $(nmap --version | head -1)"; } | tee "$OUT"
for case in "A 10.98.0.16" "B 10.98.0.16/28"; do
  set -- $case; c=$1; tgt=$2
  echo "== case $c: $tgt, TCP 1-1000" | tee -a "$OUT"
  row "dodvpn diagnose (rate 100/s per target)" dv diagnose --org "$ORG" --no-post --no-udp --ports 1-1000 "$tgt"
  grep -q 'probes' "$W/last.out" && grep -m1 'probes' "$W/last.out" | tee -a "$OUT"
  row "dodvpn diagnose --rate 1000" dv diagnose --org "$ORG" --no-post --no-udp --rate 1000 --ports 1-1000 "$tgt"
  row "nmap -sT + scripts" ip netns exec "$S" nmap -n -Pn -sT -p 1-1000 --script $SCRIPTS "$tgt"
  row "nmap -sT + scripts --max-rate 100" ip netns exec "$S" nmap -n -Pn -sT -p 1-1000 --max-rate 100 --script $SCRIPTS "$tgt"
  row "nmap -sT (no scripts)" ip netns exec "$S" nmap -n -Pn -sT -p 1-1000 "$tgt"
done
echo "results: $OUT"
