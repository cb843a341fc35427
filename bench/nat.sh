#!/usr/bin/env bash
# bench/nat.sh — sites without a fixed address (issue 19), dodvpn beside nebula, one run.
#
#   sudo bash bench/nat.sh              # REPS=5 samples per case and system (~8 min on 2 cores)
#
# The same topology for both (tests/netns/agent_punch.sh draws it): a centre / lighthouse
# and relay at 192.0.2.1, a hospital and a lab on fixed addresses, clinic 1 behind a
# port-restricted nftables NAT, clinic 2 behind a full-cone-like one, clinics 3 and 4
# behind symmetric NATs (masquerade random). Cases:
#   direct    hospital → lab (fixed addresses)
#   punched   clinic 2 → clinic 1, hospital → clinic 1 (the port-restricted NAT drops the
#             first datagrams until clinic 1 opens its mapping)
#   relayed   clinic 3 → clinic 4 (symmetric both: the relay)
# Measured: setup time (first ping answered after the tunnel went down and the NATs'
# mappings expired; p50/p99), round trip and iperf3 throughput over each path (so the
# relay's added latency and its throughput against direct).
#   dodvpn: tests/netns/agent_punch.sh with PUNCH_SETUP_OUT/PUNCH_REPS (the test's checks
#           run too); its centre introduces the sites, `dodvpn relay` relays.
#   nebula: a lighthouse that is also a relay (am_relay) at 192.0.2.1, punchy on every
#           node, use_relays; each repetition restarts both nodes (cold tunnel).
# Output: a table and bench/results/nat-<UTC>.json (medians, p99, ratios dodvpn/nebula).
# Knobs: REPS=5, DODVPN_BIN (default target/release/dodvpn, else target/debug/dodvpn),
#        ONLY="dodvpn nebula", NETNS_KEEP=1.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
. "$ROOT/tests/netns/lib.sh"
REPS="${REPS:-5}"
ONLY="${ONLY:-dodvpn nebula}"
BIN="${DODVPN_BIN:-$ROOT/target/release/dodvpn}"
[[ -x "$BIN" ]] || BIN="$ROOT/target/debug/dodvpn"
require_root_and_tools nat nebula socat
command -v iperf3 >/dev/null || _nl_die "iperf3 is needed"
netns_trap_cleanup
work="$(netns_workdir natbench)"
out="$work/samples.jsonl"
: >"$out"
ts="$(date -u +%Y%m%dT%H%M%SZ)"
t_start="$(date +%s)"
now_ms() { date +%s%3N; }

# ------------------------------------------------------------------ dodvpn
if [[ " $ONLY " == *" dodvpn "* ]]; then
  echo "dodvpn: tests/netns/agent_punch.sh, $REPS samples per case …" >&2
  PUNCH_SETUP_OUT="$work/dodvpn.jsonl" PUNCH_REPS="$REPS" DODVPN_BIN="$BIN" \
    bash "$ROOT/tests/netns/agent_punch.sh" >"$work/dodvpn-test.out" 2>"$work/dodvpn-test.err"
  grep -E "passed|FAIL" "$work/dodvpn-test.out" >&2
  jq -c '. + {system: "dodvpn"}' "$work/dodvpn.jsonl" >>"$out"
fi

