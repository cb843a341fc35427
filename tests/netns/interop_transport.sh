#!/usr/bin/env bash
# Interop, issue 16 (transport): dodvpn tunnel ↔ strongSwan (Debian's charon, kernel-libipsec)
# in two network namespaces, both directions, real ICMP and TCP (sha256 on both ends):
#
#   frag-*    RSA-4096 certificates with an intermediate CA, so IKE_AUTH (about 4.5 KB)
#             exceeds the MTU, over a path whose nftables drop every IP fragment
#             (`ip frag-off & 0x1fff != 0` and MF set): only IKE fragmentation (RFC 7383)
#             gets IKE_AUTH through. strongSwan `fragmentation = force` / `yes`.
#   v6-*      IPv6-only outer addresses (2001:db8:16::/64), IPv4 and IPv6 inner subnets.
#   chain1-*, chain2-*   each side's certificate issued by its own chain of one or two
#             intermediate CAs below a common root, which is all the other side trusts:
#             every CERT payload read, the chain built, our own chain sent.
#   certreq-*  the same with one intermediate and strongSwan `send_cert = ifasked` (routers'
#             default): strongSwan sends its chain only because dodvpn's CERTREQ asked.
#   sigterm-*, down-dv   SIGTERM to `dodvpn tunnel` (initiator / responder) and `dodvpn tunnel
#             down`: strongSwan gets the DELETE and lists no SA right after.
#
#   sudo bash tests/netns/interop_transport.sh             # all cases
#   sudo bash tests/netns/interop_transport.sh frag-dv-init v6-ss-init
#
# A = dodvpn (site 10.10.1.0/24, fd00:16:1::/64), B = strongSwan (10.10.2.0/24, fd00:16:2::/64).
# Prints "PASS <case>" / "FAIL <case>: reason" and "N passed, N failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$here/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools strongswan socat openssl nat
netns_trap_cleanup

MB="${TRANSFER_MB:-4}"
PSK="dodvpn-transport-$$-$RANDOM$RANDOM"
ALL_CASES=(frag-ss-init frag-dv-init v6-ss-init v6-dv-init chain1-ss-init chain1-dv-init
           chain2-ss-init chain2-dv-init certreq-ss-init certreq-dv-init sigterm-dv-init sigterm-ss-init down-dv)
V6_A=2001:db8:16::1 V6_B=2001:db8:16::2
SITE6_A=fd00:16:1::1 SITE6_B=fd00:16:2::1 SITE6_NET_A=fd00:16:1::/64 SITE6_NET_B=fd00:16:2::/64
fail() { echo "$*" >&2; return 1; }
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }

# chain_pki DIR KEYTYPE(rsa4096|ecdsa) DEPTH — a root (DIR/root.crt) and, for each side S in
# a b, DEPTH intermediates S-int1 (below the root) … S-intDEPTH and the end-entity S.test
# (SAN S.test, serverAuth+clientAuth); DIR/S-chain.pem holds the intermediates, the issuer
# of S.test first; DIR/S.p8 is the PKCS#8 key.
chain_pki() {
  local dir="$1" type="$2" depth="$3" s i parent
  mkdir -p "$dir"
  local -a alg=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256)
  [[ "$type" == rsa4096 ]] && alg=(-algorithm RSA -pkeyopt rsa_keygen_bits:4096)
  local ca_ext=$'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid'
  openssl genpkey "${alg[@]}" -out "$dir/root.key" 2>/dev/null &&
  openssl req -x509 -new -key "$dir/root.key" -subj "/CN=dodvpn transport root" -days 30 -sha256 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -addext subjectKeyIdentifier=hash -out "$dir/root.crt" 2>/dev/null || return 1
  issue() { # NAME PARENT EXT
    openssl genpkey "${alg[@]}" -out "$dir/$1.key" 2>/dev/null &&
    openssl req -new -key "$dir/$1.key" -subj "/CN=$1" -out "$dir/$1.csr" 2>/dev/null &&
    openssl x509 -req -in "$dir/$1.csr" -CA "$dir/$2.crt" -CAkey "$dir/$2.key" -CAcreateserial \
      -days 30 -sha256 -extfile <(printf '%s\n' "$3") -out "$dir/$1.crt" 2>/dev/null
  }
  for s in a b; do
    parent=root
    : >"$dir/$s-chain.pem"
    for ((i = 1; i <= depth; i++)); do
      issue "$s-int$i" "$parent" "$ca_ext" || return 1
      parent="$s-int$i"
      # issuer of the end-entity first
      cat "$dir/$s-int$i.crt" "$dir/$s-chain.pem" >"$dir/$s-chain.tmp" && mv "$dir/$s-chain.tmp" "$dir/$s-chain.pem"
    done
    issue "$s.test" "$parent" $'subjectAltName=DNS:'"$s"$'.test\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\nauthorityKeyIdentifier=keyid' || return 1
    openssl pkcs8 -topk8 -nocrypt -in "$dir/$s.test.key" -out "$dir/$s.p8" 2>/dev/null || return 1
  done
}

