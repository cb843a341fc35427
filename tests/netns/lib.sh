# shellcheck shell=bash
# dodvpn data-plane test/benchmark harness: network namespaces, strongSwan (kernel-libipsec),
# wireguard-go and nebula peers.  Source it from bash:
#
#     . "$(dirname "$0")/../../tests/netns/lib.sh"
#     require_root_and_tools strongswan
#     netns_trap_cleanup                  # cleanup_all on exit, Ctrl-C, SIGTERM
#     netns_pair dva dvb 1500
#
# Everything this file creates (namespaces, processes, work directories) is recorded in a
# state file and removed by cleanup_all.  Traffic only ever goes to addresses inside the
# namespaces created here (192.0.2.0/24, 198.51.100.0/24 documentation ranges, 10.10.x.0/24
# site subnets).  How the peers run here (no in-kernel ESP: strongSwan runs
# kernel-libipsec): docs/TESTING.md.
#
# Functions (arguments in CAPS, optional in [brackets]):
#   require_root_and_tools [NEED...]      root, TUN, netns, and the NEEDs of scripts/setup.sh --list
#   netns_trap_cleanup
#   netns_pair A B [MTU]                 veth A<->B, outer 192.0.2.1/.2, sites 10.10.1.1/24, 10.10.2.1/24
#   netns_nat A NAT B [MTU]              A (198.51.100.2) behind masquerading NAT (192.0.2.1) <-> B (192.0.2.2)
#   netns_del NS...                      stop processes started in NS, delete NS
#   netns_exec NS CMD...                 run CMD in NS
#   netns_spawn NS LOG CMD...            start CMD in NS in the background, tracked; sets NETNS_LAST_PID
#   netns_kill PID...                    stop tracked processes (TERM, then KILL after 3 s)
#   netns_workdir [NAME]                 a tracked scratch directory (echoed)
#   netns_wait_for SECONDS CMD...        poll CMD every 50 ms until it succeeds
#   strongswan_start NS DIR              charon in NS with DIR/strongswan.conf (written if absent),
#                                        VICI at DIR/charon.vici, /run bind-mounted to DIR/run,
#                                        log DIR/charon.log; loads DIR/swanctl.conf if present
#   strongswan_stop [DIR]                stop charon of DIR (or every charon started here)
#   strongswan_conf_write DIR            write DIR/strongswan.conf (plugin order per the notes)
#   swanctl_conf_write FILE [--opt VAL]...   write a swanctl.conf (see the function for options)
#   swanctl_load DIR                     swanctl --load-all --file DIR/swanctl.conf
#   swanctl_initiate DIR CHILD [TIMEOUT_S]   swanctl --initiate --child CHILD
#   swanctl_initiate_async DIR CHILD     same, not waiting for the result
#   swanctl_terminate DIR IKE [TIMEOUT_S]    swanctl --terminate --ike IKE (and wait)
#   swanctl_list_sas DIR [ARGS...]       swanctl --list-sas
#   swanctl_sa_count DIR                 number of IKE SAs
#   swanctl_cmd DIR ARGS...              any swanctl command against DIR's charon
#   pki_make DIR ecdsa|rsa NAME...       CA (DIR/ca.{key,crt}) + one key/cert per NAME (CN=NAME, SAN NAME)
#   wg_start NS DIR [LISTEN_PORT] [TUN_ADDR/PFX] [MTU]   wireguard-go in NS, key in DIR; sets WG_IF
#   wg_add_peer NS DIR_SELF DIR_PEER ENDPOINT ALLOWED_IPS [ROUTE_SRC]
#   wg_remove_peer NS DIR_SELF DIR_PEER
#   wg_stop [DIR]
#   nebula_ca DIR                        nebula-cert CA in DIR
#   nebula_cert DIR NAME OVERLAY_IP/PFX [SUBNETS]
#   nebula_config_write DIR NAME OVERLAY_IP LISTEN_PORT PEER_OVERLAY PEER_ENDPOINT [UNSAFE_NET] [MTU] [CIPHER]
#   nebula_start NS DIR NAME             nebula -config DIR/NAME.yml in NS; waits for its TUN
#   nebula_stop [DIR NAME]
#   cleanup_all                          remove everything recorded; safe to call twice

# ---------------------------------------------------------------- globals / state
NETNS_OUTER_A="${NETNS_OUTER_A:-192.0.2.1}"
NETNS_OUTER_B="${NETNS_OUTER_B:-192.0.2.2}"
NETNS_OUTER_PFX="${NETNS_OUTER_PFX:-24}"
NETNS_PRIV_A="${NETNS_PRIV_A:-198.51.100.2}"     # A's address behind the NAT
NETNS_PRIV_NAT="${NETNS_PRIV_NAT:-198.51.100.1}" # NAT inside address (A's gateway)
NETNS_SITE_A="${NETNS_SITE_A:-10.10.1.1}"
NETNS_SITE_B="${NETNS_SITE_B:-10.10.2.1}"
NETNS_SITE_NET_A="${NETNS_SITE_NET_A:-10.10.1.0/24}"
NETNS_SITE_NET_B="${NETNS_SITE_NET_B:-10.10.2.0/24}"
NETNS_SITE_PFX="${NETNS_SITE_PFX:-24}"
CHARON_BIN="${CHARON_BIN:-/usr/lib/ipsec/charon}"

_nl_state=""     # state file; lines: "ns NAME" | "pid PID STARTTIME DESC" | "dir PATH"
_nl_root=""      # top work directory of this run

_nl_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# fd 9: the script's own stderr, kept so that errors raised inside a call whose stderr is
# redirected (2>/dev/null) are still seen.
exec 9>&2
_nl_log() { printf '[netns] %s\n' "$*" >&2; }
_nl_die() { printf '[netns] ERROR: %s (%s line %s)\n' "$*" "${BASH_SOURCE[2]:-$0}" "${BASH_LINENO[1]:-?}" >&9; exit 1; }

