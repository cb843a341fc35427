#!/usr/bin/env bash
# Interop: dodvpn tunnel ↔ strongSwan (Debian's charon with kernel-libipsec) in two
# network namespaces, both directions, real ICMP and TCP (sha256 compared on both ends).
#
#   sudo bash tests/netns/interop_strongswan.sh            # all cases
#   sudo bash tests/netns/interop_strongswan.sh psk-ss-init
#
# A = dodvpn (192.0.2.1, site 10.10.1.0/24), B = strongSwan (192.0.2.2, site 10.10.2.0/24).
# Prints "PASS <case>" / "FAIL <case>: reason" and "N passed, N failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$here/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools strongswan socat openssl nat
netns_trap_cleanup

MB="${TRANSFER_MB:-8}"
PSK="dodvpn-interop-$$-$RANDOM$RANDOM"
# Rekey under load, both ways: strongSwan's timers (rekey-under-load-ss) and dodvpn's
# (rekey-under-load-dv) rekey the child SA (with PFS) and the IKE SA during a rate-limited
# TCP transfer of ~35 s. Lifetimes: strongSwan keeps its times in whole seconds and makes the
# IKE over_time (hard lifetime − rekey time) 10 % of rekey_time, so below 10 s it is 0 and
# charon deletes its own freshly rekeyed IKE SA ("maximum IKE_SA lifetime"). With 12 s child
# rekeys (life_time 14 s, i.e. 10–12 s with the random share) and 20 s IKE rekeys (over_time 2 s)
# it rekeys cleanly, and a 35 s transfer spans ≥ 2 child rekeys and ≥ 1 IKE rekey.
REKEY_CHILD=12 REKEY_IKE=20 REKEY_RATE="${REKEY_RATE:-10mbit}" REKEY_MB="${REKEY_MB:-40}"
ALL_CASES=(psk-ss-init psk-dv-init ecdsa-ss-init ecdsa-dv-init rsa-ss-init rsa-dv-init rsa-pss-ss-init
           rsa-pss-dv-init aes256-ecp384-dv-init chacha-x25519-ss-init nat-dv-init dv-idle-delete
           rekey-under-load-ss rekey-under-load-dv mobike-dv-move reconnect-no-mobike)
# A move (issue 19 item 4): dodvpn's outer address changes from OUTER_A to MOVED_TO.
MOVED_TO=192.0.2.3 MOVE_RATE="${MOVE_RATE:-10mbit}"
# …and strongSwan's (as the initiator, the side MOBIKE lets move) from OUTER_B to PEER_MOVED_TO.
PEER_MOVED_TO=192.0.2.4
fail() { echo "$*" >&2; return 1; }
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }   # dodvpn's log without colours

