#!/usr/bin/env bash
# bench/mesh.sh — a many-site mesh, dodvpn and nebula side by side (issue 4, performance).
#
#   sudo bash bench/mesh.sh                      # 50 sites x 5 peers = 250 pairs (~4 min on 2 cores)
#   SITES=6 PEERS=2 REPS=3 sudo -E bash bench/mesh.sh   # smoke run (~2 min)
#
# One run, in network namespaces on one bridge ("internet" 192.0.2.0/24):
#   * a centre (`dodvpn center`, SQLite) at 192.0.2.1 in the bridge namespace;
#   * SITES site namespaces, site n at 192.0.2.(10+n) with its inside network 10.n.0.0/24
#     (host 10.n.0.1 on a dummy interface), as in `dodvpn demo`;
#   * dodvpn: every site enrolled through TR D.6 a–l with the real CLI, one group, an open
#     policy per organisation, connection applications i -> i+1 .. i+PEERS (mod SITES), one
#     `dodvpn agent run` per site; then the same namespaces with nebula (static host map,
#     no lighthouse, unsafe_routes for the peers' site subnets).
# Measured (see bench/README.md, "Mesh"): time until every pair answers when all sites start
# at once, agent RSS (idle grant, live tunnel), revocation-to-drop, nebula's equivalents.
# Output: a table on stdout and bench/results/mesh-<UTC timestamp>.json.
#
# Knobs (environment):
#   SITES=50 PEERS=5          mesh size (PEERS < SITES/2, so that every pair is distinct)
#   REPS=10                   revocation samples per system (different devices each time)
#   UP_REPS=3                 repetitions of the "all sites start at once" measurement
#   IDLE_TIMEOUT=12s          agent idle timeout (tunnels must go idle between UP_REPS)
#   PROBE_MS=20               echo interval per pair (up and cut probes)
#   ENROLL_JOBS=3             sites enrolled / applications sent concurrently
#   ONLY="dodvpn nebula"      run a subset
#   DODVPN_BIN=target/release/dodvpn   (built with cargo build --release -p dodvpn if missing)
#   NETNS_KEEP=1              keep the work directory (logs, configs, raw probe output)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=../tests/netns/lib.sh
. "$ROOT/tests/netns/lib.sh"

SITES="${SITES:-50}"
PEERS="${PEERS:-5}"
REPS="${REPS:-10}"
UP_REPS="${UP_REPS:-3}"
IDLE_TIMEOUT="${IDLE_TIMEOUT:-12s}"
PROBE_MS="${PROBE_MS:-20}"
ENROLL_JOBS="${ENROLL_JOBS:-3}"
ONLY="${ONLY:-dodvpn nebula}"
BIN="${DODVPN_BIN:-$ROOT/target/release/dodvpn}"
PROBE="$HERE/mesh/probe.py"
PASS="mesh-bench-keystore-passphrase"
CENTRE=192.0.2.1
URL="https://$CENTRE:8443"
export DODVPN_KEYSTORE_PASSPHRASE="$PASS"   # the sites' key stores (provision, enrol, agent)

((PEERS * 2 < SITES)) || { echo "PEERS ($PEERS) must be < SITES/2 ($SITES)" >&2; exit 2; }
((SITES <= 240)) || { echo "SITES at most 240" >&2; exit 2; }
((REPS <= SITES - 1)) || REPS=$((SITES - 1))

require_root_and_tools nebula python
if [[ ! -x "$BIN" ]]; then
  echo "building $BIN (cargo build --release -p dodvpn)" >&2
  (cd "$ROOT" && cargo build --release -p dodvpn)
fi
netns_trap_cleanup
work="$(netns_workdir mesh)"
T_START=$SECONDS
say() { printf '[mesh %4ds] %s\n' "$((SECONDS - T_START))" "$*" >&2; }
now_ms() { date +%s%3N; }

TAG="m$(($$ % 100000))"
WAN="$TAG-wan"
ns_of() { echo "$TAG-s$1"; }         # site n = 1..SITES
peer_of() { echo $(( ($1 - 1 + $2) % SITES + 1 )); }   # site n, k -> n+k (mod, 1-based)

LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
declare -A PHASE=()   # phase -> seconds

# ------------------------------------------------------------------ topology
build_topology() {
  local t0; t0="$(now_ms)"
  say "building $SITES site namespaces on a bridge"
  _nl_ns_add "$WAN"
  ip -n "$WAN" link add br0 type bridge
  ip -n "$WAN" addr add "$CENTRE/24" dev br0
  ip -n "$WAN" link set br0 up
  local n ns
  for ((n = 1; n <= SITES; n++)); do
    ns="$(ns_of "$n")"
    _nl_ns_add "$ns"
    ip link add "v$n" netns "$WAN" type veth peer name out0 netns "$ns"
    ip -n "$WAN" link set "v$n" master br0 up
    ip -n "$ns" addr add "192.0.2.$((10 + n))/24" dev out0
    ip -n "$ns" link set out0 up
    _nl_site "$ns" "10.$n.0.1"
  done
  netns_wait_for 10 ip netns exec "$(ns_of "$SITES")" ping -c1 -W1 -q "$CENTRE" || _nl_die "bridge: no ping"
  PHASE[topology_s]="$(( ($(now_ms) - t0) ))e-3"
}

# the mesh pairs as probe input: site n -> n+1..n+PEERS
pairs_json() { # [SITE...]: only pairs whose both ends are listed (default: all)
  local n k m
  {
    echo '{"pairs":['
    local sep=""
    for ((n = 1; n <= SITES; n++)); do
      for ((k = 1; k <= PEERS; k++)); do
        m="$(peer_of "$n" "$k")"
        printf '%s{"ns":"%s","src":"10.%d.0.1","dst":"10.%d.0.1"}' "$sep" "$(ns_of "$n")" "$n" "$m"
        sep=","
      done
    done
    echo ']}'
  }
}

# pairs touching site D (D -> D+k and D-k -> D), skipping sites in the list REVOKED
cut_pairs_json() { # D REVOKED_LIST
  local d="$1" revoked=" $2 " k m sep=""
  echo '{"pairs":['
  for ((k = 1; k <= PEERS; k++)); do
    m="$(peer_of "$d" "$k")"
    [[ "$revoked" == *" $m "* ]] && continue
    printf '%s{"ns":"%s","src":"10.%d.0.1","dst":"10.%d.0.1"}' "$sep" "$(ns_of "$d")" "$d" "$m"; sep=","
  done
  for ((k = 1; k <= PEERS; k++)); do
    m="$(peer_of "$d" "$((SITES - k))")"
    [[ "$revoked" == *" $m "* ]] && continue
    printf '%s{"ns":"%s","src":"10.%d.0.1","dst":"10.%d.0.1"}' "$sep" "$(ns_of "$m")" "$m" "$d"; sep=","
  done
  echo ']}'
}

rss_of() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
rss_snapshot() { # FILE PID... : "pid kib" lines
  local f="$1"; shift
  : >"$f"
  local p
  for p in "$@"; do echo "$p $(rss_of "$p")" >>"$f"; done
}

revoke_sites() { # the REPS sites revoked, spread over the mesh
  local j
  for ((j = 0; j < REPS; j++)); do echo $((j * SITES / REPS + 1)); done
}

# ------------------------------------------------------------------ dodvpn
admin() {
  ip netns exec "$WAN" "$BIN" admin --json --center "$URL" --ca "$work/center/pki/root.pem" \
    --credential-file "$work/center/admin.token" "$@"
}

