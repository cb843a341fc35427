#!/usr/bin/env python3
"""Assemble bench/mesh.sh's raw files into one JSON document and print the table."""
import argparse
import glob
import json
import math
import os
import statistics


def rank(vals, p):
    """Nearest-rank percentile (p in 0..1) of a non-empty list."""
    v = sorted(vals)
    r = max(1, math.ceil(p * len(v)))
    return v[r - 1]


def summary(vals):
    vals = [x for x in vals if x is not None]
    if not vals:
        return None
    return {"n": len(vals), "p50": round(rank(vals, 0.5), 3), "p99": round(rank(vals, 0.99), 3),
            "min": round(min(vals), 3), "max": round(max(vals), 3)}


def rss(path):
    if not os.path.exists(path):
        return None
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                out.append(int(parts[1]))
    return out


def load(path):
    with open(path) as f:
        return json.load(f)


def system(work, name, pairs):
    ups = [load(p) for p in sorted(glob.glob(f"{work}/up-{name}-*.json"),
                                   key=lambda s: int(s.rsplit("-", 1)[1].split(".")[0]))]
    if not ups:
        return None
    cuts = [load(p) for p in sorted(glob.glob(f"{work}/cut-{name}-*.json"),
                                    key=lambda s: int(s.rsplit("-", 1)[1].split(".")[0]))]
    r = {"up": {
        "definition": "all sites start sending at the same instant, one ICMP echo per pair every "
                      "probe_interval_ms until its first reply; all_up_ms = time until the last of the "
                      "pairs had its first reply",
        "all_up_ms": [u["all_up_ms"] for u in ups],
        "all_up_ms_median": (statistics.median([u["all_up_ms"] for u in ups if u["all_up_ms"] is not None])
                             if any(u["all_up_ms"] is not None for u in ups) else None),
        "answered": [u["answered"] for u in ups],
        "per_pair_first_reply_ms": summary([p["first_reply_ms"] for u in ups for p in u["pairs"]]),
        "runs": ups,
    }}
    stops = [c["stop_ms"] for c in cuts]
    r["revocation"] = {
        "samples_ms": stops,
        "summary": summary(stops),
        "not_cut_within_timeout": sum(1 for c in cuts if c["stop_ms"] is None),
        "command_returned_ms": summary([c["cmd_ms"] for c in cuts]),
        "runs": cuts,
    }
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", required=True)
    a = ap.parse_args()
    meta = json.loads(a.meta)
    w = a.work
    pairs = meta["pairs"]
    doc = {"benchmark": "mesh", **meta}

    d = system(w, "dodvpn", pairs)
    if d is not None:
        ng, gr, lv = (rss(f"{w}/rss-dodvpn-{k}.txt") for k in ("nogrants", "grants", "live"))
        mem = {"agent_rss_kib_no_grants": summary(ng), "agent_rss_kib_grants_installed": summary(gr),
               "agent_rss_kib_tunnels_live": summary(lv)}
        if ng and gr:
            mem["per_idle_grant_kib"] = round((sum(gr) - sum(ng)) / pairs, 2)
            mem["per_idle_grant_per_end_kib"] = round((sum(gr) - sum(ng)) / (2 * pairs), 2)
        if gr and lv:
            mem["per_live_tunnel_kib"] = round((sum(lv) - sum(gr)) / pairs, 2)
            mem["per_live_tunnel_per_end_kib"] = round((sum(lv) - sum(gr)) / (2 * pairs), 2)
        mem["definition"] = ("sums over all agents of VmRSS: (with grants - before any grant) / grants, "
                             "(tunnels live - grants only) / tunnels; each grant and tunnel has two ends "
                             "(two agents), per_end = half")
        c = rss(f"{w}/rss-centre.txt")
        if c:
            mem["centre_rss_kib_after_enrolment"] = c[0]
        lc = f"{w}/live-count-dodvpn.txt"
        if os.path.exists(lc):
            conns, children = open(lc).read().split()
            mem["after_up"] = {"connections": int(conns), "child_sas": int(children)}
        d["memory"] = mem
        doc["dodvpn"] = d
    n = system(w, "nebula", pairs)
    if n is not None:
        idle, lv = rss(f"{w}/rss-nebula-idle.txt"), rss(f"{w}/rss-nebula-live.txt")
        mem = {"node_rss_kib_idle": summary(idle), "node_rss_kib_tunnels_live": summary(lv)}
        if idle and lv:
            mem["per_live_tunnel_kib"] = round((sum(lv) - sum(idle)) / pairs, 2)
            mem["per_live_tunnel_per_end_kib"] = round((sum(lv) - sum(idle)) / (2 * pairs), 2)
        n["memory"] = mem
        doc["nebula"] = n

    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    def g(o, *path):
        for p in path:
            if o is None:
                return None
            o = o.get(p) if isinstance(o, dict) else None
        return o

    def fmt(x, nd=1):
        return "–" if x is None else f"{x:,.{nd}f}"

    def ratio(x, y):
        if x is None or y in (None, 0):
            return "–"
        r = x / y
        return f"{r:.2f}" if r >= 0.1 else f"{r:.4f}"

    rows = [
        ("all pairs up, median of runs (ms)", g(d, "up", "all_up_ms_median"), g(n, "up", "all_up_ms_median")),
        ("per pair first reply p50 (ms)", g(d, "up", "per_pair_first_reply_ms", "p50"), g(n, "up", "per_pair_first_reply_ms", "p50")),
        ("per pair first reply p99 (ms)", g(d, "up", "per_pair_first_reply_ms", "p99"), g(n, "up", "per_pair_first_reply_ms", "p99")),
        ("RSS per node, no tunnels (KiB, median)", g(d, "memory", "agent_rss_kib_grants_installed", "p50"), g(n, "memory", "node_rss_kib_idle", "p50")),
        ("RSS per node, tunnels live (KiB, median)", g(d, "memory", "agent_rss_kib_tunnels_live", "p50"), g(n, "memory", "node_rss_kib_tunnels_live", "p50")),
        ("RSS per idle grant, both ends (KiB)", g(d, "memory", "per_idle_grant_kib"), None),
        ("RSS per live tunnel, both ends (KiB)", g(d, "memory", "per_live_tunnel_kib"), g(n, "memory", "per_live_tunnel_kib")),
        ("revocation to drop p50 (ms)", g(d, "revocation", "summary", "p50"), g(n, "revocation", "summary", "p50")),
        ("revocation to drop p99 (ms)", g(d, "revocation", "summary", "p99"), g(n, "revocation", "summary", "p99")),
    ]
    print()
    print(f"mesh: {meta['sites']} sites x {meta['peers']} peers = {pairs} pairs; nproc {meta['nproc']}, "
          f"load average {meta['loadavg_start']} -> {meta['loadavg_end']}; {meta['wall_seconds']} s")
    print()
    print("| figure | dodvpn | nebula | dodvpn / nebula |")
    print("|---|---|---|---|")
    for name, x, y in rows:
        print(f"| {name} | {fmt(x)} | {fmt(y)} | {ratio(x, y)} |")
    if d:
        print()
        print(f"dodvpn: all-up per run {d['up']['all_up_ms']} ms; answered {d['up']['answered']} of {pairs}; "
              f"revocation samples {d['revocation']['samples_ms']} ms "
              f"(admin CLI returned p50 {g(d, 'revocation', 'command_returned_ms', 'p50')} ms); "
              f"RSS no grants median {g(d, 'memory', 'agent_rss_kib_no_grants', 'p50')} KiB")
    if n:
        print(f"nebula: all-up per run {n['up']['all_up_ms']} ms; answered {n['up']['answered']} of {pairs}; "
              f"revocation samples {n['revocation']['samples_ms']} ms "
              f"({n['revocation']['not_cut_within_timeout']} not cut within the timeout)")
    print(f"\nJSON: {a.out}")


if __name__ == "__main__":
    main()