# A path that drops every IP fragment, in NS (before any defragmentation: priority -500).
drop_ip_fragments() {
  ip netns exec "$1" nft -f - <<'EOF'
table inet dvfrag {
  chain pre {
    type filter hook prerouting priority -500; policy accept;
    ip frag-off & 0x1fff != 0 counter drop
    ip frag-off & 0x2000 != 0 counter drop
    exthdr frag exists counter drop
  }
}
EOF
}

# pair6 A B — veth out0 with only IPv6 (2001:db8:16::1 / ::2), sites with IPv4 and IPv6.
pair6() {
  local a="$1" b="$2"
  _nl_ns_add "$a"; _nl_ns_add "$b"
  ip link add out0 netns "$a" type veth peer name out0 netns "$b" || return 1
  ip -n "$a" addr add "$V6_A/64" dev out0 nodad; ip -n "$a" link set out0 up
  ip -n "$b" addr add "$V6_B/64" dev out0 nodad; ip -n "$b" link set out0 up
  _nl_site "$a" "$NETNS_SITE_A"; _nl_site "$b" "$NETNS_SITE_B"
  ip -n "$a" addr add "$SITE6_A/64" dev site0 nodad
  ip -n "$b" addr add "$SITE6_B/64" dev site0 nodad
  netns_wait_for 5 ip netns exec "$a" ping -6 -c1 -W1 -q "$V6_B"
}

# tcp6_transfer SRC_NS DST_NS DST_ADDR SRC_ADDR MBYTES DIR PORT — tcp_transfer over IPv6 inner
tcp6_transfer() {
  local src="$1" dst="$2" daddr="$3" saddr="$4" mb="$5" dir="$6" port="$7"
  head -c "$((mb * 1024 * 1024))" /dev/urandom >"$dir/tx6.bin"; rm -f "$dir/rx6.bin"
  netns_spawn "$dst" "$dir/socat6-rx.log" timeout 120 socat -u \
    "TCP6-LISTEN:$port,bind=[$daddr],reuseaddr" "OPEN:$dir/rx6.bin,creat,trunc"
  local rxpid="$NETNS_LAST_PID"
  netns_wait_for 5 ip netns exec "$dst" sh -c "ss -ltn | grep -qF '[$daddr]:$port '" || { netns_kill "$rxpid"; return 1; }
  ip netns exec "$src" timeout 120 socat -u "OPEN:$dir/tx6.bin" "TCP6:[$daddr]:$port,bind=[$saddr]" 2>"$dir/socat6-tx.log" ||
    { netns_kill "$rxpid"; return 1; }
  local i; for ((i = 0; i < 200; i++)); do [[ -e /proc/$rxpid ]] || break; sleep 0.05; done
  netns_kill "$rxpid"
  [[ "$(sha256sum <"$dir/tx6.bin" | cut -d' ' -f1)" == "$(sha256sum <"$dir/rx6.bin" 2>/dev/null | cut -d' ' -f1)" ]]
}