# Where the top level of the script is: the EXIT trap names it when the script stops early.
# (Inside a trap handler BASH_COMMAND stays the command that was running when the trap
# fired, so the handler's own commands, which would give wrong line numbers, are skipped.)
_nl_where="start" _nl_cmd=""
trap '[[ "$BASH_COMMAND" == "$_nl_cmd" ]] || { _nl_cmd="$BASH_COMMAND"; _nl_where="${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND"; }' DEBUG
_nl_on_exit() { # the status the script exits with
  if [[ $1 != 0 && $_nl_summarised == 0 ]]; then
    printf '[netns] ERROR: %s stopped early with status %s, at %s\n' "${0##*/}" "$1" "$_nl_where" >&9
  fi
}

_nl_init() {
  [[ -n "$_nl_state" && -f "$_nl_state" ]] && return 0
  _nl_root="$(mktemp -d "${TMPDIR:-/tmp}/dodvpn-netns.XXXXXX")" || _nl_die "mktemp failed"
  _nl_state="$_nl_root/state"
  : >"$_nl_state"
  echo "dir $_nl_root" >>"$_nl_state"
}

_nl_starttime() { # field 22 of /proc/PID/stat (after the "(comm)" which may hold spaces)
  local s
  s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  s="${s##*) }"
  # shellcheck disable=SC2086
  set -- $s
  echo "${20}"
}

_nl_pids_tagged() { # TAG -> PIDs started with NETNS_TAG=TAG
  [[ -n "$_nl_state" && -f "$_nl_state" ]] || return 0
  awk -v t="$1" '$1 == "pid" && index($4, t ":") == 1 {print $2}' "$_nl_state"
}

_nl_track_pid() { # PID DESC
  local st
  st="$(_nl_starttime "$1")" || st=0
  echo "pid $1 $st $2" >>"$_nl_state"
}

# ---------------------------------------------------------------- checks
# require_root_and_tools [NEED...] — NEED as in scripts/setup.sh (strongswan wireguard nebula
# iperf3 socat nat python capture ...); "netns" is always checked. The list of what provides
# each need lives only in scripts/setup.sh, which names the missing package.
require_root_and_tools() {
  if [[ "$(id -u)" -ne 0 ]]; then
    _nl_die "this script needs root (network namespaces, veth, TUN, mount). Run it with sudo or as root."
  fi
  "$_nl_repo/scripts/setup.sh" --check netns "$@" 2>&9 || _nl_die "a package this test needs is missing (above)"
  [[ -c /dev/net/tun ]] || _nl_die "/dev/net/tun is missing (TUN support needed)"
  ip netns list >/dev/null 2>&1 || _nl_die "'ip netns' does not work here"
}

# ---------------------------------------------------------------- results
# result RC NAME [REASON] — one PASS/FAIL line and the count; netns_summary prints
# "N passed, N failed" and returns 1 on any failure. A script that exits without its
# summary says where it stopped (see _nl_on_exit).
NETNS_PASSED=0 NETNS_FAILED=0 _nl_summarised=0
result() {
  if [[ $1 == 0 ]]; then echo "PASS $2"; NETNS_PASSED=$((NETNS_PASSED + 1))
  else echo "FAIL $2${3:+: $3}"; NETNS_FAILED=$((NETNS_FAILED + 1)); fi
}
check() { local what="$1"; shift; "$@"; result $? "$what"; } # check NAME CMD...
netns_summary() {
  _nl_summarised=1
  echo "$NETNS_PASSED passed, $NETNS_FAILED failed"
  [[ $NETNS_FAILED == 0 ]]
}

# ---------------------------------------------------------------- cleanup
netns_kill() { # PID... : TERM, wait up to 3 s, then KILL; only PIDs recorded in the state file
  local pid st cur i line
  for pid in "$@"; do
    line="$(grep -E "^pid $pid " "$_nl_state" 2>/dev/null | tail -n1)"
    [[ -n "$line" ]] || { _nl_log "netns_kill: $pid was not started here, left alone"; continue; }
    st="$(awk '{print $3}' <<<"$line")"
    cur="$(_nl_starttime "$pid")" || continue           # already gone
    [[ "$st" == 0 || "$cur" == "$st" ]] || continue     # PID reused by someone else: leave it
    kill -TERM "$pid" 2>/dev/null || continue
  done
  for pid in "$@"; do
    for ((i = 0; i < 60; i++)); do
      [[ -e "/proc/$pid" ]] || break
      # reap if it is our child (zombie)
      if [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]]; then wait "$pid" 2>/dev/null; break; fi
      sleep 0.05
    done
    if [[ -e "/proc/$pid" ]]; then
      line="$(grep -E "^pid $pid " "$_nl_state" 2>/dev/null | tail -n1)"
      st="$(awk '{print $3}' <<<"$line")"
      cur="$(_nl_starttime "$pid")" && [[ "$st" == 0 || "$cur" == "$st" ]] && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
    [[ -n "$_nl_state" && -f "$_nl_state" ]] && sed -i "/^pid $pid /d" "$_nl_state"
  done
  return 0
}

