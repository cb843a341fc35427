#!/usr/bin/env python3
"""Setup-latency probe for bench/dataplane/baseline.sh (run inside a namespace, as root).

Measures "first ICMP echo sent on a cold tunnel -> first echo reply received":
sends an echo request from --src to --dst, then keeps sending one every --interval-ms
(packets sent before the tunnel exists may be dropped, e.g. by strongSwan/libipsec which
has no trap support) until the first reply with our identifier arrives.  Optionally starts
--trigger (a shell command, not waited for) right after the first echo is sent: that is how
strongSwan is brought up "at the first packet".

Send attempts that fail (no route yet: ENETUNREACH) count as sent: the clock starts when the
application first tries to send.  Prints one line: "<ms> <replied_seq> <sent>" (ms with 3
decimals), or "timeout" with exit status 1.
"""
import argparse
import os
import select
import socket
import struct
import subprocess
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo(ident: int, seq: int) -> bytes:
    payload = b"dodvpn-setup-probe".ljust(56, b".")
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), ident, seq) + payload


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--interval-ms", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--trigger", default="")
    a = ap.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.bind((a.src, 0))
    sock.setblocking(False)
    ident = os.getpid() & 0xFFFF
    interval = a.interval_ms / 1000.0
    trig = None

    seq = 0
    t0 = time.perf_counter()
    deadline = t0 + a.timeout
    next_send = t0
    while True:
        now = time.perf_counter()
        if now >= deadline:
            print("timeout")
            return 1
        if now >= next_send:
            seq += 1
            try:
                sock.sendto(echo(ident, seq), (a.dst, 0))
            except OSError:
                pass  # no route yet (tunnel not up): keep trying
            if seq == 1 and a.trigger:
                trig = subprocess.Popen(a.trigger, shell=True, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            next_send += interval
            if next_send < now:
                next_send = now + interval
        wait = max(0.0, min(next_send, deadline) - time.perf_counter())
        r, _, _ = select.select([sock], [], [], wait)
        if not r:
            continue
        while True:
            try:
                pkt, addr = sock.recvfrom(2048)
            except BlockingIOError:
                break
            t = time.perf_counter()
            ihl = (pkt[0] & 0x0F) * 4
            if len(pkt) < ihl + 8 or addr[0] != a.dst:
                continue
            typ, _, _, rid, rseq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
            if typ == 0 and rid == ident:
                print("%.3f %d %d" % ((t - t0) * 1000.0, rseq, seq))
                if trig is not None:
                    try:
                        trig.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        trig.kill()
                return 0


if __name__ == "__main__":
    sys.exit(main())