# run_case NAME WHO(ss|dv initiates) VARIANT(frag|v6|chain1|chain2|certreq|sigterm|down)
run_case() {
  local name="$1" who="$2" variant="$3" ifasked=""
  [[ "$variant" == certreq ]] && variant=chain1 ifasked=1
  local h; h="$(printf '%s' "$name" | cksum | cut -c1-5)"
  local a="it${h}a$$" b="it${h}b$$" work db pk
  a="${a:0:14}"; b="${b:0:14}"
  work="$(netns_workdir "$name")"; db="$work/ss"; pk="$work/pki"; mkdir -p "$db"
  local oa ob lts_a lts_b
  if [[ "$variant" == v6 ]]; then
    pair6 "$a" "$b" >/dev/null || fail "IPv6 pair did not come up" || return 1
    oa="$V6_A" ob="$V6_B"
    lts_a="$NETNS_SITE_NET_A,$SITE6_NET_A" lts_b="$NETNS_SITE_NET_B,$SITE6_NET_B"
  else
    netns_pair "$a" "$b" >/dev/null
    oa="$OUTER_A" ob="$OUTER_B" lts_a="$NETNS_SITE_NET_A" lts_b="$NETNS_SITE_NET_B"
  fi
  local -a cb=(--local-addrs "$ob" --remote-addrs "$oa" --local-id b.test --remote-id a.test
               --local-ts "$lts_b" --remote-ts "$lts_a")
  local dvauth
  case "$variant" in
    frag|chain1|chain2)
      local type=ecdsa depth=1
      [[ "$variant" == frag ]] && type=rsa4096
      [[ "$variant" == chain2 ]] && depth=2
      chain_pki "$pk" "$type" "$depth" || fail "certificate generation failed" || return 1
      cb+=(--auth pubkey --cert "$pk/b.test.crt" --key "$pk/b.test.key" --cacert "$pk/root.crt")
      # strongSwan sends the intermediates it has (swanctl loads DIR/x509ca).
      mkdir -p "$db/x509ca"; cp "$pk"/b-int*.crt "$db/x509ca/"
      [[ -n "$ifasked" ]] && cb+=(--send-cert ifasked)
      dvauth="cert = \"$pk/a.test.crt\"
key = \"$pk/a.p8\"
ca = \"$pk/root.crt\"
chain = \"$pk/a-chain.pem\""
      if [[ "$variant" == frag ]]; then
        cb+=(--fragmentation "$([[ $who == ss ]] && echo force || echo yes)")
        drop_ip_fragments "$a" && drop_ip_fragments "$b" || fail "nft: cannot install the fragment drop" || return 1
        # The path really drops IP fragments: 1000 bytes pass, 2000 do not.
        ip netns exec "$a" ping -c1 -W1 -q -s 1000 "$ob" >/dev/null || fail "the path drops unfragmented packets" || return 1
        ! ip netns exec "$a" ping -c1 -W1 -q -s 2000 "$ob" >/dev/null || fail "IP fragments still pass the path" || return 1
      fi ;;
    *)
      cb+=(--auth psk --psk "$PSK"); dvauth="psk = \"$PSK\"" ;;
  esac
  swanctl_conf_write "$db/swanctl.conf" "${cb[@]}"
  local dv_lts="\"$NETNS_SITE_NET_A\"" dv_rts="\"$NETNS_SITE_NET_B\""
  [[ "$variant" == v6 ]] && dv_lts+=", \"$SITE6_NET_A\"" dv_rts+=", \"$SITE6_NET_B\""
  cat >"$work/a.toml" <<CONF
