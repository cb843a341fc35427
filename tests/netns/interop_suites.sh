#!/usr/bin/env bash
# Interop of the non-default suites (issue 16): dodvpn tunnel ↔ strongSwan (Debian's charon,
# kernel-libipsec) with MODP 2048/3072/4096 and ECP-521, AES-CBC + HMAC-SHA2 for IKE and ESP,
# in both directions, real ICMP and TCP (sha256 compared on both ends); and the proposal sets
# that Windows, macOS/iOS and common routers send by default, accepted or refused with a log
# line that says what was offered and what we accept.
#
#   sudo bash tests/netns/interop_suites.sh                  # all cases
#   sudo bash tests/netns/interop_suites.sh cbc-modp2048-ss-init
#
# A = dodvpn (192.0.2.1, site 10.10.1.0/24), B = strongSwan (192.0.2.2, site 10.10.2.0/24).
# Prints "PASS <case>" / "FAIL <case>: reason" and "N passed, N failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
DODVPN_BIN="${DODVPN_BIN:-$here/../../target/debug/dodvpn}"
[[ -x "$DODVPN_BIN" ]] || { echo "build dodvpn first (cargo build -p dodvpn) or set DODVPN_BIN" >&2; exit 1; }
require_root_and_tools strongswan socat openssl
netns_trap_cleanup

MB="${TRANSFER_MB:-4}"
PSK="dodvpn-suites-$$-$RANDOM$RANDOM"
fail() { echo "$*" >&2; return 1; }
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }   # dodvpn's log without colours
toml_list() { local IFS=,; local out="" x; for x in $1; do out+="${out:+, }\"$x\""; done; echo "[$out]"; }

# Default proposal sets of common initiators, in strongSwan's notation (one proposal per
# comma). Where a vendor's list mixes weak and acceptable algorithms, dodvpn must pick an
# acceptable one; where it has none, dodvpn must refuse and say why. Sources: the vendors'
# documented defaults (docs/interop.md lists them and what dodvpn refuses).
WIN_DEFAULT_IKE="aes256-sha1-modp1024,3des-sha1-modp1024,aes256-sha256-modp1024,3des-sha256-modp1024"
WIN_DEFAULT_ESP="aes256-sha1,3des-sha1"
# Windows 10/11 with Set-VpnConnectionIPsecConfiguration -EncryptionMethod AES256
#   -IntegrityCheckMethod SHA256 -DHGroup Group14 -CipherTransformConstants AES256
#   -AuthenticationTransformConstants SHA256128 -PfsGroup None
WIN_CONF_IKE="aes256-sha256-modp2048"
WIN_CONF_ESP="aes256-sha256"
# macOS / iOS IKEv2 profile defaults: AES-256, SHA2-256, DH group 14 (IKE and child).
APPLE_IKE="aes256-sha256-modp2048"
APPLE_ESP="aes256-sha256"
# A router's multi-algorithm proposal (Cisco IOS XE / FortiGate / Yamaha RTX style): several
# ciphers, hashes and groups in one proposal, SHA-1 and MODP-1024 among them.
ROUTER_IKE="aes256-aes128-sha512-sha384-sha256-sha1-modp2048-ecp256-modp1024"
ROUTER_ESP="aes256-aes128-sha256-sha1"

ALL_CASES=(cbc-modp2048-ss-init cbc-modp2048-dv-init gcm-ecp521-ss-init gcm-ecp521-dv-init
           cbc128-sha384-modp3072-ss-init cbc-sha512-modp4096-dv-init
           windows-configured-ss-init windows-default-refused apple-default-ss-init
           router-multi-ss-init esp-sha1-refused)

