#!/usr/bin/env python3
"""Send garbage to a tunnel endpoint's UDP 500 and 4500 for a bounded time.

usage: udp_flood.py DST_ADDR SECONDS MAX_DATAGRAMS
Only ever aims at DST_ADDR, which the calling test created inside its own network
namespace. Mixes random bytes, IKE-shaped headers with random SPIs and lengths, and
ESP-shaped datagrams (non-zero SPI) so every demultiplexing branch is exercised.
"""
import os
import socket
import struct
import sys
import time

dst, secs, limit = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + secs
sent = 0
while time.time() < end and sent < limit:
    kind = sent % 4
    body = os.urandom(1 + os.urandom(1)[0])
    if kind == 1:  # IKE header: random SPIs, version 2.0, IKE_SA_INIT, a lying length
        body = os.urandom(16) + bytes([33, 0x20, 34, 0x08]) + b"\0\0\0\0" + struct.pack(">I", 28 + len(body)) + body
    elif kind == 2:  # ESP on 4500: non-zero SPI, sequence, junk "ciphertext"
        body = struct.pack(">II", 1 + (sent * 7919) % 0xFFFFFFF0, sent) + body
    elif kind == 3:  # non-ESP marker then junk IKE
        body = b"\0\0\0\0" + os.urandom(28) + body
    port = 500 if kind == 1 else 4500
    try:
        s.sendto(body, (dst, port))
        sent += 1
    except OSError:
        time.sleep(0.001)
print(sent)