enrol_site() { # N : TR D.6 a-l for site N; writes work/site-N.env
  local n="$1" ns org dev ks
  ns="$(ns_of "$n")"
  ks="$work/ks-$n"
  org="$(admin org create "Mesh site $n" --kind hospital | jq -r .id)"
  dev="$(admin device register --serial "MESH-$TAG-$n" --model MESH-1 --owner "$org" --order "$ORDER" \
          --endpoint "192.0.2.$((10 + n))" --subnet "10.$n.0.0/24" | jq -r .id)"
  d6_enrol "$BIN" "$WAN" "$ns" "$URL" "$work/center" "$dev" "$ks" || return 1
  admin group add mesh "$dev" >/dev/null
  printf '%s\n' '{"inbound":[{"from":"*","services":["any"]}],"outbound":[{"to":"*","services":["any"]}]}' >"$work/policy-$n.json"
  admin policy set "$org" --file "$work/policy-$n.json" >/dev/null
  echo "ORG=$org DEV=$dev" >"$work/site-$n.env"
}
dev_of() { sed -n 's/.*DEV=\([^ ]*\).*/\1/p' "$work/site-$1.env"; }

pool_run() { # FUNC ARGS... over a job pool of ENROLL_JOBS; label for progress in POOL_LABEL
  local f="$1"; shift
  local total=$# done_=0 running=0 fail=0 a
  for a in "$@"; do
    "$f" $a >"$work/pool-$f-${a// /_}.log" 2>&1 &
    running=$((running + 1))
    if ((running >= ENROLL_JOBS)); then
      wait -n || fail=$((fail + 1)); running=$((running - 1)); done_=$((done_ + 1))
      ((done_ % 10 == 0)) && say "  $POOL_LABEL $done_/$total"
    fi
  done
  while ((running > 0)); do
    wait -n || fail=$((fail + 1)); running=$((running - 1)); done_=$((done_ + 1))
    ((done_ % 10 == 0 || done_ == total)) && say "  $POOL_LABEL $done_/$total"
  done
  ((fail == 0)) || { say "$fail of $total $POOL_LABEL failed; first log:"; grep -l . "$work"/pool-"$f"-*.log | head -1 | xargs tail -5 >&2; return 1; }
}

apply_conn() { # N M
  local n="$1" m="$2" out
  out="$(admin connection apply --from "$(dev_of "$n")" --to "$(dev_of "$m")")"
  [[ "$(jq -r '.outcomes[0].granted' <<<"$out")" == true ]] || { echo "not granted: $out"; return 1; }
}