interface = "dvt"
control = "$work/a.sock"
[[connection]]
name = "strongswan"
local_addr = "$oa"
remote_addr = "$ob"
local_subnets = [$dv_lts]
remote_subnets = [$dv_rts]
local_id = "a.test"
remote_id = "b.test"
$dvauth
ike_proposals = ["aes128gcm16-prfsha256-ecp256"]
esp_proposals = ["aes128gcm16-ecp256", "aes128gcm16"]
start = "$([[ $who == dv ]] && echo trap || echo none)"
idle_timeout = "0s"
CONF
  strongswan_start "$b" "$db" || fail "charon did not start (see $db/charon.log)" || return 1
  netns_spawn "$a" "$work/a.log" env DODVPN_LOG=info "$DODVPN_BIN" tunnel --config "$work/a.toml"
  local dvpid="$NETNS_LAST_PID"
  netns_wait_for 10 grep -q ready "$work/a.log" || fail "dodvpn tunnel did not start: $(tail -3 "$work/a.log")" || return 1
  if [[ $who == ss ]]; then
    swanctl_initiate "$db" site 20 ||
      fail "strongSwan could not initiate: $(tail -n 5 "$db/swanctl-initiate.log" | tr '\n' ' ') | dodvpn: $(plain "$work/a.log" | grep -E 'WARN|ERROR|refused|failed' | tail -3 | tr '\n' ' ')" || return 1
  fi
  ip netns exec "$a" ping -c 3 -i 0.2 -W 5 -q -I "$NETNS_SITE_A" "$NETNS_SITE_B" >"$work/ping.log" 2>&1 ||
    fail "ping across failed: $(tail -n 2 "$work/ping.log" | tr '\n' ' ') | dodvpn: $(plain "$work/a.log" | grep -E 'WARN|ERROR|refused|failed' | tail -3 | tr '\n' ' ') | charon: $(grep -E 'received|failed|NO_PROP|AUTH|fragment' "$db/charon.log" | tail -4 | tr '\n' ' ')" || return 1
  local info=""
  case "$variant" in
    frag)
      # Both sides cut IKE_AUTH and put the other's fragments together.
      grep -q "splitting IKE message" "$db/charon.log" || fail "strongSwan did not fragment its IKE_AUTH" || return 1
      grep -q "reassembled fragmented IKE message" "$db/charon.log" || fail "strongSwan received no fragmented IKE message from dodvpn" || return 1
      info="$(grep -m1 -o 'splitting IKE message ([0-9]* bytes) into [0-9]* fragments' "$db/charon.log"); $(grep -m1 -o 'reassembled fragmented IKE message ([0-9]* bytes)' "$db/charon.log")" ;;
    chain1|chain2)
      # strongSwan built dodvpn's chain from what dodvpn sent (it has only the root of it).
      local n=1; [[ "$variant" == chain2 ]] && n=2
      local got sent
      got="$(grep -c "received issuer cert \"CN=a-int" "$db/charon.log")"
      ((got >= n)) || fail "strongSwan received $got of dodvpn's $n intermediates" || return 1
      # ... and dodvpn, which trusts only the root too, took strongSwan's chain (the SA is up).
      sent="$(grep -c "sending issuer cert \"CN=b-int" "$db/charon.log")"
      ((sent >= n)) || fail "strongSwan sent $sent of its $n intermediates" || return 1
      grep -q 'reached self-signed root ca with a path length of '"$n" "$db/charon.log" ||
        fail "strongSwan did not build a path of length $n: $(grep -m3 'path length\|using trusted' "$db/charon.log" | tr '\n' ' ')" || return 1
      info="path length $n both ways"
      if [[ -n "$ifasked" ]]; then
        grep -q 'received cert request for "CN=dodvpn transport root"' "$db/charon.log" ||
          fail "strongSwan got no CERTREQ for the root from dodvpn" || return 1
        grep -q "send_cert = CERT_SEND_IF_ASKED" "$db/charon.log" || fail "strongSwan not configured ifasked" || return 1
        info+="; strongSwan (send_cert = ifasked) sent its chain on dodvpn's CERTREQ"
      fi ;;
  esac
  case "$variant" in
    sigterm)
      local t0=$EPOCHREALTIME
      kill -TERM "$dvpid"
      netns_wait_for 3 sh -c "[ \"\$(swanctl --list-sas --uri unix://$db/charon.vici 2>/dev/null | grep -c ESTABLISHED)\" = 0 ]" ||
        fail "strongSwan still lists an IKE SA 3 s after SIGTERM: $(swanctl_list_sas "$db" | head -3 | tr '\n' ' ')" || return 1
      local dt; dt="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b - a}')"
      grep -q "received DELETE for IKE_SA" "$db/charon.log" || fail "charon logged no DELETE from dodvpn" || return 1
      netns_wait_for 5 sh -c "! kill -0 $dvpid 2>/dev/null" || fail "dodvpn did not exit within 5 s of SIGTERM" || return 1
      plain "$work/a.log" | grep -q "deleted 1 IKE SA" || fail "dodvpn did not report its DELETE: $(tail -3 "$work/a.log" | tr '\n' ' ')" || return 1
      echo "no SA at strongSwan ${dt} s after SIGTERM" >"$INFO"; return 0 ;;
    down)
      "$DODVPN_BIN" tunnel down --control "$work/a.sock" >"$work/down.log" 2>&1 || fail "tunnel down failed: $(cat "$work/down.log")" || return 1
      netns_wait_for 3 sh -c "[ \"\$(swanctl --list-sas --uri unix://$db/charon.vici 2>/dev/null | grep -c ESTABLISHED)\" = 0 ]" ||
        fail "strongSwan still lists an IKE SA after tunnel down" || return 1
      grep -q "received DELETE for IKE_SA" "$db/charon.log" || fail "charon logged no DELETE from dodvpn" || return 1
      echo "$(cat "$work/down.log"); strongSwan lists no SA" >"$INFO"; return 0 ;;
  esac
  tcp_transfer "$a" "$b" "$NETNS_SITE_B" "$NETNS_SITE_A" "$MB" "$work" 5001 >/dev/null 2>&1 ||
    fail "TCP transfer of $MB MiB failed or sha256 differs" || return 1
  tcp_transfer "$b" "$a" "$NETNS_SITE_A" "$NETNS_SITE_B" "$MB" "$work" 5002 >/dev/null 2>&1 ||
    fail "TCP transfer back of $MB MiB failed or sha256 differs" || return 1
  if [[ "$variant" == v6 ]]; then
    ip netns exec "$a" ping -6 -c 3 -i 0.2 -W 5 -q -I "$SITE6_A" "$SITE6_B" >"$work/ping6.log" 2>&1 ||
      fail "IPv6 inner ping failed: $(tail -n 2 "$work/ping6.log" | tr '\n' ' ')" || return 1
    tcp6_transfer "$a" "$b" "$SITE6_B" "$SITE6_A" "$MB" "$work" 5003 >/dev/null 2>&1 ||
      fail "IPv6 inner TCP transfer failed or sha256 differs" || return 1
    tcp6_transfer "$b" "$a" "$SITE6_A" "$SITE6_B" "$MB" "$work" 5004 >/dev/null 2>&1 ||
      fail "IPv6 inner TCP transfer back failed or sha256 differs" || return 1
    swanctl_list_sas "$db" | grep -q "remote 'a.test' @ $V6_A\[" ||
      fail "strongSwan does not see dodvpn at $V6_A: $(swanctl_list_sas "$db" | head -2 | tr '\n' ' ')" || return 1
    info="outer $V6_A <-> $V6_B, inner IPv4 and IPv6"
  fi
  echo "$info" >"$INFO"
}