cleanup_all() {
  local rc=$?
  [[ -n "$_nl_state" && -f "$_nl_state" ]] || return "$rc"
  local state="$_nl_state" line pids=() nss=() dirs=()
  while read -r kind a _; do
    case "$kind" in
      pid) pids+=("$a") ;;
      ns) nss+=("$a") ;;
      dir) dirs+=("$a") ;;
    esac
  done <"$state"
  ((${#pids[@]})) && netns_kill "${pids[@]}"
  local ns
  for ns in "${nss[@]}"; do
    ip netns pids "$ns" 2>/dev/null | while read -r p; do
      # only processes this run started are killed above; report strays rather than killing them
      _nl_log "warning: process $p still in namespace $ns"
    done
    ip netns del "$ns" 2>/dev/null || true
  done
  _nl_state=""
  if [[ "${NETNS_KEEP:-0}" == 1 ]]; then
    _nl_log "NETNS_KEEP=1: logs kept in $_nl_root"
    rm -f "$state"
  else
    local d
    for d in "${dirs[@]}"; do
      # the bind mount over /run lives only in the (gone) mount namespace of charon
      [[ "$d" == "${TMPDIR:-/tmp}"/dodvpn-netns.* ]] && rm -rf "$d"
    done
  fi
  return "$rc"
}

# netns_del NS... — stop the processes started here in NS, then delete NS (its veths go with it)
netns_del() {
  local ns pids
  for ns in "$@"; do
    pids="$(awk -v n="$ns" '$1 == "pid" { split($4, a, ":"); if (a[2] == n) print $2 }' "$_nl_state" 2>/dev/null)"
    # shellcheck disable=SC2086
    [[ -n "$pids" ]] && netns_kill $pids
    ip netns del "$ns" 2>/dev/null || true
    [[ -n "$_nl_state" && -f "$_nl_state" ]] && sed -i "/^ns $ns\$/d" "$_nl_state"
  done
  return 0
}

netns_trap_cleanup() {
  _nl_init
  trap 'rc=$?; _nl_on_exit $rc; cleanup_all; exit $rc' EXIT
  trap 'echo "[netns] interrupted, cleaning up" >&2; exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}

netns_workdir() { # [NAME] -> echo a tracked directory inside this run's work root
  _nl_init
  local d
  if [[ -n "${1:-}" ]]; then d="$_nl_root/$1"; mkdir -p "$d"
  else d="$(mktemp -d "$_nl_root/w.XXXXXX")"; fi
  echo "$d"
}

netns_exec() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

netns_spawn() { # NS LOG CMD... ; sets NETNS_LAST_PID (PID of CMD itself: ip netns exec execs it)
  # NETNS_TAG=KIND netns_spawn ... tags the process (charon, wg, nebula, ...) for _nl_pids_tagged
  _nl_init
  local ns="$1" log="$2"; shift 2
  ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
  NETNS_LAST_PID=$!
  _nl_track_pid "$NETNS_LAST_PID" "${NETNS_TAG:-proc}:$ns"
}

netns_wait_for() { # SECONDS CMD...
  local limit="$1"; shift
  local end=$((SECONDS + limit)) 
  while ! "$@" >/dev/null 2>&1; do
    ((SECONDS >= end)) && return 1
    sleep 0.05
  done
}

# ---------------------------------------------------------------- topology
_nl_ns_add() {
  _nl_init
  local ns="$1"
  ip netns list | awk '{print $1}' | grep -qx "$ns" && _nl_die "namespace $ns already exists (another run? remove it with 'ip netns del $ns')"
  ip netns add "$ns" || _nl_die "ip netns add $ns failed"
  echo "ns $ns" >>"$_nl_state"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sh -c '
    for k in net.ipv4.conf.all.rp_filter net.ipv4.conf.default.rp_filter; do sysctl -qw $k=0; done
    sysctl -qw net.ipv4.ip_forward=1
    sysctl -qw net.ipv6.conf.all.disable_ipv6=0 2>/dev/null
    true'
}

_nl_site() { # NS ADDR : the "site subnet" on a dummy interface (ifb where the kernel has no dummy)
  local ns="$1" addr="$2" kind
  for kind in dummy ifb; do
    if ip -n "$ns" link add site0 type "$kind" 2>/dev/null; then break; fi
    kind=""
  done
  if [[ -n "$kind" ]]; then
    ip -n "$ns" addr add "$addr/$NETNS_SITE_PFX" dev site0
    ip -n "$ns" link set site0 up
  else
    # last resort: the site address on loopback (local delivery works the same)
    ip -n "$ns" addr add "$addr/32" dev lo
  fi
  ip netns exec "$ns" sysctl -qw net.ipv4.conf.site0.rp_filter=0 2>/dev/null || true
}

_nl_veth() { # NS1 IF1 ADDR1 NS2 IF2 ADDR2 MTU   (veth created directly inside the namespaces)
  ip link add "$2" mtu "$7" netns "$1" type veth peer name "$5" mtu "$7" netns "$4" ||
    _nl_die "veth $1:$2 <-> $4:$5 failed"
  ip -n "$1" addr add "$3" dev "$2"; ip -n "$1" link set "$2" up
  ip -n "$4" addr add "$6" dev "$5"; ip -n "$4" link set "$5" up
  ip netns exec "$1" sysctl -qw "net.ipv4.conf.$2.rp_filter=0"
  ip netns exec "$4" sysctl -qw "net.ipv4.conf.$5.rp_filter=0"
}

# netns_pair A B [MTU]
#   A: out0 192.0.2.1/24, site0 10.10.1.1/24     B: out0 192.0.2.2/24, site0 10.10.2.1/24
#   No route between the site subnets: only a tunnel connects them.
netns_pair() {
  local a="$1" b="$2" mtu="${3:-${NETNS_MTU:-1500}}"
  [[ -n "$a" && -n "$b" ]] || _nl_die "usage: netns_pair NS_A NS_B [MTU]"
  _nl_ns_add "$a"; _nl_ns_add "$b"
  _nl_veth "$a" out0 "$NETNS_OUTER_A/$NETNS_OUTER_PFX" "$b" out0 "$NETNS_OUTER_B/$NETNS_OUTER_PFX" "$mtu"
  _nl_site "$a" "$NETNS_SITE_A"
  _nl_site "$b" "$NETNS_SITE_B"
  NS_A="$a" NS_B="$b"
  OUTER_A="$NETNS_OUTER_A" OUTER_B="$NETNS_OUTER_B"
  PEER_ADDR_OF_A="$NETNS_OUTER_A"           # the address B sees A coming from
  SITE_A="$NETNS_SITE_A" SITE_B="$NETNS_SITE_B"
  SITE_NET_A="$NETNS_SITE_NET_A" SITE_NET_B="$NETNS_SITE_NET_B"
  netns_wait_for 5 ip netns exec "$a" ping -c1 -W1 -q "$NETNS_OUTER_B" || _nl_die "veth $a<->$b: no ping"
}

# netns_nat A NAT B [MTU]
#   A: out0 198.51.100.2/24 (default via 198.51.100.1), site0 10.10.1.1/24
#   NAT: in0 198.51.100.1/24, out0 192.0.2.1/24, masquerade out of out0 (nftables, else iptables)
#   B: out0 192.0.2.2/24, site0 10.10.2.1/24; B has no route to 198.51.100.0/24.
#   NETNS_NAT_RANDOM=1 makes the NAT pick random source ports (port 500 is not kept).
netns_nat() {
  local a="$1" nat="$2" b="$3" mtu="${4:-${NETNS_MTU:-1500}}"
  [[ -n "$a" && -n "$nat" && -n "$b" ]] || _nl_die "usage: netns_nat NS_A NS_NAT NS_B [MTU]"
  _nl_ns_add "$a"; _nl_ns_add "$nat"; _nl_ns_add "$b"
  _nl_veth "$a" out0 "$NETNS_PRIV_A/24" "$nat" in0 "$NETNS_PRIV_NAT/24" "$mtu"
  _nl_veth "$nat" out0 "$NETNS_OUTER_A/$NETNS_OUTER_PFX" "$b" out0 "$NETNS_OUTER_B/$NETNS_OUTER_PFX" "$mtu"
  ip -n "$a" route add default via "$NETNS_PRIV_NAT"
  _nl_site "$a" "$NETNS_SITE_A"
  _nl_site "$b" "$NETNS_SITE_B"
  local flags=""
  [[ "${NETNS_NAT_RANDOM:-0}" == 1 ]] && flags=" random,fully-random"
  if command -v nft >/dev/null 2>&1 && ip netns exec "$nat" nft -f - <<EOF
table ip dodvpn_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "out0" masquerade$flags
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname "in0" oifname "out0" accept
    ct state established,related accept
  }
}
EOF
  then :
  elif command -v iptables >/dev/null 2>&1; then
    local rnd=()
    [[ -n "$flags" ]] && rnd=(--random-fully)
    ip netns exec "$nat" iptables -t nat -A POSTROUTING -o out0 -j MASQUERADE "${rnd[@]}" &&
    ip netns exec "$nat" iptables -P FORWARD DROP &&
    ip netns exec "$nat" iptables -A FORWARD -i in0 -o out0 -j ACCEPT &&
    ip netns exec "$nat" iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT ||
      _nl_die "iptables NAT setup in $nat failed"
  else
    _nl_die "neither nft nor iptables available for the NAT namespace"
  fi
  NS_A="$a" NS_NAT="$nat" NS_B="$b"
  OUTER_A="$NETNS_PRIV_A" OUTER_B="$NETNS_OUTER_B" NAT_PUBLIC="$NETNS_OUTER_A"
  PEER_ADDR_OF_A="$NETNS_OUTER_A"
  SITE_A="$NETNS_SITE_A" SITE_B="$NETNS_SITE_B"
  SITE_NET_A="$NETNS_SITE_NET_A" SITE_NET_B="$NETNS_SITE_NET_B"
  netns_wait_for 5 ip netns exec "$a" ping -c1 -W1 -q "$NETNS_OUTER_B" || _nl_die "NAT path $a->$nat->$b: no ping"
}

# ---------------------------------------------------------------- strongSwan (charon + kernel-libipsec)
# strongswan_conf_write DIR — env: CHARON_LOGLEVEL (default 1; 4 prints keys), CHARON_IKE_LOGLEVEL (2)
strongswan_conf_write() {
  local dir="$1" lvl="${CHARON_LOGLEVEL:-1}" ike="${CHARON_IKE_LOGLEVEL:-2}"
  cat >"$dir/strongswan.conf" <<EOF
# generated by tests/netns/lib.sh — one charon per network namespace
charon {
  # openssl first (AES-GCM in hardware), kdf (5.9.8 needs it for prfsha256),
  # kernel-libipsec BEFORE kernel-netlink (else charon tries XFRM and fails).
  load_modular = no
  load = openssl kdf random nonce x509 revocation constraints pubkey pkcs1 pkcs8 pem gcm chapoly curve25519 aes sha2 hmac vici kernel-libipsec kernel-netlink socket-default updown
  install_routes = yes
  routing_table = 220
  routing_table_prio = 220
  port = 500
  port_nat_t = 4500
  retransmit_tries = 3
  retransmit_timeout = 1.0
  plugins {
    vici {
      socket = unix://$dir/charon.vici
    }
    kernel-libipsec {
      allow_peer_ts = no
    }
  }
  filelog {
    main {
      path = $dir/charon.log
      time_format = %H:%M:%S
      time_add_ms = yes
      ike_name = yes
      append = no
      flush_line = yes
      default = $lvl
      ike = $ike
      cfg = $ike
    }
  }
  syslog {
    daemon {
      default = -1
    }
    auth {
      default = -1
    }
  }
}
EOF
}

# strongswan_start NS DIR
strongswan_start() {
  local ns="$1" dir="$2"
  [[ -n "$ns" && -d "$dir" ]] || _nl_die "usage: strongswan_start NS DIR (DIR must exist)"
  dir="$(cd "$dir" && pwd)"
  [[ -f "$dir/strongswan.conf" ]] || strongswan_conf_write "$dir"
  mkdir -p "$dir/run"
  rm -f "$dir/charon.vici"
  # charon always writes /var/run/charon.pid: give it a private /run inside the namespace's
  # own mount namespace (ip netns exec unshares one), then exec charon in the foreground.
  NETNS_TAG=charon netns_spawn "$ns" "$dir/charon.out" env STRONGSWAN_CONF="$dir/strongswan.conf" SWANCTL_DIR="$dir" \
    sh -c 'mount -n --bind "$1/run" /run && exec "$2"' sh "$dir" "$CHARON_BIN"
  echo "$NETNS_LAST_PID" >"$dir/charon.lib.pid"
  if ! netns_wait_for 15 swanctl_cmd "$dir" --stats; then
    _nl_log "charon in $ns did not come up; $dir/charon.out:"; tail -n 20 "$dir/charon.out" >&2
    tail -n 20 "$dir/charon.log" >&2 2>/dev/null
    return 1
  fi
  if [[ -f "$dir/swanctl.conf" ]]; then swanctl_load "$dir" || return 1; fi
}

strongswan_stop() { # [DIR]
  if [[ -n "${1:-}" ]]; then
    [[ -f "$1/charon.lib.pid" ]] && netns_kill "$(cat "$1/charon.lib.pid")"
    rm -f "$1/charon.lib.pid"
  else
    local pids; pids="$(_nl_pids_tagged charon)"
    # shellcheck disable=SC2086
    [[ -n "$pids" ]] && netns_kill $pids
  fi
  return 0
}

swanctl_cmd() { # DIR COMMAND [ARGS...]  (swanctl wants the command first, then --uri)
  local dir="$1" cmd="$2"; shift 2
  swanctl "$cmd" --uri "unix://$dir/charon.vici" "$@"
}
swanctl_load() {
  local dir="$1"
  SWANCTL_DIR="$dir" swanctl_cmd "$dir" --load-all --noprompt --file "$dir/swanctl.conf" >"$dir/swanctl-load.log" 2>&1 ||
    { _nl_log "swanctl --load-all failed:"; cat "$dir/swanctl-load.log" >&2; return 1; }
}
swanctl_initiate() { # DIR CHILD [TIMEOUT_S]
  swanctl_cmd "$1" --initiate --child "$2" --timeout "${3:-10}" >>"$1/swanctl-initiate.log" 2>&1
}
swanctl_initiate_async() { # DIR CHILD  (returns at once; log in DIR/swanctl-initiate.log)
  swanctl_cmd "$1" --initiate --child "$2" --timeout 10 >>"$1/swanctl-initiate.log" 2>&1 &
}
swanctl_terminate() { # DIR IKE [TIMEOUT_S]
  swanctl_cmd "$1" --terminate --ike "$2" --timeout "${3:-5}" >/dev/null 2>&1
}
swanctl_list_sas() { local dir="$1"; shift; swanctl_cmd "$dir" --list-sas "$@"; }
swanctl_sa_count() { swanctl_cmd "$1" --list-sas --raw 2>/dev/null | grep -o 'list-sa event {' | wc -l; }

# swanctl_conf_write FILE [--option VALUE]...
#   --conn NAME (tun)            --child NAME (site)
#   --local-addrs ADDR (%any)    --remote-addrs ADDR (%any)
#   --local-id ID                --remote-id ID       (defaults: the addresses / %any)
#   --auth psk|pubkey (psk)      --psk SECRET         (PSK for local-id/remote-id)
#   --cert FILE --key FILE --cacert FILE              (pubkey: own cert + key, CA trust anchor)
#   --ike PROPOSAL (aes128gcm16-prfsha256-ecp256)     --esp PROPOSAL (aes128gcm16-ecp256)
#   --suite aes128gcm16|aes256gcm16|chacha20poly1305 --dh ecp256|curve25519|ecp384
#                                (shortcut setting --ike SUITE-prfsha256-DH and --esp SUITE-DH)
#   --local-ts NET               --remote-ts NET
#   --start-action none|start|trap|start|trap (none)  --close-action none|start|trap (none)
#   --rekey-time T (child, 1h)   --ike-rekey-time T (4h)   --reauth-time T (0s)
#   --dpd-delay T (0s = off)     --dpd-action clear|restart|trap (clear)
#   --encap yes|no (yes: always UDP-encapsulate; libipsec only does ESP-in-UDP)
#   --pubkey-auth KW (pubkey): the local `auth` with --auth pubkey, e.g. rsa/pss-sha256 (sign with PSS)
#   --remote-pubkey-auth KW (as --pubkey-auth): the remote `auth`, e.g. ike:rsa/pss-sha256 (demand
#                    PSS in the peer's AUTH; without `ike:` the constraint applies to the CA's signatures too)
#   --mobike yes|no (yes)        --keyingtries N (1)
#   --fragmentation yes|accept|force|no (yes: IKE fragmentation, RFC 7383)
#   --send-cert always|ifasked|never (always)
swanctl_conf_write() {
  local file="$1"; shift
  local conn=tun child=site laddr=%any raddr=%any lid="" rid="" auth=psk psk="" cert="" key="" cacert=""
  local ike=aes128gcm16-prfsha256-ecp256 esp=aes128gcm16-ecp256 suite="" dh=""
  local lts="" rts="" start=none close=none rekey=1h ikerekey=4h reauth=0s dpd=0s dpdact=clear encap=yes
  local mobike=yes tries=1 life="" pkauth=pubkey rpkauth="" frag=yes sendcert=always
  while (($#)); do
    [[ $# -ge 2 ]] || _nl_die "swanctl_conf_write: option $1 needs a value"
    case "$1" in
      --conn) conn="$2" ;;            --child) child="$2" ;;
      --local-addrs) laddr="$2" ;;    --remote-addrs) raddr="$2" ;;
      --local-id) lid="$2" ;;         --remote-id) rid="$2" ;;
      --auth) auth="$2" ;;            --psk) psk="$2" ;;
      --pubkey-auth) pkauth="$2" ;;  --remote-pubkey-auth) rpkauth="$2" ;;
      --cert) cert="$2" ;;            --key) key="$2" ;;          --cacert) cacert="$2" ;;
      --ike) ike="$2" ;;              --esp) esp="$2" ;;
      --suite) suite="$2" ;;          --dh) dh="$2" ;;
      --local-ts) lts="$2" ;;         --remote-ts) rts="$2" ;;
      --start-action) start="$2" ;;   --close-action) close="$2" ;;
      --rekey-time) rekey="$2" ;;     --ike-rekey-time) ikerekey="$2" ;;  --reauth-time) reauth="$2" ;;
      --life-time) life="$2" ;;
      --dpd-delay) dpd="$2" ;;        --dpd-action) dpdact="$2" ;;
      --encap) encap="$2" ;;          --mobike) mobike="$2" ;;    --keyingtries) tries="$2" ;;
      --fragmentation) frag="$2" ;;   --send-cert) sendcert="$2" ;;
      *) _nl_die "swanctl_conf_write: unknown option $1" ;;
    esac
    shift 2
  done
  if [[ -n "$suite" || -n "$dh" ]]; then
    suite="${suite:-aes128gcm16}" dh="${dh:-ecp256}"
    ike="$suite-prfsha256-$dh" esp="$suite-$dh"
  fi
  [[ -n "$lts" && -n "$rts" ]] || _nl_die "swanctl_conf_write: --local-ts and --remote-ts are required"
  local lauth rauth secrets="" auths=""
  case "$auth" in
    psk)
      [[ -n "$psk" ]] || _nl_die "swanctl_conf_write: --auth psk needs --psk"
      lid="${lid:-$laddr}" rid="${rid:-%any}"
      lauth="auth = psk
      id = $lid"
      rauth="auth = psk
      id = $rid"
      secrets="  ike-test {
    secret = \"$psk\"
    id-local = $lid