# run_case NAME AUTH(psk|ecdsa|rsa|rsa-pss) WHO(ss|dv initiates) SUITE DH(ecp256|ecp384|curve25519) [VARIANT]
#   AUTH rsa: RSA-3072 certificates, RSASSA-PKCS1-v1_5 SHA-256 (RFC 7427) both ways;
#   rsa-pss: the same keys, dodvpn signs RSASSA-PSS and strongSwan signs rsa/pss-sha256 and
#   demands it in dodvpn's AUTH (ike:rsa/pss-sha256).
#   VARIANT: rekey-ss / rekey-dv (strongSwan's / dodvpn's timers rekey the child and the IKE SA,
#            with PFS, during a long rate-limited transfer),
#            nat (dodvpn behind a masquerading NAT), idle (dodvpn deletes after 3 s idle),
#            move (dodvpn's address changes during a rate-limited transfer: MOBIKE moves
#            the IKE SA, strongSwan follows), move-no-mobike (strongSwan with mobike = no,
#            as a standard router: the next packet after the change brings a new IKE SA),
#            peer-move (strongSwan initiated, its address changes during a transfer: its
#            UPDATE_SA_ADDRESSES moves dodvpn's responder SA and ESP)
run_case() {
  local name="$1" auth="$2" who="$3" suite="$4" dh="$5" variant="${6:-}"
  local h; h="$(printf '%s' "$name" | cksum | cut -c1-5)"
  local a="io${h}a$$" b="io${h}b$$" work db pk
  a="${a:0:14}"; b="${b:0:14}"
  work="$(netns_workdir "$name")"; db="$work/ss"; pk="$work/pki"; mkdir -p "$db"
  local n="io${h}n$$"; n="${n:0:14}"
  local dv_addr
  if [[ "$variant" == nat ]]; then netns_nat "$a" "$n" "$b" >/dev/null; else netns_pair "$a" "$b" >/dev/null; fi
  dv_addr="$OUTER_A"; [[ "$variant" == nat ]] && dv_addr="$NETNS_PRIV_A"
  local prf=prfsha256; [[ "$dh" == ecp384 ]] && prf=prfsha384
  local dvdh="$dh"; [[ "$dh" == curve25519 ]] && dvdh=x25519
  local -a cb=(--local-addrs "$([[ $variant == peer-move ]] && echo %any || echo "$OUTER_B")" --remote-addrs "$([[ $variant == nat || $variant == move* ]] && echo %any || echo "$OUTER_A")" --local-id b.test --remote-id a.test
               --local-ts "$SITE_NET_B" --remote-ts "$SITE_NET_A" --ike "$suite-$prf-$dh" --esp "$suite-$dh")
  local dvauth
  case "$auth" in
    psk)
      cb+=(--auth psk --psk "$PSK"); dvauth="psk = \"$PSK\"" ;;
    ecdsa|rsa|rsa-pss)
      pki_make "$pk" "${auth%-pss}" a.test b.test
      openssl pkcs8 -topk8 -nocrypt -in "$pk/a.test.key" -out "$pk/a.p8" 2>/dev/null
      cb+=(--auth pubkey --cert "$pk/b.test.crt" --key "$pk/b.test.key" --cacert "$pk/ca.crt")
      [[ "$auth" == rsa-pss ]] && cb+=(--pubkey-auth rsa/pss-sha256 --remote-pubkey-auth ike:rsa/pss-sha256)
      dvauth="cert = \"$pk/a.test.crt\"
key = \"$pk/a.p8\"
ca = \"$pk/ca.crt\"
rsa_signature = \"$([[ $auth == rsa-pss ]] && echo pss || echo pkcs1)\"" ;;
  esac
  [[ "$variant" == move-no-mobike ]] && cb+=(--mobike no)
  [[ "$variant" == rekey-ss ]] && cb+=(--rekey-time "${REKEY_CHILD}s" --life-time "$((REKEY_CHILD + 2))s" --ike-rekey-time "${REKEY_IKE}s")
  local dvrekey=""
  [[ "$variant" == rekey-dv ]] && dvrekey="rekey_time = \"${REKEY_CHILD}s\"
ike_rekey_time = \"${REKEY_IKE}s\""
  swanctl_conf_write "$db/swanctl.conf" "${cb[@]}"
  cat >"$work/a.toml" <<CONF