cases=("$@")
((${#cases[@]})) || cases=("${ALL_CASES[@]}")
echo "interop (transport): $(swanctl --version 2>/dev/null | head -1), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
INFO="${TMPDIR:-/tmp}/interop-transport-$$.info"
for c in "${cases[@]}"; do
  : >"$INFO"
  ( case "$c" in
      frag-ss-init)    run_case "$c" ss frag ;;
      frag-dv-init)    run_case "$c" dv frag ;;
      v6-ss-init)      run_case "$c" ss v6 ;;
      v6-dv-init)      run_case "$c" dv v6 ;;
      chain1-ss-init)  run_case "$c" ss chain1 ;;
      chain1-dv-init)  run_case "$c" dv chain1 ;;
      chain2-ss-init)  run_case "$c" ss chain2 ;;
      chain2-dv-init)  run_case "$c" dv chain2 ;;
      certreq-ss-init) run_case "$c" ss certreq ;;
      certreq-dv-init) run_case "$c" dv certreq ;;
      sigterm-dv-init) run_case "$c" dv sigterm ;;
      sigterm-ss-init) run_case "$c" ss sigterm ;;
      down-dv)         run_case "$c" dv down ;;
      *) echo "unknown case $c" >&2; exit 1 ;;
    esac ) 2>"$INFO.err"
  if [[ $? == 0 ]]; then result 0 "$c ($(cat "$INFO"))"
  else result 1 "$c" "$(tail -n 3 "$INFO.err" | tr '\n' ' ')"; fi
  cleanup_all >/dev/null 2>&1; _nl_init 2>/dev/null || true
done
rm -f "$INFO" "$INFO.err"
netns_summary