# run_suite NAME WHO(ss|dv) SS_IKE SS_ESP DV_IKE DV_ESP EXPECT [IKE_RE ESP_RE]
#   SS_*: strongSwan's proposals (comma-separated), DV_*: dodvpn's (comma-separated).
#   EXPECT ok: ping + TCP both ways; strongSwan's SA shows IKE_RE / ESP_RE; dodvpn's log
#              names the suite of the IKE and the child SA in strongSwan's notation.
#   EXPECT refused-ike / refused-esp: strongSwan (initiating) fails; dodvpn logs the
#              offered and the accepted proposals.
run_suite() {
  local name="$1" who="$2" ssike="$3" ssesp="$4" dvike="$5" dvesp="$6" expect="$7" ikere="${8:-}" espre="${9:-}"
  local h; h="$(printf '%s' "$name" | cksum | cut -c1-5)"
  local a="su${h}a$$" b="su${h}b$$" work db
  a="${a:0:14}"; b="${b:0:14}"
  work="$(netns_workdir "$name")"; db="$work/ss"; mkdir -p "$db"
  netns_pair "$a" "$b" >/dev/null
  swanctl_conf_write "$db/swanctl.conf" --local-addrs "$OUTER_B" --remote-addrs "$OUTER_A" \
    --local-id b.test --remote-id a.test --local-ts "$SITE_NET_B" --remote-ts "$SITE_NET_A" \
    --auth psk --psk "$PSK" --ike "$ssike" --esp "$ssesp"
  cat >"$work/a.toml" <<CONF
interface = "dvi"
control = "$work/a.sock"
[[connection]]
name = "strongswan"
local_addr = "$OUTER_A"
remote_addr = "$OUTER_B"
local_subnets = ["$SITE_NET_A"]
remote_subnets = ["$SITE_NET_B"]
local_id = "a.test"
remote_id = "b.test"
psk = "$PSK"
ike_proposals = $(toml_list "$dvike")
esp_proposals = $(toml_list "$dvesp")
start = "$([[ $who == dv ]] && echo trap || echo none)"
idle_timeout = "0s"
CONF
  strongswan_start "$b" "$db" || fail "charon did not start (see $db/charon.log)" || return 1
  # The default level: what an operator sees without asking for more.
  netns_spawn "$a" "$work/a.log" "$DODVPN_BIN" tunnel --config "$work/a.toml"
  netns_wait_for 10 grep -q ready "$work/a.log" || fail "dodvpn tunnel did not start: $(tail -3 "$work/a.log")" || return 1
  if [[ "$expect" == refused-* ]]; then
    swanctl_initiate "$db" site 15 && fail "strongSwan's $ssike / $ssesp was accepted" && return 1
    local what=IKE; [[ "$expect" == refused-esp ]] && what=ESP
    local line; line="$(plain "$work/a.log" | grep -m1 "$what proposal refused")"
    [[ -n "$line" ]] || fail "dodvpn logged no '$what proposal refused' line at the default level: $(tail -3 "$work/a.log" | tr '\n' ' ')" || return 1
    # The peer's first proposal, in strongSwan's notation, and ours.
    local first="${ssike%%,*}"; [[ "$what" == ESP ]] && first="${ssesp%%,*}"
    grep -q "offered=.*${first}" <<<"$line" || fail "refusal does not show what was offered ($first): $line" || return 1
    local acc="${dvike%%,*}"; [[ "$what" == ESP ]] && acc="${dvesp%%,*}"
    grep -q "accepted=.*${acc}" <<<"$line" || fail "refusal does not show what we accept ($acc): $line" || return 1
    grep -q "NO_PROP" "$db/charon.log" || fail "charon saw no NO_PROPOSAL_CHOSEN" || return 1
    echo "refused, logged: ${line#*refused}" | cut -c1-200 >"$INFO"
    return 0
  fi
  if [[ $who == ss ]]; then
    swanctl_initiate "$db" site 20 ||
      fail "strongSwan could not initiate: $(tail -n 5 "$db/swanctl-initiate.log" | tr '\n' ' ') | dodvpn: $(tail -3 "$work/a.log" | tr '\n' ' ')" || return 1
  fi
  ip netns exec "$a" ping -c 3 -i 0.2 -W 5 -q -I "$SITE_A" "$SITE_B" >"$work/ping.log" 2>&1 ||
    fail "ping across failed: $(tail -n 2 "$work/ping.log" | tr '\n' ' ') | dodvpn: $(plain "$work/a.log" | grep -E 'WARN|ERROR|refused|failed' | tail -3 | tr '\n' ' ') | charon: $(grep -E 'received|failed|NO_PROP|AUTH' "$db/charon.log" | tail -4 | tr '\n' ' ')" || return 1
  tcp_transfer "$a" "$b" "$SITE_B" "$SITE_A" "$MB" "$work" 5001 >/dev/null 2>&1 ||
    fail "TCP transfer of $MB MiB A→B failed or sha256 differs" || return 1
  tcp_transfer "$b" "$a" "$SITE_A" "$SITE_B" "$MB" "$work" 5002 >/dev/null 2>&1 ||
    fail "TCP transfer of $MB MiB B→A failed or sha256 differs" || return 1
  local sas; sas="$(swanctl_list_sas "$db")"
  grep -qE "$ikere" <<<"$sas" || fail "strongSwan's IKE SA is not $ikere: $(grep -E 'AES|CHACHA' <<<"$sas" | tr '\n' ' ')" || return 1
  grep -qE "ESP:$espre" <<<"$sas" || fail "strongSwan's child SA is not $espre: $(grep ESP <<<"$sas" | tr '\n' ' ')" || return 1
  # Point 7: the default level names the IKE SA and the child SA with SPIs and suite.
  local ikeline chline
  ikeline="$(plain "$work/a.log" | grep -m1 'IKE SA established')"
  chline="$(plain "$work/a.log" | grep -m1 'child SA installed')"
  grep -qE "peer=$OUTER_B:[0-9]+" <<<"$ikeline" && grep -qE 'spi_i=[0-9a-f]{16}' <<<"$ikeline" && grep -q "suite=" <<<"$ikeline" ||
    fail "IKE SA log line lacks peer/SPIs/suite: $ikeline" || return 1
  grep -qE 'spi_in=[0-9a-f]{8}' <<<"$chline" && grep -q "suite=" <<<"$chline" ||
    fail "child SA log line lacks SPIs/suite: $chline" || return 1
  local dvsuite dvesp_log
  dvsuite="$(grep -oE 'suite=[a-z0-9-]+' <<<"$ikeline" | head -1)"
  dvesp_log="$(grep -oE 'suite=[a-z0-9-]+' <<<"$chline" | head -1)"
  # Delete from strongSwan's side: dodvpn logs the child SA and the IKE SA down with a reason.
  swanctl_terminate "$db" tun 10 >/dev/null 2>&1
  netns_wait_for 10 sh -c "sed 's/\x1b\[[0-9;]*m//g' '$work/a.log' | grep -q 'IKE SA down.*reason='" ||
    fail "no 'IKE SA down … reason=' line after strongSwan deleted the SA: $(tail -3 "$work/a.log" | tr '\n' ' ')" || return 1
  echo "$(grep -m1 -oE '(AES|CHACHA)[A-Z0-9_/-]+' <<<"$sas") / ESP:$(grep -m1 -oE 'ESP:[A-Z0-9_/-]+' <<<"$sas" | cut -c5-); dodvpn logs ${dvsuite#suite=} / ${dvesp_log#suite=}" >"$INFO"
}