tunnel_status() { ip netns exec "$(ns_of "$1")" "$BIN" tunnel status --json --control "$work/agent-$1.sock" 2>/dev/null; }
count_all() { # -> "connections children" summed over sites
  local n c=0 ch=0 out
  for ((n = 1; n <= SITES; n++)); do
    out="$(tunnel_status "$n" | jq -r '[(.connections|length), ([.connections[].children|length]|add // 0)]|@tsv')" || continue
    c=$((c + ${out%%$'\t'*})); ch=$((ch + ${out##*$'\t'}))
  done
  echo "$c $ch"
}

declare -a AGENT_PID=()
run_dodvpn() {
  local t0 n
  say "dodvpn: centre starting in $WAN ($URL)"
  NETNS_TAG=centre netns_spawn "$WAN" "$work/center.log" "$BIN" center --data "$work/center" \
    --listen "$CENTRE:8443" --tls-name "$CENTRE"
  CENTRE_PID="$NETNS_LAST_PID"
  netns_wait_for 60 sh -c "test -f '$work/center/admin.token'" || _nl_die "centre did not start (see $work/center.log)"
  netns_wait_for 60 admin org list || _nl_die "centre does not answer"

  t0="$(now_ms)"
  say "dodvpn: enrolling $SITES sites (TR D.6 a–l, $ENROLL_JOBS at a time)"
  local vorg
  vorg="$(admin org create "Mesh device provider" --kind vendor | jq -r .id)"
  ORDER="$(admin order create --org "$vorg" --model MESH-1 | jq -r .id)"
  admin group create mesh >/dev/null
  POOL_LABEL="sites enrolled" pool_run enrol_site $(seq 1 "$SITES")
  PHASE[dodvpn_enrol_s]="$(( $(now_ms) - t0 ))e-3"

  say "dodvpn: starting $SITES agents (idle timeout $IDLE_TIMEOUT)"
  t0="$(now_ms)"
  for ((n = 1; n <= SITES; n++)); do
    DODVPN_LOG=warn NETNS_TAG=agent netns_spawn "$(ns_of "$n")" "$work/agent-$n.log" \
      "$BIN" agent run --keystore "$work/ks-$n" --control "$work/agent-$n.sock" --idle-timeout "$IDLE_TIMEOUT"
    AGENT_PID[n]="$NETNS_LAST_PID"
    # two at a time: each start opens its key store (a KDF)
    if ((n % 2 == 0 || n == SITES)); then
      netns_wait_for 60 tunnel_status "$n" || _nl_die "agent $n did not start (see $work/agent-$n.log)"
      ((n > 1)) && { netns_wait_for 60 tunnel_status "$((n - 1))" || _nl_die "agent $((n - 1)) did not start"; }
    fi
    ((n % 10 == 0)) && say "  agents running $n/$SITES"
  done
  PHASE[dodvpn_agents_start_s]="$(( $(now_ms) - t0 ))e-3"
  sleep 3
  rss_snapshot "$work/rss-dodvpn-nogrants.txt" "${AGENT_PID[@]}"
  rss_snapshot "$work/rss-centre.txt" "$CENTRE_PID"

  say "dodvpn: $((SITES * PEERS)) connection applications (site i -> i+1..i+$PEERS)"
  t0="$(now_ms)"
  local -a conns=()
  for ((n = 1; n <= SITES; n++)); do
    for ((k = 1; k <= PEERS; k++)); do conns+=("$n $(peer_of "$n" "$k")"); done
  done
  POOL_LABEL="grants" pool_run apply_conn "${conns[@]}"
  local want=$((SITES * PEERS * 2)) got=""
  say "dodvpn: waiting until every agent shows its $((2 * PEERS)) connections ($want in all)"
  local end=$((SECONDS + 120))
  while ((SECONDS < end)); do
    got="$(count_all)"
    ((${got% *} >= want)) && break
    sleep 1
  done
  ((${got% *} >= want)) || _nl_die "only ${got% *} of $want connections installed"
  PHASE[dodvpn_grants_installed_s]="$(( $(now_ms) - t0 ))e-3"
  say "dodvpn: $got (connections, child SAs) installed"
  sleep 3
  rss_snapshot "$work/rss-dodvpn-grants.txt" "${AGENT_PID[@]}"

  local r
  for ((r = 1; r <= UP_REPS; r++)); do
    if ((r > 1)); then
      say "dodvpn: waiting for the tunnels to go idle (idle timeout $IDLE_TIMEOUT)"
      end=$((SECONDS + 180))
      while ((SECONDS < end)); do got="$(count_all)"; ((${got#* } == 0)) && break; sleep 2; done
      ((${got#* } == 0)) || { say "tunnels did not go idle ($got), stopping repetitions"; break; }
    fi
    say "dodvpn: up #$r — all $SITES sites start sending to their $PEERS peers at once"
    pairs_json | python3 "$PROBE" up --interval-ms "$PROBE_MS" --timeout 120 >"$work/up-dodvpn-$r.json"
    say "  $(jq -r '"\(.answered)/\(.total) pairs answered, all up after \(.all_up_ms) ms"' "$work/up-dodvpn-$r.json")"
    if ((r == 1)); then
      rss_snapshot "$work/rss-dodvpn-live.txt" "${AGENT_PID[@]}"
      count_all >"$work/live-count-dodvpn.txt"
      say "  (connections, child SAs) now: $(cat "$work/live-count-dodvpn.txt")"
    fi
  done

  say "dodvpn: revocation-to-drop, $REPS devices (device revoke while echoes run every ${PROBE_MS} ms)"
  local revoked="" d j=0
  for d in $(revoke_sites); do
    j=$((j + 1))
    local cmd
    cmd="$(jq -cn --arg w "$WAN" --arg b "$BIN" --arg u "$URL" --arg ca "$work/center/pki/root.pem" \
      --arg t "$work/center/admin.token" --arg dev "$(dev_of "$d")" \
      '["ip","netns","exec",$w,$b,"admin","--json","--center",$u,"--ca",$ca,"--credential-file",$t,"device","revoke",$dev,"--reason","mesh benchmark"]')"
    cut_pairs_json "$d" "$revoked" | python3 "$PROBE" cut --interval-ms 10 --timeout 20 --cmd "$cmd" >"$work/cut-dodvpn-$j.json"
    revoked="$revoked $d"
    say "  revoke site $d: $(jq -r '"traffic stopped after \(.stop_ms) ms (CLI returned after \(.cmd_ms) ms, \(.pairs|length) pairs, \(.cold_pairs) not warm)"' "$work/cut-dodvpn-$j.json")"
  done

  say "dodvpn: stopping agents and centre"
  netns_kill "${AGENT_PID[@]}" "$CENTRE_PID"
  for ((n = 1; n <= SITES; n++)); do ip -n "$(ns_of "$n")" link del dodvpn0 2>/dev/null || true; done
}

# ------------------------------------------------------------------ nebula
NB=""
declare -a NB_PID=()
nb_conf() { # N BLOCKLIST_FILE OUT
  local n="$1" bl="$2" out="$3" k m
  {
    cat <<EOF
pki:
  ca: $NB/ca.crt
  cert: $NB/s$n.crt
  key: $NB/s$n.key
  disconnect_invalid: true
  blocklist:
EOF
    sed 's/^/    - /' "$bl"
    echo "static_host_map:"
    for ((k = 1; k <= PEERS; k++)); do
      for m in "$(peer_of "$n" "$k")" "$(peer_of "$n" "$((SITES - k))")"; do
        echo "  \"100.64.0.$m\": [\"192.0.2.$((10 + m)):4242\"]"
      done
    done
    cat <<EOF
lighthouse:
  am_lighthouse: false
  interval: 60
  hosts: []
listen:
  host: 0.0.0.0
  port: 4242
punchy:
  punch: false
cipher: aes
tun:
  disabled: false
  dev: neb0
  drop_local_broadcast: false
  drop_multicast: false
  tx_queue: 500
  mtu: 1400
  unsafe_routes:
EOF
    for ((k = 1; k <= PEERS; k++)); do
      for m in "$(peer_of "$n" "$k")" "$(peer_of "$n" "$((SITES - k))")"; do
        printf '    - route: 10.%d.0.0/24\n      via: 100.64.0.%d\n      mtu: 1400\n' "$m" "$m"
      done
    done
    cat <<EOF
logging:
  level: warning
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
  } >"$out"
}

nb_start_all() {
  local n
  for ((n = 1; n <= SITES; n++)); do
    echo neb0 >"$NB/s$n.dev"
    nebula_start "$(ns_of "$n")" "$NB" "s$n" || _nl_die "nebula s$n did not start"
    NB_PID[n]="$NETNS_LAST_PID"
  done
}
nb_stop_all() { local n; for ((n = 1; n <= SITES; n++)); do nebula_stop "$NB" "s$n"; done; }

run_nebula() {
  NB="$work/nebula"
  local n t0
  say "nebula: CA, $SITES certificates and configs (static host map of the $((2 * PEERS)) peers, no lighthouse)"
  nebula_ca "$NB"
  : >"$NB/blocklist"
  for ((n = 1; n <= SITES; n++)); do
    nebula_cert "$NB" "s$n" "100.64.0.$n/16" "10.$n.0.0/24"
    nb_conf "$n" "$NB/blocklist" "$NB/s$n.yml"
  done
  t0="$(now_ms)"
  nb_start_all
  PHASE[nebula_start_s]="$(( $(now_ms) - t0 ))e-3"
  sleep 3
  rss_snapshot "$work/rss-nebula-idle.txt" "${NB_PID[@]}"
  local r
  for ((r = 1; r <= UP_REPS; r++)); do
    if ((r > 1)); then say "nebula: restarting all nodes (cold tunnels)"; nb_stop_all; nb_start_all; sleep 1; fi
    say "nebula: up #$r — all $SITES sites start sending to their $PEERS peers at once"
    pairs_json | python3 "$PROBE" up --interval-ms "$PROBE_MS" --timeout 120 >"$work/up-nebula-$r.json"
    say "  $(jq -r '"\(.answered)/\(.total) pairs answered, all up after \(.all_up_ms) ms"' "$work/up-nebula-$r.json")"
    ((r == 1)) && rss_snapshot "$work/rss-nebula-live.txt" "${NB_PID[@]}"
  done

  say "nebula: revocation-to-drop, $REPS nodes (fingerprint added to pki.blocklist of its peers + SIGHUP, disconnect_invalid: true)"
  local d j=0 revoked="" fp p cmdsh k
  for d in $(revoke_sites); do
    j=$((j + 1))
    fp="$(nebula-cert print -json -path "$NB/s$d.crt" | jq -r .fingerprint)"
    cp "$NB/blocklist" "$NB/blocklist.next"; echo "$fp" >>"$NB/blocklist.next"
    cmdsh=""
    for ((k = 1; k <= PEERS; k++)); do
      for p in "$(peer_of "$d" "$k")" "$(peer_of "$d" "$((SITES - k))")"; do
        [[ " $revoked " == *" $p "* ]] && continue
        nb_conf "$p" "$NB/blocklist.next" "$NB/s$p.yml.next"
        cmdsh+="mv $NB/s$p.yml.next $NB/s$p.yml; kill -HUP ${NB_PID[p]}; "
      done
    done
    mv "$NB/blocklist.next" "$NB/blocklist"
    cut_pairs_json "$d" "$revoked" | python3 "$PROBE" cut --interval-ms 10 --timeout 30 \
      --cmd "$(jq -cn --arg c "$cmdsh" '["bash","-c",$c]')" >"$work/cut-nebula-$j.json"
    revoked="$revoked $d"
    say "  blocklist site $d: $(jq -r '"traffic stopped after \(.stop_ms) ms (reload sent after \(.cmd_ms) ms, \(.pairs|length) pairs, \(.cold_pairs) not warm)"' "$work/cut-nebula-$j.json")"
  done
  nb_stop_all
}

# ------------------------------------------------------------------ main
build_topology
[[ " $ONLY " == *" dodvpn "* ]] && run_dodvpn
[[ " $ONLY " == *" nebula "* ]] && run_nebula

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$ROOT/bench/results"
out="$ROOT/bench/results/mesh-$stamp.json"
phases="{"; sep=""
for k in "${!PHASE[@]}"; do phases+="$sep\"$k\":${PHASE[$k]}"; sep=","; done; phases+="}"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || commit="$commit+dirty"
python3 "$HERE/mesh/report.py" --work "$work" --out "$out" \
  --meta "$(jq -cn --argjson sites "$SITES" --argjson peers "$PEERS" --argjson reps "$REPS" \
    --argjson up_reps "$UP_REPS" --arg idle "$IDLE_TIMEOUT" --argjson probe_ms "$PROBE_MS" \
    --arg load_start "$LOADAVG_START" --arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --argjson nproc "$(nproc)" --arg kernel "$(uname -r)" --arg commit "$commit" --arg stamp "$stamp" \
    --arg cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
    --arg nebula "$(nebula -version 2>/dev/null | awk '{print $2}')" \
    --argjson wall "$((SECONDS - T_START))" --argjson phases "$phases" --arg only "$ONLY" \
    '{sites:$sites, peers:$peers, pairs:($sites*$peers), revocation_samples:$reps, up_repetitions:$up_reps,
      idle_timeout:$idle, probe_interval_ms:$probe_ms, nproc:$nproc, cpu:$cpu, kernel:$kernel,
      loadavg_start:$load_start, loadavg_end:$load_end, commit:$commit, timestamp:$stamp,
      nebula_version:$nebula, wall_seconds:$wall, phases_s:$phases, systems:($only|split(" "))}')"
say "done in $((SECONDS - T_START)) s; JSON: $out"