interface = "dvi"
control = "$work/a.sock"
[[connection]]
name = "strongswan"
local_addr = "$dv_addr"
remote_addr = "$OUTER_B"
local_subnets = ["$SITE_NET_A"]
remote_subnets = ["$SITE_NET_B"]
local_id = "a.test"
remote_id = "b.test"
$dvauth
ike_proposals = ["$suite-$prf-$dvdh"]
esp_proposals = ["$suite-$dvdh", "$suite"]
start = "$([[ $who == dv ]] && echo trap || echo none)"
idle_timeout = "$([[ $variant == idle ]] && echo 3s || echo 0s)"
$dvrekey
CONF
  strongswan_start "$b" "$db" || fail "charon did not start (see $db/charon.log)" || return 1
  netns_spawn "$a" "$work/a.log" env DODVPN_LOG=info "$DODVPN_BIN" tunnel --config "$work/a.toml"
  netns_wait_for 10 grep -q ready "$work/a.log" || fail "dodvpn tunnel did not start: $(tail -3 "$work/a.log")" || return 1
  if [[ $who == ss ]]; then
    swanctl_initiate "$db" site 15 ||
      fail "strongSwan could not initiate: $(tail -n 5 "$db/swanctl-initiate.log" | tr '\n' ' ') | dodvpn: $(tail -3 "$work/a.log" | tr '\n' ' ')" || return 1
  fi
  ip netns exec "$a" ping -c 3 -i 0.2 -W 3 -q -I "$SITE_A" "$SITE_B" >"$work/ping.log" 2>&1 ||
    fail "ping across failed: $(tail -n 2 "$work/ping.log" | tr '\n' ' ') | dodvpn: $(grep -E 'WARN|ERROR|refused|failed' "$work/a.log" | tail -3 | tr '\n' ' ') | charon: $(grep -E 'received|failed|NO_PROP|AUTH' "$db/charon.log" | tail -4 | tr '\n' ' ')" || return 1
  if [[ "$auth" == rsa* ]]; then
    # strongSwan names the scheme dodvpn's AUTH used (RFC 7427 AlgorithmIdentifier).
    local scheme=RSA_EMSA_PKCS1_SHA2_256; [[ "$auth" == rsa-pss ]] && scheme=RSA_EMSA_PSS
    grep -q "authentication of 'a.test' with $scheme" "$db/charon.log" ||
      fail "charon did not verify dodvpn's AUTH as $scheme: $(grep -m2 "authentication of 'a.test'" "$db/charon.log" | tr '\n' ' ')" || return 1
  fi
  local mb="$MB" st0="" rkinfo=""
  if [[ "$variant" == move* ]]; then
    local ike0 ike1 mv=(ip -n "$a" -batch -)
    ike0="$("$DODVPN_BIN" tunnel status --control "$work/a.sock" --json | jq -r '.connections[0].ike_sa')"
    move() { printf 'addr del %s/%s dev out0\naddr add %s/%s dev out0\n' "$OUTER_A" "$NETNS_OUTER_PFX" "$MOVED_TO" "$NETNS_OUTER_PFX" | "${mv[@]}"; }
    if [[ "$variant" == move ]]; then
      ip netns exec "$a" tc qdisc add dev out0 root tbf rate "$MOVE_RATE" burst 64kb latency 100ms || fail "tc tbf failed" || return 1
      (sleep 2; move) &
      local mover=$! t1=$SECONDS
      tcp_transfer "$a" "$b" "$SITE_B" "$SITE_A" "$mb" "$work" 5003 >/dev/null 2>&1 ||
        fail "TCP transfer of $mb MiB across the move failed or sha256 differs (after $((SECONDS - t1)) s)" || return 1
      wait "$mover"
      ip netns exec "$a" tc qdisc del dev out0 root
      ((SECONDS - t1 > 3)) || fail "the transfer ended before the move" || return 1
      ike1="$("$DODVPN_BIN" tunnel status --control "$work/a.sock" --json | jq -r '.connections[0].ike_sa')"
      [[ "$ike0" == "$ike1" && "$ike1" != null ]] || fail "the IKE SA changed across the move: $ike0 -> $ike1" || return 1
      grep -q 'UPD_SA_ADDR' "$db/charon.log" || fail "charon saw no UPDATE_SA_ADDRESSES" || return 1
      plain "$work/a.log" | grep -q 'moving the IKE SA with MOBIKE' || fail "dodvpn did not log the move" || return 1
      rkinfo="moved to $MOVED_TO during $((SECONDS - t1)) s, IKE SA $ike1 kept"
    else
      move
      netns_wait_for 5 sh -c "sed 's/\x1b\[[0-9;]*m//g' '$work/a.log' | grep -q 'reconnecting on demand'" ||
        fail "dodvpn did not notice its new address: $(tail -3 "$work/a.log" | tr '\n' ' ')" || return 1
      ip netns exec "$a" ping -c 3 -i 0.2 -W 3 -q -I "$SITE_A" "$SITE_B" >"$work/ping2.log" 2>&1 ||
        fail "no new tunnel on demand after the move: $(tail -n 2 "$work/ping2.log" | tr '\n' ' ')" || return 1
      ike1="$("$DODVPN_BIN" tunnel status --control "$work/a.sock" --json | jq -r '.connections[0].ike_sa')"
      [[ "$ike0" != "$ike1" && "$ike1" != null ]] || fail "no new IKE SA: $ike0 -> $ike1" || return 1
      grep -q 'UPD_SA_ADDR' "$db/charon.log" && { fail "dodvpn sent UPDATE_SA_ADDRESSES to a peer without MOBIKE"; return 1; }
      rkinfo="reconnected from $MOVED_TO, IKE SA $ike0 -> $ike1"
    fi
    swanctl_list_sas "$db" | grep -q "remote 'a.test' @ $MOVED_TO\[" ||
      fail "strongSwan does not see dodvpn at $MOVED_TO: $(swanctl_list_sas "$db" | grep remote | tr '\n' ' ')" || return 1
  fi
  if [[ "$variant" == peer-move ]]; then
    local pike0 pike1 mover t1
    pike0="$("$DODVPN_BIN" tunnel status --control "$work/a.sock" --json | jq -r '.connections[0].ike_sa')"
    ip netns exec "$a" tc qdisc add dev out0 root tbf rate "$MOVE_RATE" burst 64kb latency 100ms || fail "tc tbf failed" || return 1
    (sleep 2; printf 'addr del %s/%s dev out0\naddr add %s/%s dev out0\n' "$OUTER_B" "$NETNS_OUTER_PFX" "$PEER_MOVED_TO" "$NETNS_OUTER_PFX" | ip -n "$b" -batch -) &
    mover=$! t1=$SECONDS
    tcp_transfer "$a" "$b" "$SITE_B" "$SITE_A" "$mb" "$work" 5004 >/dev/null 2>&1 ||
      fail "TCP transfer of $mb MiB across strongSwan's move failed or sha256 differs (after $((SECONDS - t1)) s) | charon: $(grep -E 'UPD_SA|roam|path|address' "$db/charon.log" | tail -3 | tr '\n' ' ')" || return 1
    wait "$mover"
    ip netns exec "$a" tc qdisc del dev out0 root
    pike1="$("$DODVPN_BIN" tunnel status --control "$work/a.sock" --json | jq -r '.connections[0].ike_sa')"
    [[ "$pike0" == "$pike1" && "$pike1" != null ]] || fail "the IKE SA changed across strongSwan's move: $pike0 -> $pike1" || return 1
    grep -q 'UPD_SA_ADDR' "$db/charon.log" || fail "charon sent no UPDATE_SA_ADDRESSES" || return 1
    plain "$work/a.log" | grep 'IKE SA moved to new addresses' | grep -q "peer=$PEER_MOVED_TO:" ||
      fail "dodvpn did not follow strongSwan to $PEER_MOVED_TO" || return 1
    rkinfo="strongSwan moved to $PEER_MOVED_TO during $((SECONDS - t1)) s, IKE SA $pike1 kept"
  fi
  if [[ "$variant" == rekey-* ]]; then
    mb="$REKEY_MB"
    # Rate-limit A's side so the transfer outlasts two child rekeys and one IKE rekey.
    ip netns exec "$a" tc qdisc add dev out0 root tbf rate "$REKEY_RATE" burst 64kb latency 100ms ||
      fail "tc tbf failed" || return 1
    st0="$("$DODVPN_BIN" tunnel status --control "$work/a.sock" --json)"
  fi
  local t0=$SECONDS
  tcp_transfer "$a" "$b" "$SITE_B" "$SITE_A" "$mb" "$work" 5001 >/dev/null 2>&1 ||
    fail "TCP transfer of $mb MiB failed or sha256 differs (after $((SECONDS - t0)) s)" || return 1
  if [[ "$variant" == rekey-* ]]; then
    ip netns exec "$a" tc qdisc del dev out0 root
    local st1 rk ik dvrk dvik spi0 spi1 ike0 ike1
    st1="$("$DODVPN_BIN" tunnel status --control "$work/a.sock" --json)"
    rk="$(grep -c 'inbound CHILD_SA .* established' "$db/charon.log")"   # charon 5.9: rekeyed children only
    ik="$(grep -c 'IKE_SA .* rekeyed\|rekeyed IKE_SA\|IKE_SA rekeyed' "$db/charon.log")"
    dvrk="$(plain "$work/a.log" | grep -c 'child SA installed.*rekey_of=Some')"
    dvik="$(plain "$work/a.log" | grep -c 'IKE SA rekeyed')"
    spi0="$(jq -r '.connections[0].children[0].spi_in' <<<"$st0")" spi1="$(jq -r '[.connections[0].children[].spi_in] | join(",")' <<<"$st1")"
    ike0="$(jq -r '.connections[0].ike_sa' <<<"$st0")" ike1="$(jq -r '.connections[0].ike_sa' <<<"$st1")"
    ((rk >= 2 && ik >= 1 && dvrk >= 2 && dvik >= 1)) ||
      fail "too few rekeys during the $((SECONDS - t0)) s transfer (strongSwan: child $rk, IKE $ik; dodvpn: child $dvrk, IKE $dvik)" || return 1
    [[ "$spi1" != *"$spi0"* && "$spi1" != "" && "$spi1" != null ]] || fail "child SPI unchanged: $spi0 -> $spi1" || return 1
    [[ "$ike0" != "$ike1" && "$ike1" != null ]] || fail "IKE SPIs unchanged: $ike0 -> $ike1" || return 1
    # The side with the short timers started the CREATE_CHILD_SA exchanges (2 child + 1 IKE).
    local who_rk
    if [[ "$variant" == rekey-ss ]]; then who_rk="$(grep -c 'generating CREATE_CHILD_SA request' "$db/charon.log")"
    else who_rk="$(grep -c 'parsed CREATE_CHILD_SA request' "$db/charon.log")"; fi
    ((who_rk >= 3)) || fail "$variant: only $who_rk CREATE_CHILD_SA exchanges started by the expected side" || return 1
    local errs
    errs="$(plain "$work/a.log" | grep -E ' (WARN|ERROR) ' | head -3; grep -iE 'failed|error|expired|TEMPORARY_FAILURE|NO_PROPOSAL|INVALID_|CHILD_SA_NOT_FOUND|retransmit' "$db/charon.log" | head -3)"
    [[ -z "$errs" ]] || fail "errors in the logs: $errs" || return 1
    rkinfo="$((SECONDS - t0)) s transfer: child rekeys $dvrk, IKE rekeys $dvik; SPI $spi0 -> $spi1, IKE $ike0 -> $ike1"
    echo "$rkinfo" >&2
  fi
  if [[ "$variant" == nat ]]; then
    swanctl_list_sas "$db" | grep -q "remote 'a.test' @ $NAT_PUBLIC\[" ||
      fail "strongSwan does not see dodvpn behind the NAT ($NAT_PUBLIC)" || return 1
  fi
  if [[ "$variant" == idle ]]; then
    netns_wait_for 15 sh -c "[ \"\$(swanctl --list-sas --uri unix://$db/charon.vici 2>/dev/null | grep -c ESTABLISHED)\" = 0 ]" ||
      fail "dodvpn's idle delete did not reach strongSwan" || return 1
    echo "IDLE" >"$INFO"; return 0
  fi
  tcp_transfer "$b" "$a" "$SITE_A" "$SITE_B" "$MB" "$work" 5002 >/dev/null 2>&1 ||
    fail "TCP transfer back of $MB MiB failed or sha256 differs" || return 1
  local sas; sas="$(swanctl_list_sas "$db")"
  grep -q "TUNNEL-in-UDP" <<<"$sas" || fail "strongSwan shows no UDP-encapsulated tunnel: $sas" || return 1
  # Delete from strongSwan's side: dodvpn must drop the SAs.
  swanctl_terminate "$db" tun 10 >/dev/null 2>&1
  netns_wait_for 10 sh -c "\"$DODVPN_BIN\" tunnel status --control \"$work/a.sock\" --json | jq -e '.connections[0].children | length == 0' >/dev/null" ||
    fail "dodvpn kept its child SA after strongSwan deleted the IKE SA" || return 1
  echo "$(grep -m1 -oE '(AES|CHACHA)[A-Z0-9_/-]+' <<<"$sas")${rkinfo:+; $rkinfo}" >"$INFO"
}