cases=("$@")
((${#cases[@]})) || cases=("${ALL_CASES[@]}")
echo "interop suites: $(swanctl --version 2>/dev/null | head -1), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
INFO="${TMPDIR:-/tmp}/interop-suites-$$.info"
CBC256='AES_CBC-256/HMAC_SHA2_256_128'
for c in "${cases[@]}"; do
  : >"$INFO"
  ( case "$c" in
      cbc-modp2048-ss-init)
        run_suite "$c" ss aes256-sha256-modp2048 aes256-sha256 aes256-sha256-modp2048 aes256-sha256 ok \
          "$CBC256/PRF_HMAC_SHA2_256/MODP_2048" "$CBC256" ;;
      cbc-modp2048-dv-init)
        run_suite "$c" dv aes256-sha256-modp2048 aes256-sha256 aes256-sha256-modp2048 aes256-sha256 ok \
          "$CBC256/PRF_HMAC_SHA2_256/MODP_2048" "$CBC256" ;;
      gcm-ecp521-ss-init)
        run_suite "$c" ss aes256gcm16-prfsha384-ecp521 aes256gcm16 aes256gcm16-prfsha384-ecp521 aes256gcm16 ok \
          "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_521" "AES_GCM_16-256" ;;
      gcm-ecp521-dv-init)
        run_suite "$c" dv aes256gcm16-prfsha384-ecp521 aes256gcm16 aes256gcm16-prfsha384-ecp521 aes256gcm16 ok \
          "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_521" "AES_GCM_16-256" ;;
      cbc128-sha384-modp3072-ss-init)
        run_suite "$c" ss aes128-sha384-modp3072 aes128-sha384 aes128-sha384-modp3072 aes128-sha384 ok \
          "AES_CBC-128/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/MODP_3072" "AES_CBC-128/HMAC_SHA2_384_192" ;;
      cbc-sha512-modp4096-dv-init)
        run_suite "$c" dv aes256-sha512-modp4096 aes256-sha512 aes256-sha512-modp4096 aes256-sha512 ok \
          "AES_CBC-256/HMAC_SHA2_512_256/PRF_HMAC_SHA2_512/MODP_4096" "AES_CBC-256/HMAC_SHA2_512_256" ;;
      windows-configured-ss-init)
        run_suite "$c" ss "$WIN_CONF_IKE" "$WIN_CONF_ESP" aes128gcm16-prfsha256-ecp256,aes256-sha256-modp2048 \
          aes128gcm16,aes256-sha256 ok "$CBC256/PRF_HMAC_SHA2_256/MODP_2048" "$CBC256" ;;
      windows-default-refused)
        run_suite "$c" ss "$WIN_DEFAULT_IKE" "$WIN_DEFAULT_ESP" aes128gcm16-prfsha256-ecp256,aes256-sha256-modp2048 \
          aes128gcm16,aes256-sha256 refused-ike ;;
      apple-default-ss-init)
        run_suite "$c" ss "$APPLE_IKE" "$APPLE_ESP" aes128gcm16-prfsha256-ecp256,aes256-sha256-modp2048 \
          aes128gcm16,aes256-sha256 ok "$CBC256/PRF_HMAC_SHA2_256/MODP_2048" "$CBC256" ;;
      router-multi-ss-init)
        # The router's KE is for its first group (MODP-2048); dodvpn picks SHA-512 and
        # MODP-2048 from the list and never SHA-1 or MODP-1024.
        run_suite "$c" ss "$ROUTER_IKE" "$ROUTER_ESP" aes256-sha512-modp2048,aes256-sha256-ecp256 \
          aes256-sha256 ok "AES_CBC-256/HMAC_SHA2_512_256/PRF_HMAC_SHA2_512/MODP_2048" "$CBC256" ;;
      esp-sha1-refused)
        run_suite "$c" ss aes256-sha256-modp2048 aes256-sha1 aes256-sha256-modp2048 aes256-sha256,aes128gcm16 refused-esp ;;
      *) echo "unknown case $c" >&2; exit 1 ;;
    esac ) 2>"$INFO.err"
  if [[ $? == 0 ]]; then result 0 "$c ($(cat "$INFO"))"
  else result 1 "$c" "$(tail -n 3 "$INFO.err" | tr '\n' ' ')"; fi
  cleanup_all >/dev/null 2>&1; _nl_init 2>/dev/null || true
done
rm -f "$INFO" "$INFO.err"
netns_summary