# ------------------------------------------------------------------ nebula
if [[ " $ONLY " == *" nebula "* ]]; then
  echo "nebula: lighthouse + relay, the same NATs, $REPS samples per case …" >&2
  tag="nb$$"; tag="${tag:0:8}"
  WAN="${tag}-wan"
  _nl_ns_add "$WAN"
  ip -n "$WAN" link add br0 address 02:00:00:00:19:01 type bridge && ip -n "$WAN" addr add 192.0.2.1/24 dev br0 && ip -n "$WAN" link set br0 up
  attach() { # NS IF ADDR
    ip link add "v$1" netns "$WAN" type veth peer name "$2" netns "$1"
    ip -n "$WAN" link set "v$1" master br0 up
    ip -n "$1" addr add "$3/24" dev "$2" && ip -n "$1" link set "$2" up
  }
  nat_rules() { # KIND CLINIC_ADDR PORT — as in agent_punch.sh (the port forward: nebula's)
    local masq="masquerade" fwd=""
    [[ "$1" == symmetric ]] && masq="masquerade random"
    [[ "$1" == fullcone ]] && fwd="iifname \"wan0\" udp dport $3 dnat to $2:$3"
    printf '%s\n' "table ip nat_bench {" \
      "  chain prerouting { type nat hook prerouting priority dstnat; policy accept; $fwd; }" \
      "  chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname \"wan0\" $masq; }" \
      "  chain input { type filter hook input priority filter; policy accept; iifname \"wan0\" ct state new drop; }" \
      "  chain forward { type filter hook forward priority filter; policy drop; iifname \"lan0\" oifname \"wan0\" accept; ct status dnat accept; ct state established,related accept; }" \
      "}"
  }
  NB="$work/nebula"
  nebula_ca "$NB"
  declare -A NS OVL
  H="${tag}-h" L="${tag}-l"
  _nl_ns_add "$H"; attach "$H" out0 192.0.2.11; NS[h]="$H"; OVL[h]=100.64.0.11
  _nl_ns_add "$L"; attach "$L" out0 192.0.2.12; NS[l]="$L"; OVL[l]=100.64.0.12
  declare -A KIND=([1]=portrestricted [2]=fullcone [3]=symmetric [4]=symmetric)
  for k in 1 2 3 4; do
    n="${tag}-n$k" c="${tag}-c$k" lan="198.51.10$((k - 1))"
    _nl_ns_add "$n"; _nl_ns_add "$c"
    attach "$n" wan0 "192.0.2.10$k"
    _nl_veth "$n" lan0 "$lan.1/24" "$c" out0 "$lan.2/24" 1500
    ip -n "$c" route add default via "$lan.1"
    nat_rules "${KIND[$k]}" "$lan.2" 4242 | ip netns exec "$n" nft -f - || _nl_die "nft $n"
    ip netns exec "$n" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=3 net.netfilter.nf_conntrack_udp_timeout_stream=3
    NS[c$k]="$c"; OVL[c$k]="100.64.0.2$k"
  done
  nb_conf() { # NAME OVERLAY LIGHTHOUSE?
    local lh="$3" dev; dev="nb$(printf '%s' "$1$$" | cksum | awk '{print substr($1,1,8)}')"
    {
      echo "pki: {ca: $NB/ca.crt, cert: $NB/$1.crt, key: $NB/$1.key}"
      if [[ "$lh" == yes ]]; then
        echo "lighthouse: {am_lighthouse: true}"
        echo "relay: {am_relay: true, use_relays: true}"
      else
        echo "static_host_map: {\"100.64.0.1\": [\"192.0.2.1:4242\"]}"
        echo "lighthouse: {am_lighthouse: false, interval: 10, hosts: [\"100.64.0.1\"]}"
        echo "relay: {relays: [\"100.64.0.1\"], use_relays: true}"
      fi
      echo "listen: {host: 0.0.0.0, port: 4242}"
      echo "punchy: {punch: true, respond: true, delay: 100ms}"
      echo "tun: {dev: $dev, mtu: 1300}"
      echo "logging: {level: info}"
      echo "firewall: {outbound: [{port: any, proto: any, host: any}], inbound: [{port: any, proto: any, host: any}]}"
    } >"$NB/$1.yml"
    echo "$dev" >"$NB/$1.dev"
  }
  nebula_cert "$NB" lh 100.64.0.1/16; nb_conf lh 100.64.0.1 yes
  for k in h l c1 c2 c3 c4; do nebula_cert "$NB" "$k" "${OVL[$k]}/16"; nb_conf "$k" "${OVL[$k]}" no; done
  nebula_start "$WAN" "$NB" lh || _nl_die "lighthouse"
  for k in h l c1 c2 c3 c4; do nebula_start "${NS[$k]}" "$NB" "$k" || _nl_die "nebula $k"; done
  sleep 3 # every node has told the lighthouse where it is
  nb_case() { # CASE FROM TO
    local r t0 ms rtt bps srv
    for ((r = 1; r <= REPS; r++)); do
      if ((r > 1)); then
        nebula_stop "$NB" "$2"; nebula_stop "$NB" "$3"; sleep 4 # cold: tunnels and NAT mappings gone
        nebula_start "${NS[$2]}" "$NB" "$2"; nebula_start "${NS[$3]}" "$NB" "$3"; sleep 2
      fi
      t0="$(now_ms)"
      if netns_wait_for 25 ip netns exec "${NS[$2]}" ping -c1 -W1 -q "${OVL[$3]}"; then
        ms=$(($(now_ms) - t0))
        echo "{\"kind\":\"setup\",\"case\":\"$1\",\"ms\":$ms,\"system\":\"nebula\"}" >>"$out"
        echo "  nebula $1: $ms ms" >&2
      else
        echo "  nebula $1: no answer in 25 s" >&2
      fi
    done
    rtt="$(ip netns exec "${NS[$2]}" ping -c 50 -i 0.02 -q "${OVL[$3]}" | awk -F/ '/rtt|round-trip/ {print $5}')"
    netns_spawn "${NS[$3]}" "$work/iperf-nb-$3.log" timeout 30 iperf3 -s -1 -B "${OVL[$3]}" -p 5201
    srv="$NETNS_LAST_PID"
    netns_wait_for 5 ip netns exec "${NS[$3]}" sh -c "ss -ltn | grep -qF '${OVL[$3]}:5201 '"
    bps="$(ip netns exec "${NS[$2]}" timeout 30 iperf3 -c "${OVL[$3]}" -p 5201 -t 3 -J | jq '.end.sum_received.bits_per_second')"
    netns_kill "$srv"
    echo "{\"kind\":\"path\",\"case\":\"$1\",\"rtt_ms\":${rtt:-null},\"bits_per_second\":${bps:-null},\"system\":\"nebula\"}" >>"$out"
  }
  nb_case "direct hospital->lab (fixed addresses)" h l
  nb_case "punched clinic2->clinic1 (full-cone -> port-restricted)" c2 c1
  nb_case "punched hospital->clinic1 (fixed -> port-restricted)" h c1
  nb_case "relayed clinic3->clinic4 (symmetric -> symmetric)" c3 c4
  grep -aqi "relay" "$NB/c3.log" && echo "  nebula clinic 3 log mentions its relay" >&2
  nebula_stop