$([[ "$rid" != %any ]] && echo "    id-remote = $rid")
  }"
      ;;
    pubkey)
      [[ -f "$cert" && -f "$key" && -f "$cacert" ]] || _nl_die "swanctl_conf_write: --auth pubkey needs existing --cert, --key, --cacert"
      cert="$(realpath "$cert")" key="$(realpath "$key")" cacert="$(realpath "$cacert")"
      lauth="auth = $pkauth
      certs = $cert$([[ -n "$lid" ]] && printf '\n      id = %s' "$lid")"
      rauth="auth = ${rpkauth:-$pkauth}
      cacerts = $cacert$([[ -n "$rid" ]] && printf '\n      id = %s' "$rid")"
      # private keys are only loaded from the swanctl dir (DIR/private/, SWANCTL_DIR=DIR);
      # the secrets section would only hold their passphrases
      mkdir -p "$(dirname "$file")/private"
      cp "$key" "$(dirname "$file")/private/$(basename "$key")"
      auths="authorities {
  test-ca {
    cacert = $cacert
  }
}"
      ;;
    *) _nl_die "swanctl_conf_write: --auth must be psk or pubkey" ;;
  esac
  cat >"$file" <<EOF
# generated by tests/netns/lib.sh (swanctl.conf: one setting per line, no ';')
connections {
  $conn {
    version = 2
    local_addrs = $laddr
    remote_addrs = $raddr
    proposals = $ike
    encap = $encap
    mobike = $mobike
    fragmentation = $frag
    send_cert = $sendcert
    rekey_time = $ikerekey
    reauth_time = $reauth
    dpd_delay = $dpd
    keyingtries = $tries
    local {
      $lauth
    }
    remote {
      $rauth
    }
    children {
      $child {
        mode = tunnel
        local_ts = $lts
        remote_ts = $rts
        esp_proposals = $esp
        rekey_time = $rekey$([[ -n "$life" ]] && printf '\n        life_time = %s' "$life")
        start_action = $start
        close_action = $close
        dpd_action = $dpdact
      }
    }
  }
}
secrets {
$secrets
}
$auths
EOF
}

