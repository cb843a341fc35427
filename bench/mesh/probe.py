#!/usr/bin/env python3
"""ICMP probe for bench/mesh.sh: many site pairs, many namespaces, one process (root).

One raw ICMP socket per (namespace, source address): the socket is created after
setns(2) into the namespace and keeps that namespace afterwards, so a single process
drives every site of the mesh without starting 50 interpreters on a 2-core machine.
Each pair gets its own ICMP identifier; replies are matched by (socket, identifier).

Input: JSON on stdin, {"pairs": [{"ns": NS, "src": IP, "dst": IP}, ...], ...}.

  up   all pairs start at the same instant T0; each pair sends one echo every
       --interval-ms until its first reply.  Output: per pair the time from T0 to its
       first reply (ms), null if none within --timeout.  Send attempts that fail (no
       route yet) count as sent: the clock runs from T0 for every pair.

  cut  first every pair must answer once (warm-up, tunnels live), then T0 is taken and
       --cmd (a JSON argv list) is started; echoes keep going every --interval-ms.  The
       run ends when every pair has been silent for --quiet seconds after T0 and the
       command has finished (or at --timeout).  Per pair: stop_ms = the send time
       (relative to T0) of the first echo after the last answered one, i.e. the moment
       from which the pair carries no more traffic; the sample is the maximum over pairs.
"""
import argparse
import ctypes
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {path}: {os.strerror(e)}")
    finally:
        os.close(fd)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


PAYLOAD = b"dodvpn-mesh-probe".ljust(32, b".")


def echo(ident: int, seq: int) -> bytes:
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(hdr + PAYLOAD), ident, seq) + PAYLOAD


class Mesh:
    def __init__(self, pairs):
        self.pairs = pairs
        self.socks = {}  # (ns, src) -> socket
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            for p in pairs:
                k = (p["ns"], p["src"])
                if k in self.socks:
                    continue
                setns(f"/run/netns/{p['ns']}")
                s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
                s.bind((p["src"], 0))
                s.setblocking(False)
                self.socks[k] = s
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
            os.close(home)
        base = (os.getpid() * 7) & 0x7FFF
        for i, p in enumerate(pairs):
            p["ident"] = (base + i) & 0xFFFF
            p["sock"] = self.socks[(p["ns"], p["src"])]
            p["seq"] = 0
            p["sent"] = {}  # seq -> send time
        self.by_key = {(id(p["sock"]), p["ident"]): p for p in pairs}
        self.poll = select.poll()
        self.fd2sock = {}
        for s in self.socks.values():
            self.poll.register(s.fileno(), select.POLLIN)
            self.fd2sock[s.fileno()] = s

    def send(self, p, now):
        p["seq"] = (p["seq"] + 1) & 0xFFFF
        p["sent"][p["seq"]] = now
        try:
            p["sock"].sendto(echo(p["ident"], p["seq"]), (p["dst"], 0))
        except OSError:
            pass  # no route yet: counts as sent

    def receive(self, timeout_s):
        """Yield (pair, seq, t_recv) for echo replies, waiting up to timeout_s."""
        out = []
        for fd, _ in self.poll.poll(max(0, int(timeout_s * 1000))):
            s = self.fd2sock[fd]
            while True:
                try:
                    data, addr = s.recvfrom(2048)
                except BlockingIOError:
                    break
                t = time.perf_counter()
                ihl = (data[0] & 0x0F) * 4
                if len(data) < ihl + 8:
                    continue
                typ, _code, _ck, ident, seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                if typ != 0:
                    continue
                p = self.by_key.get((id(s), ident))
                if p is not None and addr[0] == p["dst"]:
                    out.append((p, seq, t))
        return out


