#!/usr/bin/env python3
"""A terminal behind a member site, talking to the gateway proxy (tests/netns/gateway_centre.sh).

  connect PROXY SRC HOST PORT [--sni NAME | --no-sni] [--ca FILE] [--path P]
      CONNECT HOST:PORT; on 200, TLS with the SNI given (default HOST) and GET P.
      Prints "proxy <status> <reason header>" then "tls ok <http status> <body line>"
      or "tls failed <error>".
  raw PROXY SRC TEXT [--timeout S]
      Send TEXT (Python escapes, e.g. "GET http://x/ HTTP/1.1\\r\\n\\r\\n") and print the
      status line, the X-Dodvpn-Reason header and the body.
  slowloris PROXY SRC
      Send a head one byte a second; print the status the proxy ends it with, and when.
  flood PROXY SRC N HOST
      Open N connections at once, each sends CONNECT HOST:443 and waits; print the
      count of each status line (and of connections that got none).
"""
import argparse
import asyncio
import codecs
import resource
import socket
import ssl
import sys
import time


def addr(s):
    host, port = s.rsplit(":", 1)
    return host.strip("[]"), int(port)


def open_conn(proxy, src, timeout=10):
    s = socket.socket(socket.AF_INET6 if ":" in proxy[0] else socket.AF_INET)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(proxy)
    return s


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        c = s.recv(4096)
        if not c:
            break
        buf += c
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def reason_of(head):
    for line in head.split("\r\n")[1:]:
        if line.lower().startswith("x-dodvpn-reason:"):
            return line.split(":", 1)[1].strip()
    return "-"


def status_of(head):
    parts = head.split(" ", 2)
    return parts[1] if len(parts) > 1 else "none"


def cmd_connect(a):
    s = open_conn(addr(a.proxy), a.src)
    s.sendall(f"CONNECT {a.host}:{a.port} HTTP/1.1\r\nHost: {a.host}:{a.port}\r\n\r\n".encode())
    head, rest = read_head(s)
    print("proxy", status_of(head), reason_of(head))
    if status_of(head) != "200":
        body = rest
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                body += c
        except OSError:
            pass
        print(body.decode("utf-8", "replace"))
        return
    ctx = ssl.create_default_context(cafile=a.ca) if a.ca else ssl.create_default_context()
    sni = None if a.no_sni else (a.sni or a.host)
    if sni is None or sni != a.host:
        ctx.check_hostname = False
        if a.no_sni:
            ctx.verify_mode = ssl.CERT_NONE
    try:
        t = ctx.wrap_socket(s, server_hostname=sni)
        t.sendall(f"GET {a.path} HTTP/1.1\r\nHost: {a.host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            c = t.recv(65536)
            if not c:
                break
            data += c
        head, _, body = data.partition(b"\r\n\r\n")
        first = body.decode("utf-8", "replace").splitlines()[:1]
        print("tls ok", status_of(head.decode("latin-1")), first[0] if first else "")
    except (OSError, ssl.SSLError) as e:
        print("tls failed", type(e).__name__, e)


def cmd_raw(a):
    s = open_conn(addr(a.proxy), a.src, a.timeout)
    text = codecs.decode(a.text, "unicode_escape").encode("latin-1")
    try:
        s.sendall(text)
        head, rest = read_head(s)
        body = rest
        while True:
            c = s.recv(65536)
            if not c:
                break
            body += c
    except OSError as e:
        print("error", type(e).__name__, e)
        return
    print(head.split("\r\n")[0] if head else "none")
    print("reason", reason_of(head))
    print(body.decode("utf-8", "replace"))


def cmd_slowloris(a):
    s = open_conn(addr(a.proxy), a.src, 60)
    start = time.monotonic()
    head = b"CONNECT updates.example.test:443 HTTP/1.1\r\nX-Slow: " + b"a" * 100
    s.setblocking(False)
    got = b""
    for b in head:
        try:
            s.send(bytes([b]))
        except OSError:
            break
        time.sleep(1)
        try:
            got += s.recv(4096)
        except BlockingIOError:
            pass
        except OSError:
            break
        if got:
            break
    line = got.decode("latin-1").split("\r\n")[0] if got else "none"
    print(line, "after", round(time.monotonic() - start), "s")


async def one(proxy, src, host, answered, hold):
    """One CONNECT that stays open until every other one has its answer."""
    status = "connect_error"
    try:
        r, w = await asyncio.open_connection(proxy[0], proxy[1], local_addr=(src, 0))
    except OSError:
        answered.append(status)
        return
    try:
        w.write(f"CONNECT {host}:443 HTTP/1.1\r\n\r\n".encode())
        await w.drain()
        line = await asyncio.wait_for(r.readline(), 60)
        parts = line.decode("latin-1").split(" ")
        status = parts[1] if len(parts) > 1 else "none"
    except (OSError, asyncio.TimeoutError):
        status = "none"
    answered.append(status)
    await hold.wait()
    w.close()


async def flood(a):
    answered, hold = [], asyncio.Event()
    tasks = [asyncio.create_task(one(addr(a.proxy), a.src, a.host, answered, hold)) for _ in range(a.n)]
    t0 = time.monotonic()
    while len(answered) < a.n and time.monotonic() - t0 < 90:
        await asyncio.sleep(0.2)
    hold.set()
    await asyncio.gather(*tasks)
    counts = {}
    for x in answered:
        counts[x] = counts.get(x, 0) + 1
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("connect")
    c.add_argument("proxy"); c.add_argument("src"); c.add_argument("host"); c.add_argument("port")
    c.add_argument("--sni"); c.add_argument("--no-sni", action="store_true")
    c.add_argument("--ca"); c.add_argument("--path", default="/")
    r = sub.add_parser("raw")
    r.add_argument("proxy"); r.add_argument("src"); r.add_argument("text")
    r.add_argument("--timeout", type=float, default=10)
    s = sub.add_parser("slowloris")
    s.add_argument("proxy"); s.add_argument("src")
    f = sub.add_parser("flood")
    f.add_argument("proxy"); f.add_argument("src"); f.add_argument("n", type=int); f.add_argument("host")
    a = p.parse_args()
    if a.cmd == "connect":
        cmd_connect(a)
    elif a.cmd == "raw":
        cmd_raw(a)
    elif a.cmd == "slowloris":
        cmd_slowloris(a)
    else:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.n + 1024), hard))
        asyncio.run(flood(a))


if __name__ == "__main__":
    sys.exit(main())
