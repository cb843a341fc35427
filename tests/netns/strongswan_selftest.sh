#!/usr/bin/env bash
# Self-test of the namespace harness (tests/netns/lib.sh): strongSwan <-> strongSwan
# (kernel-libipsec, userspace ESP-in-UDP) between two network namespaces, AES-GCM-128.
#
#   sudo bash tests/netns/strongswan_selftest.sh            # all cases
#   sudo bash tests/netns/strongswan_selftest.sh psk-nat    # only the named case(s)
#   TRANSFER_MB=5 NETNS_KEEP=1 sudo -E bash tests/netns/strongswan_selftest.sh   # smaller, keep logs
#
# Each case: fresh namespaces, charon on both sides, swanctl --initiate from A, then
#   - the CHILD_SA is AES_GCM_16-128 in UDP (TUNNEL-in-UDP),
#   - ping site A (10.10.1.1) -> site B (10.10.2.1) across the tunnel,
#   - a TCP transfer of TRANSFER_MB (20) MiB of random data, sha256 equal on both ends,
#   - B's inbound ESP byte counter covers the transfer (the data really went through ESP),
#   - NAT cases: B sees A at the NAT's public address, IKE on 4500.
# Prints "PASS <case>" / "FAIL <case>: reason" and "N passed, N failed"; exit 1 on any failure.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

require_root_and_tools strongswan socat nat
netns_trap_cleanup

MB="${TRANSFER_MB:-20}"
P="st$$"              # namespace prefix, unique per run
PSK="dodvpn-selftest-$$-$RANDOM$RANDOM"
ALL_CASES=(psk-direct ecdsa-direct rsa3072-direct psk-nat ecdsa-nat chacha-x25519-direct)

fail() { echo "$*" >&2; return 1; }