def run_up(m: Mesh, a) -> dict:
    iv = a.interval_ms / 1000.0
    pending = set(range(len(m.pairs)))
    first = [None] * len(m.pairs)
    sends = [0] * len(m.pairs)
    idx = {id(p): i for i, p in enumerate(m.pairs)}
    t0 = time.perf_counter()
    deadline = t0 + a.timeout
    next_tick = t0
    while pending and time.perf_counter() < deadline:
        now = time.perf_counter()
        if now >= next_tick:
            for i in list(pending):
                m.send(m.pairs[i], time.perf_counter())
                sends[i] += 1
            next_tick += iv
            if next_tick < now:
                next_tick = now + iv
        for p, _seq, t in m.receive(max(0.0, next_tick - time.perf_counter())):
            i = idx[id(p)]
            if first[i] is None:
                first[i] = (t - t0) * 1000.0
                pending.discard(i)
    res = []
    for i, p in enumerate(m.pairs):
        res.append({"ns": p["ns"], "src": p["src"], "dst": p["dst"],
                    "first_reply_ms": None if first[i] is None else round(first[i], 3),
                    "echoes_sent": sends[i]})
    ok = [r["first_reply_ms"] for r in res if r["first_reply_ms"] is not None]
    return {"mode": "up", "interval_ms": a.interval_ms, "pairs": res,
            "answered": len(ok), "total": len(res),
            "all_up_ms": round(max(ok), 3) if ok and len(ok) == len(res) else None}


def run_cut(m: Mesh, a) -> dict:
    iv = a.interval_ms / 1000.0
    # warm-up: every pair answers once
    warm = set(range(len(m.pairs)))
    idx = {id(p): i for i, p in enumerate(m.pairs)}
    end = time.perf_counter() + a.warmup
    while warm and time.perf_counter() < end:
        for i in warm:
            m.send(m.pairs[i], time.perf_counter())
        for p, _s, _t in m.receive(0.05):
            warm.discard(idx[id(p)])
    cold = sorted(warm)
    for p in m.pairs:
        p["sent"].clear()
    last_ok_seq = [None] * len(m.pairs)
    last_ok_t = [None] * len(m.pairs)
    cmd = json.loads(a.cmd)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    cmd_ms = None
    next_tick = t0
    deadline = t0 + a.timeout
    while True:
        now = time.perf_counter()
        if cmd_ms is None and proc.poll() is not None:
            cmd_ms = (now - t0) * 1000.0
        if now >= deadline:
            break
        if cmd_ms is not None:
            quiet_all = all((last_ok_t[i] or t0) < now - a.quiet for i in range(len(m.pairs)))
            if quiet_all:
                break
        if now >= next_tick:
            for p in m.pairs:
                m.send(p, time.perf_counter())
            next_tick += iv
            if next_tick < now:
                next_tick = now + iv
        for p, seq, t in m.receive(max(0.0, next_tick - time.perf_counter())):
            i = idx[id(p)]
            if seq in p["sent"]:
                if last_ok_seq[i] is None or p["sent"][seq] >= p["sent"][last_ok_seq[i]]:
                    last_ok_seq[i] = seq
                last_ok_t[i] = t
    err = proc.stderr.read().decode(errors="replace").strip() if proc.poll() is not None else "still running"
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    res = []
    stops = []
    for i, p in enumerate(m.pairs):
        sent = sorted(p["sent"].items(), key=lambda kv: kv[1])
        if last_ok_seq[i] is None:
            stop = 0.0  # nothing answered after T0
        else:
            ts = p["sent"][last_ok_seq[i]]
            later = [t for _s, t in sent if t > ts]
            stop = ((later[0] if later else ts + iv) - t0) * 1000.0
        stop = max(stop, 0.0)
        still = last_ok_t[i] is not None and last_ok_t[i] >= time.perf_counter() - a.quiet
        res.append({"ns": p["ns"], "src": p["src"], "dst": p["dst"], "stop_ms": round(stop, 3),
                    "warm": i not in cold, "still_answering": still})
        stops.append(stop)
    timed_out = any(r["still_answering"] for r in res)
    return {"mode": "cut", "interval_ms": a.interval_ms, "cmd_ms": None if cmd_ms is None else round(cmd_ms, 3),
            "cmd_rc": proc.returncode, "cmd_stderr": err[-500:], "pairs": res,
            "cold_pairs": len(cold), "timed_out": timed_out,
            "stop_ms": None if timed_out or not stops else round(max(stops), 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["up", "cut"])
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--quiet", type=float, default=1.5)
    ap.add_argument("--cmd", default="[\"true\"]")
    a = ap.parse_args()
    pairs = json.load(sys.stdin)["pairs"]
    m = Mesh(pairs)
    r = run_up(m, a) if a.mode == "up" else run_cut(m, a)
    json.dump(r, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