# pki_make DIR ecdsa|rsa NAME... : DIR/ca.key, DIR/ca.crt; DIR/NAME.key, DIR/NAME.crt (CN=NAME, SAN NAME)
#   ecdsa = P-256, rsa = 3072 bits.  Uses strongSwan's `pki`, or openssl if pki is missing.
pki_make() {
  local dir="$1" type="$2"; shift 2
  mkdir -p "$dir"
  local n
  if command -v pki >/dev/null 2>&1; then
    local size=256; [[ "$type" == rsa ]] && size=3072
    [[ "$type" == ecdsa || "$type" == rsa ]] || _nl_die "pki_make: type must be ecdsa or rsa"
    # (pki prints TPM plugin noise on stderr; real errors are caught by the exit status)
    pki --gen --type "$type" --size "$size" --outform pem >"$dir/ca.key" 2>/dev/null &&
    pki --self --ca --lifetime 30 --in "$dir/ca.key" --type "$type" --dn "CN=dodvpn test CA $type" \
        --outform pem >"$dir/ca.crt" 2>/dev/null || _nl_die "pki: CA generation failed"
    for n in "$@"; do
      pki --gen --type "$type" --size "$size" --outform pem >"$dir/$n.key" 2>/dev/null &&
      pki --pub --in "$dir/$n.key" --type "$type" 2>/dev/null |
        pki --issue --lifetime 30 --cacert "$dir/ca.crt" --cakey "$dir/ca.key" --dn "CN=$n" --san "$n" \
            --flag serverAuth --flag clientAuth --outform pem >"$dir/$n.crt" 2>/dev/null || _nl_die "pki: cert $n failed"
    done
  else
    local -a alg
    if [[ "$type" == rsa ]]; then alg=(-algorithm RSA -pkeyopt rsa_keygen_bits:3072)
    else alg=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256); fi
    openssl genpkey "${alg[@]}" -out "$dir/ca.key" 2>/dev/null &&
    openssl req -x509 -new -key "$dir/ca.key" -subj "/CN=dodvpn test CA $type" -days 30 -sha256 \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -out "$dir/ca.crt" 2>/dev/null || _nl_die "openssl: CA generation failed"
    for n in "$@"; do
      openssl genpkey "${alg[@]}" -out "$dir/$n.key" 2>/dev/null &&
      openssl req -new -key "$dir/$n.key" -subj "/CN=$n" -out "$dir/$n.csr" 2>/dev/null &&
      openssl x509 -req -in "$dir/$n.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
        -sha256 -extfile <(printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$n") \
        -out "$dir/$n.crt" 2>/dev/null || _nl_die "openssl: cert $n failed"
    done
  fi
}

