#!/usr/bin/env python3
"""Memory a server holds per idle keep-alive connection.

    idle_memory.py --proto h1|h2 --count N --url URL --pid PID --name NAME [--h1-url URL]

Opens COUNT connections to the server at URL, fetches the page once on each
(HTTP/1.1, or cleartext HTTP/2 with prior knowledge), reads the answer to its
end and leaves the connection open and idle. Reads VmRSS of PID from /proc
before and after (once the server has settled) and prints the difference per
connection, then closes them all. Standard library only.
"""
import argparse
import resource
import socket
import struct
import sys
import time
import urllib.parse

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, HEADERS, DATA, GOAWAY, RST_STREAM = 0x4, 0x1, 0x0, 0x7, 0x3
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("idle_memory: no VmRSS for pid %d" % pid)


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise ConnectionError("closed after %d of %d bytes" % (len(data), n))
        data += more
    return data


def fetch_h1(sock, host, path):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed in the head")
        head += more
    head, _, body = head.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if " 200 " not in lines[0] + " ":
        raise ConnectionError(lines[0])
    fields = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    if "content-length" in fields:
        read_exact_into(sock, body, int(fields["content-length"]))
    else:
        while not body.endswith(b"0\r\n\r\n"):
            more = sock.recv(65536)
            if not more:
                raise ConnectionError("closed in a chunked body")
            body += more


def read_exact_into(sock, have, total):
    remaining = total - len(have)
    while remaining > 0:
        more = sock.recv(min(remaining, 65536))
        if not more:
            raise ConnectionError("closed in the body")
        remaining -= len(more)


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(index, value):
    # A literal header field without indexing, with an indexed name (RFC 7541, 6.2.2).
    value = value.encode()
    assert index < 15 and len(value) < 127
    return bytes([index, len(value)]) + value


def fetch_h2(sock, host, path):
    block = b"\x82\x86" + literal(4, path) + literal(1, host)  # GET, http, :path, :authority
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
    while True:
        length, kind, flags, stream = parse_head(read_exact(sock, 9))
        payload = read_exact(sock, length)
        if kind == SETTINGS and not flags & ACK:
            sock.sendall(frame(SETTINGS, ACK, 0))
        elif kind in (GOAWAY, RST_STREAM):
            raise ConnectionError("server sent frame type %d" % kind)
        elif stream == 1 and kind in (HEADERS, DATA) and flags & END_STREAM:
            return payload


def parse_head(head):
    length = struct.unpack(">I", b"\0" + head[:3])[0]
    return length, head[3], head[4], struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF


def still_open(sock):
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proto", choices=["h1", "h2"], required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--h1-url", help="the HTTP/1.1 address, when it is not --url")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.h1_url if args.proto == "h1" and args.h1_url else args.url)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.count + 100:
        raise SystemExit("idle_memory: %d file descriptors allowed, %d needed" % (hard, args.count + 100))

    fetch = fetch_h1 if args.proto == "h1" else fetch_h2
    time.sleep(1)
    before = rss_kib(args.pid)
    socks = []
    started = time.monotonic()
    for _ in range(args.count):
        sock = socket.create_connection((url.hostname, url.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        fetch(sock, url.netloc, url.path)
        socks.append(sock)
    opened = time.monotonic() - started
    time.sleep(2)
    after = rss_kib(args.pid)
    open_now = sum(still_open(sock) for sock in socks)
    for sock in socks:
        sock.close()
    per = (after - before) / args.count
    print("%-9s %s %6d idle: RSS %7.1f -> %7.1f MiB, %5.2f KiB per connection (%d still open; opened in %.1f s)"
          % (args.name, args.proto, args.count, before / 1024, after / 1024, per, open_now, opened))
    time.sleep(2)
    if open_now != args.count:
        sys.exit(1)


main()