# run_case NAME AUTH(psk|ecdsa|rsa) TOPO(direct|nat) [SUITE] [DH]
run_case() {
  local name="$1" auth="$2" topo="$3" suite="${4:-aes128gcm16}" dh="${5:-ecp256}"
  local a="${P}a" b="${P}b" n="${P}n" work da db pk
  work="$(netns_workdir "$name")"; da="$work/a"; db="$work/b"; pk="$work/pki"
  mkdir -p "$da" "$db"
  if [[ "$topo" == nat ]]; then netns_nat "$a" "$n" "$b"; else netns_pair "$a" "$b"; fi

  local -a ca=(--local-addrs "$OUTER_A" --remote-addrs "$OUTER_B" --local-id a.test --remote-id b.test
               --local-ts "$SITE_NET_A" --remote-ts "$SITE_NET_B" --suite "$suite" --dh "$dh")
  local -a cb=(--local-addrs "$OUTER_B" --remote-addrs %any --local-id b.test --remote-id a.test
               --local-ts "$SITE_NET_B" --remote-ts "$SITE_NET_A" --suite "$suite" --dh "$dh")
  case "$auth" in
    psk)
      ca+=(--auth psk --psk "$PSK"); cb+=(--auth psk --psk "$PSK") ;;
    ecdsa|rsa)
      pki_make "$pk" "$auth" a.test b.test
      ca+=(--auth pubkey --cert "$pk/a.test.crt" --key "$pk/a.test.key" --cacert "$pk/ca.crt")
      cb+=(--auth pubkey --cert "$pk/b.test.crt" --key "$pk/b.test.key" --cacert "$pk/ca.crt") ;;
  esac
  swanctl_conf_write "$da/swanctl.conf" "${ca[@]}"
  swanctl_conf_write "$db/swanctl.conf" "${cb[@]}"

  strongswan_start "$a" "$da" || fail "charon did not start in $a (see $da/charon.log)" || return 1
  strongswan_start "$b" "$db" || fail "charon did not start in $b (see $db/charon.log)" || return 1
  swanctl_initiate "$da" site 15 ||
    fail "swanctl --initiate failed: $(tail -n 3 "$da/swanctl-initiate.log" | tr '\n' ' ')" || return 1

  local sas_a sas_b want
  sas_a="$(swanctl_list_sas "$da")"
  case "$suite" in
    aes128gcm16) want="ESP:AES_GCM_16-128" ;;
    aes256gcm16) want="ESP:AES_GCM_16-256" ;;
    chacha20poly1305) want="ESP:CHACHA20_POLY1305" ;;
  esac
  grep -q "INSTALLED, TUNNEL-in-UDP, $want" <<<"$sas_a" ||
    fail "CHILD_SA is not '$want' in UDP: $(grep -E 'INSTALLED|ESTABLISHED' <<<"$sas_a" | tr '\n' ' ')" || return 1

  ip netns exec "$a" ping -c 3 -i 0.2 -W 2 -q -I "$SITE_A" "$SITE_B" >"$work/ping.log" 2>&1 ||
    fail "ping $SITE_A -> $SITE_B across the tunnel failed: $(tail -n 2 "$work/ping.log" | tr '\n' ' ')" || return 1

  tcp_transfer "$a" "$b" "$SITE_B" "$SITE_A" "$MB" "$work" 5001 ||
    fail "TCP transfer of $MB MiB through the tunnel failed or sha256 differs" || return 1

  sas_b="$(swanctl_list_sas "$db")"
  local inbytes
  inbytes="$(awk '/^    in  /{gsub(",","",$3); print $3; exit}' <<<"$sas_b")"
  ((${inbytes:-0} >= MB * 1024 * 1024)) ||
    fail "B's inbound ESP counter is ${inbytes:-?} bytes, less than the $MB MiB sent" || return 1

  local authline
  authline="$(grep -m1 -oE "authentication of 'b.test' with ([A-Z0-9_]+|pre-shared key)" "$da/charon.log")"
  case "$auth" in
    psk) grep -q 'pre-shared key' <<<"$authline" ;;
    ecdsa) grep -q 'ECDSA' <<<"$authline" ;;
    rsa) grep -qE 'RSA' <<<"$authline" ;;
  esac || fail "unexpected peer authentication in charon.log: '${authline:-none}'" || return 1

  if [[ "$topo" == nat ]]; then
    grep -q "remote 'a.test' @ $NAT_PUBLIC\[" <<<"$sas_b" ||
      fail "B does not see A behind the NAT ($NAT_PUBLIC): $(grep remote <<<"$sas_b" | head -1)" || return 1
    grep -q "local  'a.test' @ $OUTER_A\[4500\]" <<<"$sas_a" ||
      fail "A did not float to UDP 4500 behind the NAT" || return 1
  fi
  echo "$(grep -m1 -oE '(AES|CHACHA)[A-Z0-9_/-]+' <<<"$sas_a"), ${authline#authentication of }, ${MB} MiB sha256 ${TCP_TRANSFER_SHA:0:12}…, ESP in ${inbytes} B" >"$INFO"
}

cases=("$@")
((${#cases[@]})) || cases=("${ALL_CASES[@]}")
echo "strongSwan self-test: $(/usr/lib/ipsec/charon --version 2>/dev/null || swanctl --version | head -1), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
INFO="${TMPDIR:-/tmp}/selftest-$$.info"
for c in "${cases[@]}"; do
  : >"$INFO"
  t0=$SECONDS
  # each case in a subshell: a fatal harness error (exit) fails the case, not the whole run
  ( case "$c" in
    psk-direct)     run_case "$c" psk direct ;;
    ecdsa-direct)   run_case "$c" ecdsa direct ;;
    rsa3072-direct) run_case "$c" rsa direct ;;
    psk-nat)        run_case "$c" psk nat ;;
    ecdsa-nat)      run_case "$c" ecdsa nat ;;
    chacha-x25519-direct) run_case "$c" psk direct chacha20poly1305 curve25519 ;;
    *) echo "unknown case '$c' (known: ${ALL_CASES[*]})" >&2; false ;;
  esac ) 2>"${TMPDIR:-/tmp}/selftest-$$.err"
  rc=$?
  if ((rc == 0)); then result 0 "$c ($(cat "$INFO"); $((SECONDS - t0)) s)"
  else result 1 "$c" "$(grep -v '^\[netns\] warning' "${TMPDIR:-/tmp}/selftest-$$.err" | tail -n 3 | tr '\n' ' ')"; fi
  rm -f "${TMPDIR:-/tmp}/selftest-$$.err" "$INFO"
  strongswan_stop
  netns_del "${P}a" "${P}b" "${P}n"
done
netns_summary