# ---------------------------------------------------------------- wireguard-go
# Interface name: unique per namespace, because wireguard-go's UAPI socket lives in the shared
# /var/run/wireguard/<ifname>.sock.
_wg_ifname() { local s; s="$(printf '%s' "$1" | cksum | awk '{print $1}')"; echo "wg${s:0:10}"; }

# wg_start NS DIR [LISTEN_PORT] [TUN_ADDR/PFX] [MTU] — key pair in DIR/wg.{key,pub}; sets WG_IF
wg_start() {
  local ns="$1" dir="$2" port="${3:-51820}" addr="${4:-}" mtu="${5:-1400}"
  mkdir -p "$dir"
  local ifn; ifn="$(_wg_ifname "$ns")"
  [[ -f "$dir/wg.key" ]] || { (umask 077; wg genkey >"$dir/wg.key"); wg pubkey <"$dir/wg.key" >"$dir/wg.pub"; }
  echo "$ifn" >"$dir/wg.ifname"
  echo "$port" >"$dir/wg.port"
  NETNS_TAG=wg netns_spawn "$ns" "$dir/wireguard-go.log" env LOG_LEVEL="${WG_LOG_LEVEL:-error}" wireguard-go -f "$ifn"
  echo "$NETNS_LAST_PID" >"$dir/wg.lib.pid"
  netns_wait_for 10 test -S "/var/run/wireguard/$ifn.sock" || { cat "$dir/wireguard-go.log" >&2; return 1; }
  ip netns exec "$ns" wg set "$ifn" private-key "$dir/wg.key" listen-port "$port" || return 1
  ip -n "$ns" link set "$ifn" mtu "$mtu" up || return 1
  [[ -n "$addr" ]] && ip -n "$ns" addr add "$addr" dev "$ifn"
  WG_IF="$ifn"
}