fi

# ------------------------------------------------------------------ report
mkdir -p "$ROOT/bench/results"
res="$ROOT/bench/results/nat-$ts.json"
python3 - "$out" "$res" "$REPS" "$(( $(date +%s) - t_start ))" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
reps, wall = int(sys.argv[3]), int(sys.argv[4])
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, round(p / 100 * (len(v) - 1))))] if v else None
setup, path = {}, {}
for r in rows:
    key = (r["system"], r["case"])
    if r["kind"] == "setup":
        setup.setdefault(key, []).append(r["ms"])
    else:
        path[key] = r
cases = sorted({c for _, c in list(setup) + list(path)})
out = {"bench": "nat", "reps": reps, "wall_seconds": wall, "cases": {}}
print(f"{'case':<62} {'system':<7} {'n':>2} {'p50 ms':>8} {'p99 ms':>8} {'rtt ms':>7} {'Mbit/s':>8}")
for c in cases:
    entry = {}
    for s in ("dodvpn", "nebula"):
        v = setup.get((s, c), [])
        p = path.get((s, c), {})
        bps = p.get("bits_per_second")
        entry[s] = {"samples_ms": v, "p50_ms": statistics.median(v) if v else None,
                    "p99_ms": pct(v, 99), "rtt_ms": p.get("rtt_ms"),
                    "mbit_per_s": round(bps / 1e6, 1) if bps else None}
        e = entry[s]
        if v or p:
            print(f"{c:<62} {s:<7} {len(v):>2} {e['p50_ms'] or '-':>8} {e['p99_ms'] or '-':>8} "
                  f"{e['rtt_ms'] or '-':>7} {e['mbit_per_s'] or '-':>8}")
    d, n = entry["dodvpn"], entry["nebula"]
    entry["ratio_dodvpn_over_nebula"] = {
        k: round(d[k] / n[k], 2) for k in ("p50_ms", "rtt_ms", "mbit_per_s") if d[k] and n[k]}
    out["cases"][c] = entry
# The relay against direct, per system: throughput and added round trip.
for s in ("dodvpn", "nebula"):
    relayed = [out["cases"][c][s] for c in cases if c.startswith("relayed") and out["cases"][c][s]["mbit_per_s"]]
    direct = [out["cases"][c][s] for c in cases if c.startswith("direct") and out["cases"][c][s]["mbit_per_s"]]
    if relayed and direct:
        r, d = relayed[-1], direct[-1]
        out.setdefault("relay_vs_direct", {})[s] = {
            "throughput_ratio": round(r["mbit_per_s"] / d["mbit_per_s"], 2),
            "added_rtt_ms": round(r["rtt_ms"] - d["rtt_ms"], 3) if r["rtt_ms"] and d["rtt_ms"] else None}
print(json.dumps(out.get("relay_vs_direct", {}), indent=1))
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(f"results: {sys.argv[2]}")
PY
