#!/usr/bin/env python3
"""Send garbage to a tunnel endpoint's UDP 500 and 4500 for a bounded time.

usage: udp_flood.py DST_ADDR SECONDS MAX_DATAGRAMS [REPLAY_FILE]
Only ever aims at DST_ADDR, which the calling test created inside its own network
namespace. Mixes random bytes, IKE-shaped headers with random SPIs and lengths, and
ESP-shaped datagrams (non-zero SPI) so every demultiplexing branch is exercised.
With REPLAY_FILE (hex datagrams, one a line, as esp_capture.py writes them), every
other datagram is instead a replay of a real ESP-in-UDP datagram of the live tunnel,
sent again to UDP 4500: authentic, so only the anti-replay window can refuse it.
Prints "SENT REPLAYED".
"""
import os
import socket
import struct
import sys
import time

dst, secs, limit = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
replays = []
if len(sys.argv) > 4:
    with open(sys.argv[4]) as f:
        replays = [bytes.fromhex(line.strip()) for line in f if line.strip()]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + secs
sent = 0
replayed = 0
while time.time() < end and sent < limit:
    if replays and sent % 2 == 1:
        try:
            s.sendto(replays[replayed % len(replays)], (dst, 4500))
            sent += 1
            replayed += 1
        except OSError:
            time.sleep(0.001)
        continue
    kind = (sent // 2 if replays else sent) % 4
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
print(sent, replayed)