# wg_add_peer NS DIR_SELF DIR_PEER ENDPOINT ALLOWED_IPS [ROUTE_SRC]
#   routes every network in ALLOWED_IPS (comma-separated) via the wg interface, with ROUTE_SRC as source
wg_add_peer() {
  local ns="$1" self="$2" peer="$3" ep="$4" allowed="$5" src="${6:-}"
  local ifn; ifn="$(cat "$self/wg.ifname")"
  ip netns exec "$ns" wg set "$ifn" peer "$(cat "$peer/wg.pub")" endpoint "$ep" allowed-ips "$allowed" || return 1
  local net
  for net in ${allowed//,/ }; do
    ip -n "$ns" route replace "$net" dev "$ifn" ${src:+src "$src"}
  done
}

wg_remove_peer() { # NS DIR_SELF DIR_PEER
  ip netns exec "$1" wg set "$(cat "$2/wg.ifname")" peer "$(cat "$3/wg.pub")" remove
}

wg_stop() { # [DIR]
  if [[ -n "${1:-}" ]]; then
    [[ -f "$1/wg.lib.pid" ]] && netns_kill "$(cat "$1/wg.lib.pid")"
    rm -f "$1/wg.lib.pid"
  else
    local pids; pids="$(_nl_pids_tagged wg)"
    # shellcheck disable=SC2086
    [[ -n "$pids" ]] && netns_kill $pids
  fi
  return 0
}

# ---------------------------------------------------------------- nebula
nebula_ca() { # DIR
  mkdir -p "$1"
  [[ -f "$1/ca.crt" ]] || nebula-cert ca -name "dodvpn-bench" -duration 720h -out-crt "$1/ca.crt" -out-key "$1/ca.key" >/dev/null
}
nebula_cert() { # DIR NAME OVERLAY_IP/PFX [SUBNETS]
  local dir="$1" name="$2" ip="$3" subnets="${4:-}"
  rm -f "$dir/$name.crt" "$dir/$name.key"
  nebula-cert sign -ca-crt "$dir/ca.crt" -ca-key "$dir/ca.key" -name "$name" -ip "$ip" \
    ${subnets:+-subnets "$subnets"} -out-crt "$dir/$name.crt" -out-key "$dir/$name.key" >/dev/null
}

# nebula_config_write DIR NAME OVERLAY_IP LISTEN_PORT PEER_OVERLAY PEER_ENDPOINT [UNSAFE_NET] [MTU] [CIPHER]
#   No lighthouse: static_host_map points at the peer (write both ends).  UNSAFE_NET: the peer's site
#   subnet, routed via the peer's overlay address (the peer's cert must list it in -subnets).
nebula_config_write() {
  local dir="$1" name="$2" ip="$3" port="$4" pip="$5" pep="$6" unsafe="${7:-}" mtu="${8:-1400}" cipher="${9:-aes}"
  local dev; dev="neb$(printf '%s' "$dir$name" | cksum | awk '{print substr($1,1,8)}')"
  {
    cat <<EOF
# generated by tests/netns/lib.sh; overlay $ip
pki:
  ca: $dir/ca.crt
  cert: $dir/$name.crt
  key: $dir/$name.key
static_host_map:
  "$pip": ["$pep"]
lighthouse:
  am_lighthouse: false
  interval: 60
  hosts: []
listen:
  host: 0.0.0.0
  port: $port
punchy:
  punch: false
cipher: $cipher
tun:
  disabled: false
  dev: $dev
  drop_local_broadcast: false
  drop_multicast: false
  tx_queue: 500
  mtu: $mtu
EOF
    if [[ -n "$unsafe" ]]; then
      cat <<EOF
  unsafe_routes:
    - route: $unsafe
      via: $pip
      mtu: $mtu
EOF
    fi
    cat <<EOF
logging:
  level: ${NEBULA_LOG_LEVEL:-info}
  format: text
firewall:
  conntrack:
    tcp_timeout: 12m
    udp_timeout: 3m
    default_timeout: 10m
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: any
      host: any
EOF
  } >"$dir/$name.yml"
  echo "$dev" >"$dir/$name.dev"
}

nebula_start() { # NS DIR NAME
  local ns="$1" dir="$2" name="$3" dev
  dev="$(cat "$dir/$name.dev")"
  NETNS_TAG=nebula netns_spawn "$ns" "$dir/$name.log" nebula -config "$dir/$name.yml"
  echo "$NETNS_LAST_PID" >"$dir/$name.lib.pid"
  netns_wait_for 10 ip -n "$ns" link show "$dev" up || { tail -n 20 "$dir/$name.log" >&2; return 1; }
  NEBULA_DEV="$dev"
}

nebula_stop() { # [DIR NAME]
  if [[ -n "${1:-}" ]]; then
    [[ -f "$1/$2.lib.pid" ]] && netns_kill "$(cat "$1/$2.lib.pid")"
    rm -f "$1/$2.lib.pid"
  else
    local pids; pids="$(_nl_pids_tagged nebula)"
    # shellcheck disable=SC2086
    [[ -n "$pids" ]] && netns_kill $pids
  fi
  return 0
}

# ---------------------------------------------------------------- small helpers for tests
# tcp_transfer NS_SRC NS_DST DST_ADDR SRC_ADDR MBYTES DIR PORT — sha256 compared on both ends (socat)
tcp_transfer() {
  local src="$1" dst="$2" daddr="$3" saddr="$4" mb="$5" dir="$6" port="${7:-5001}"
  head -c "$((mb * 1024 * 1024))" /dev/urandom >"$dir/tx.bin"
  rm -f "$dir/rx.bin"
  netns_spawn "$dst" "$dir/socat-rx.log" timeout 120 socat -u \
    "TCP-LISTEN:$port,bind=$daddr,reuseaddr" "OPEN:$dir/rx.bin,creat,trunc"
  local rxpid="$NETNS_LAST_PID"
  netns_wait_for 5 ip netns exec "$dst" sh -c "ss -ltn | grep -qF '$daddr:$port '" || { netns_kill "$rxpid"; return 1; }
  if ! ip netns exec "$src" timeout 120 socat -u "OPEN:$dir/tx.bin" "TCP:$daddr:$port,bind=$saddr" 2>"$dir/socat-tx.log"; then
    netns_kill "$rxpid"; _nl_log "socat sender failed: $(cat "$dir/socat-tx.log")"; return 1
  fi
  local i
  for ((i = 0; i < 200; i++)); do [[ -e /proc/$rxpid ]] || break; sleep 0.05; done
  netns_kill "$rxpid"
  local h1 h2
  h1="$(sha256sum <"$dir/tx.bin" | cut -d' ' -f1)"
  h2="$(sha256sum <"$dir/rx.bin" 2>/dev/null | cut -d' ' -f1)"
  TCP_TRANSFER_SHA="$h1"
  [[ -n "$h1" && "$h1" == "$h2" ]] || { _nl_log "sha256 mismatch: sent $h1, received ${h2:-nothing}"; return 1; }
}

# ---------------------------------------------------------------- dodvpn: TR D.6 enrolment
# d6_enrol BIN WAN_NS DEVICE_NS URL CENTRE_DATA DEVICE KEYSTORE [AGENT_ENROLL_ARGS...]
#   TR D.6 d–l for a registered device and its key store directory: the
#   provider (in WAN_NS, with CENTRE_DATA's root and admin token) provisions the tier-1 key
#   and delivers; the service is applied for and approved; the device (in DEVICE_NS) enrols
#   its tier-2 key (extra arguments go to `agent enroll`, e.g. --csr); the service starts.
#   Passphrase from DODVPN_KEYSTORE_PASSPHRASE. The same sequence as crates/cli/src/demo/enrol.rs.
d6_enrol() {
  local bin="$1" wan="$2" dns="$3" url="$4" data="$5" dev="$6" ks="$7" s; shift 7
  local c=(--center "$url" --ca "$data/pki/root.pem" --credential-file "$data/admin.token")
  ip netns exec "$wan" "$bin" device provision "${c[@]}" --keystore "$ks" --device "$dev" >/dev/null ||
    { _nl_log "d6_enrol: provision $dev failed"; return 1; }
  for s in "device deliver" "service apply" "service approve"; do
    # shellcheck disable=SC2086
    ip netns exec "$wan" "$bin" admin --json "${c[@]}" $s "$dev" >/dev/null || { _nl_log "d6_enrol: $s $dev failed"; return 1; }
  done
  ip netns exec "$dns" "$bin" agent enroll --keystore "$ks" --center "$url" "$@" >/dev/null ||
    { _nl_log "d6_enrol: agent enroll $dev failed"; return 1; }
  ip netns exec "$wan" "$bin" admin --json "${c[@]}" service start "$dev" >/dev/null ||
    { _nl_log "d6_enrol: service start $dev failed"; return 1; }
}
