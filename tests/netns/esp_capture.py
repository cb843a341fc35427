#!/usr/bin/env python3
"""Capture ESP-in-UDP datagrams (RFC 3948) of a live tunnel, for replaying them later.

usage: esp_capture.py IFACE DST_ADDR SECONDS MAX OUTFILE
Runs inside the test's own network namespace: an AF_PACKET socket on IFACE keeps the
UDP payloads sent to DST_ADDR port 4500 that are ESP (first four octets, the SPI, not
zero: not the non-ESP marker of IKE, and longer than a 1-octet NAT keepalive), at most
MAX of them or for SECONDS, and writes them to OUTFILE, one hex datagram a line.
Frames larger than the interface MTU (GSO batches) are skipped: one datagram a frame.
Prints the number captured.
"""
import select
import socket
import struct
import sys
import time

iface, dst, secs, limit, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
s.bind((iface, ETH_P_IP))
want = socket.inet_aton(dst)
mtu = int(open(f"/sys/class/net/{iface}/mtu").read())
got = []
end = time.time() + secs
while time.time() < end and len(got) < limit:
    r, _, _ = select.select([s], [], [], max(0.0, end - time.time()))
    if not r:
        break
    frame, addr = s.recvfrom(65535)
    if addr[2] == PACKET_OUTGOING or len(frame) < 28 or len(frame) > mtu:
        continue
    ihl = (frame[0] & 0x0F) * 4
    total = struct.unpack(">H", frame[2:4])[0]
    if frame[0] >> 4 != 4 or frame[9] != 17 or frame[16:20] != want or total != len(frame):
        continue
    sport, dport, ulen = struct.unpack(">HHH", frame[ihl : ihl + 6])
    payload = frame[ihl + 8 : ihl + ulen]
    if dport != 4500 or len(payload) <= 8 or payload[:4] == b"\0\0\0\0":
        continue
    got.append(payload)
with open(out, "w") as f:
    for p in got:
        f.write(p.hex() + "\n")
print(len(got))