cases=("$@")
((${#cases[@]})) || cases=("${ALL_CASES[@]}")
echo "interop: $(swanctl --version 2>/dev/null | head -1), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
INFO="${TMPDIR:-/tmp}/interop-$$.info"
for c in "${cases[@]}"; do
  : >"$INFO"
  ( case "$c" in
      psk-ss-init)            run_case "$c" psk ss aes128gcm16 ecp256 ;;
      psk-dv-init)            run_case "$c" psk dv aes128gcm16 ecp256 ;;
      ecdsa-ss-init)          run_case "$c" ecdsa ss aes128gcm16 ecp256 ;;
      ecdsa-dv-init)          run_case "$c" ecdsa dv aes128gcm16 ecp256 ;;
      rsa-ss-init)            run_case "$c" rsa ss aes128gcm16 ecp256 ;;
      rsa-dv-init)            run_case "$c" rsa dv aes128gcm16 ecp256 ;;
      rsa-pss-ss-init)        run_case "$c" rsa-pss ss aes128gcm16 ecp256 ;;
      rsa-pss-dv-init)        run_case "$c" rsa-pss dv aes128gcm16 ecp256 ;;
      aes256-ecp384-dv-init)  run_case "$c" psk dv aes256gcm16 ecp384 ;;
      chacha-x25519-ss-init)  run_case "$c" psk ss chacha20poly1305 curve25519 ;;
      rekey-under-load|rekey-under-load-ss) run_case "$c" psk ss aes128gcm16 ecp256 rekey-ss ;;
      rekey-under-load-dv)    run_case "$c" psk dv aes128gcm16 ecp256 rekey-dv ;;
      nat-dv-init)            run_case "$c" psk dv aes128gcm16 ecp256 nat ;;
      dv-idle-delete)         run_case "$c" psk dv aes128gcm16 ecp256 idle ;;
      mobike-dv-move)         run_case "$c" psk dv aes128gcm16 ecp256 move ;;
      reconnect-no-mobike) run_case "$c" psk dv aes128gcm16 ecp256 move-no-mobike ;;
      mobike-ss-move)         run_case "$c" psk ss aes128gcm16 ecp256 peer-move ;;
      *) echo "unknown case $c" >&2; exit 1 ;;
    esac ) 2>"$INFO.err"
  if [[ $? == 0 ]]; then result 0 "$c ($(cat "$INFO"))"
  else result 1 "$c" "$(tail -n 3 "$INFO.err" | tr '\n' ' ')"; fi
  cleanup_all >/dev/null 2>&1; _nl_init 2>/dev/null || true
done
rm -f "$INFO" "$INFO.err"
netns_summary
