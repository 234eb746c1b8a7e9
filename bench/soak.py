#!/usr/bin/env python3
"""Soak and chaos test of the embedgate gateway (Python 3.11 standard library only).

Started by bench/soak.sh, which builds the release binary and picks the tools;
run by hand as:

    soak.py cms --port PORT [--lifetime SECONDS]
        the CMS stand-in: gated and public HTML pages with video iframes and the
        caller's marker in them, uploads echoed as a digest, slow and chunked bodies
    soak.py run --bin target/release/embedgate --work DIR --duration SECONDS ...
        the whole soak: the CMS, Redis (if given), two gateways, paced mixed traffic,
        chaos on a schedule, sampling every second, the checks and a summary

Every page the CMS serves is a pure function of its path and the request's marker
(page() below), so a client regenerates the exact bytes it should have got: any
byte from another visitor's response, a lost or extra byte, or an iframe without
(or with a wrong) token is found, not guessed at.
"""

import argparse
import collections
import functools
import gzip
import hashlib
import http.client
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from free_ports import free_ports  # bench/ is the script's folder, so on sys.path

# ---------------------------------------------------------------------------
# Pages: shared by the CMS (which serves them) and the clients (which check them)
# ---------------------------------------------------------------------------

EMBED_HOST = "api.vod2.infomaniak.com/res/embed/"
SHARES = ["1jhvl2uqa5rdf", "3mzp8kd1wq7tb", "5gxc2nv9ho4js", "7rby6et3ul0fa",
          "9kwd4qs5mi2ce", "2bq7wz0xy3nvh", "6hk1rt8pe4mcu"]
PARTIAL_SHARES = SHARES[0:7:2]  # what the "partial" session may watch
PLACEHOLDER = "MK" + "#" * 16
MARK_RE = re.compile(rb"MK[0-9a-f]{16}")
WORDS = ("gateway session token stream chunk iframe member lesson video module archive "
         "editor course chapter exercise review summary outline question answer practice "
         "schedule workshop speaker slides transcript caption playlist episode season").split()
# Every kind of embed the rewriter meets: plain, with a query, lazy (data-src),
# protocol-relative, with a stale token to replace, and another host's iframe
# (never touched).
IFRAMES = [
    '<iframe src="https://' + EMBED_HOST + '{share}.html" width="640" height="360" allowfullscreen></iframe>\n',
    '<iframe title="Lesson" src="https://' + EMBED_HOST + '{share}.html?autoplay=0&amp;muted=1" allow="autoplay"></iframe>\n',
    '<iframe class="lazy" data-src="https://' + EMBED_HOST + '{share}.html"></iframe>\n',
    '<iframe src="//' + EMBED_HOST + '{share}.html" loading="lazy"></iframe>\n',
    '<iframe src="https://' + EMBED_HOST + '{share}.html?token=st=1~exp=2~acl=/hls/{share}/*~hmac=00"></iframe>\n',
    '<iframe width="560" src="https://www.youtube-nocookie.com/embed/{share}?m={m}"></iframe>\n',
]


@functools.lru_cache(maxsize=128)
def template(path, big):
    """The page at `path`, with PLACEHOLDER where the marker goes. Deterministic."""
    seed = zlib.crc32(path.encode())
    rng = random.Random(seed)
    sections = 48 if big else 3 + seed % 5
    paragraphs = 14 if big else 3
    parts = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
             '<title>Soak %s</title></head>\n<body>\n' % PLACEHOLDER]
    for s in range(sections):
        parts.append('<section id="s%d" data-m="%s">\n<h2>Section %d</h2>\n' % (s, PLACEHOLDER, s))
        for _ in range(paragraphs):
            n = 30 + rng.randrange(50)
            parts.append("<p>" + " ".join(rng.choice(WORDS) for _ in range(n)) + ".</p>\n")
        frame = IFRAMES[(seed + s) % len(IFRAMES)]
        parts.append(frame.format(share=SHARES[(seed // 7 + s) % len(SHARES)], m=PLACEHOLDER))
        parts.append("</section>\n")
    parts.append("<!-- end %s -->\n</body></html>\n" % PLACEHOLDER)
    return "".join(parts).encode()


def page(path, marker, big=False):
    return template(path, big).replace(PLACEHOLDER.encode(), marker.encode())


def new_marker():
    return "MK" + os.urandom(8).hex()


# ---------------------------------------------------------------------------
# The CMS stand-in
# ---------------------------------------------------------------------------


class CMSHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "soak-cms"
    timeout = 60  # a connection silent this long is dropped (bounds the threads)
    # Headers and body are two writes: without TCP_NODELAY, Nagle holds the
    # body until the gateway's delayed ACK (40 ms a response).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def marker(self, query):
        marker = query.get("m", [""])[0]
        header = self.headers.get("X-Soak-Marker")
        if header is not None and header != marker:
            # The gateway handed us one visitor's header with another's URL.
            self.reply(500, b"MIXED request: query %s, header %s\n" % (marker.encode(), header.encode()))
            return None
        return marker

    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/healthz":
            return self.reply(200, b"ok\n")
        marker = self.marker(query)
        if marker is None:
            return
        body = page(url.path, marker, "big" in query)
        headers = [("Cache-Control", "no-cache")]
        if "cz" in query:  # a CMS that compresses gated pages anyway
            body = gzip.compress(body, 1)
            headers.append(("Content-Encoding", "gzip"))
        if "ch" not in query and "slow" not in query:
            return self.reply(200, body, "text/html; charset=utf-8", headers)
        # Chunked, cut at offsets that fall anywhere (inside tags too); "slow"
        # also waits between chunks, as a CMS rendering as it goes.
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        rng = random.Random(marker)
        cuts = sorted(rng.randrange(1, len(body)) for _ in range(7))
        pos = 0
        for cut in cuts + [len(body)]:
            if cut > pos:
                self.wfile.write(b"%x\r\n%s\r\n" % (cut - pos, body[pos:cut]))
                self.wfile.flush()
                pos = cut
            if "slow" in query:
                time.sleep(0.04)
        self.wfile.write(b"0\r\n\r\n")

    def read_body(self):
        digest, n = hashlib.sha256(), 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = self.rfile.read(size)
                if len(data) != size:
                    raise ConnectionError("body cut")
                digest.update(data)
                n += size
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                data = self.rfile.read(min(left, 65536))
                if not data:
                    raise ConnectionError("body cut")
                digest.update(data)
                n += len(data)
                left -= len(data)
        return n, digest.hexdigest()

    def do_POST(self):
        url = urlsplit(self.path)
        marker = self.marker(parse_qs(url.query))
        if marker is None:
            return
        n, digest = self.read_body()
        self.reply(200, upload_answer(marker, n, digest))


def upload_answer(marker, n, digest):
    return b"marker=%s len=%d sha256=%s\n" % (marker.encode(), n, digest.encode())


class CMSServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def handle_error(self, request, client_address):
        pass  # peers going away mid-request are part of the test


def run_cms(args):
    server = CMSServer(("127.0.0.1", args.port), CMSHandler)
    if args.lifetime:
        threading.Timer(args.lifetime, lambda: os._exit(0)).start()
    server.serve_forever()


# ---------------------------------------------------------------------------
# Checks of one response
# ---------------------------------------------------------------------------

IFRAME_RE = re.compile(rb"<iframe\b[^>]*>")
ATTR_RE = re.compile(rb'\s(src|data-src)="([^"]*)"')
EMBED_RE = re.compile(rb"^(?:https:)?//" + re.escape(EMBED_HOST.encode()) + rb"([A-Za-z0-9_.-]+)\.html")
TOKEN_PARAM_RE = re.compile(rb"(?:\?|&amp;|&)token=([^&#\"\s<>]*)")
TOKEN_RE = re.compile(rb"^st=(\d+)~exp=(\d+)~acl=([^~]*)~hmac=[0-9a-f]{64}$")


# The gateway writes the pattern's https: in front of a //host embed it
# gives a token; the spelling is compared without it.
EMBED_SCHEME_RE = re.compile(rb"https:(//" + re.escape(EMBED_HOST.encode()) + rb")")


def without_tokens(body):
    return EMBED_SCHEME_RE.sub(rb"\1", TOKEN_PARAM_RE.sub(b"", body))


@functools.lru_cache(maxsize=256)
def normalized_template(path, big):
    return without_tokens(template(path, big))


def check_page(body, marker, path, big, entitled, complete):
    """Problems with an HTML body: [(category, detail)].

    entitled: None for a public page (must come back byte for byte), "all" or
    a set of shares for a gated one (those embeds, and only those, carry a
    fresh token for their own video). A body cut short (complete=False) is
    checked as far as it goes: markers and the iframes that arrived whole.
    """
    problems = []
    foreign = {m for m in MARK_RE.findall(body) if m != marker.encode()}
    if foreign:
        problems.append(("cross-visitor", "%d foreign markers in a %d-byte body, e.g. %s"
                         % (len(foreign), len(body), sorted(foreign)[0].decode())))
    if entitled is None:
        if complete and body != page(path, marker, big):
            problems.append(("body-mismatch", "public %s: %d bytes, not the CMS's %d"
                             % (path, len(body), len(page(path, marker, big)))))
        return problems
    now = time.time()
    embeds = 0
    for tag in IFRAME_RE.findall(body):
        for _, value in ATTR_RE.findall(tag):
            m = EMBED_RE.match(value)
            if not m:
                continue
            embeds += 1
            share = m.group(1).decode()
            tokens = TOKEN_PARAM_RE.findall(value)
            if entitled == "all" or share in entitled:
                if len(tokens) != 1:
                    problems.append(("untokened", "%s: %d tokens in %s" % (path, len(tokens), value[:160])))
                    continue
                t = TOKEN_RE.match(tokens[0])
                if not t:
                    problems.append(("untokened", "%s: not a fresh token: %s" % (path, tokens[0][:120])))
                    continue
                st, exp, acl = int(t.group(1)), int(t.group(2)), t.group(3).decode()
                if not (now - 120 <= st <= now + 5) or exp - st != 300 or acl != "/hls/%s/*" % share:
                    problems.append(("bad-token", "%s: st=%d (now %d) exp-st=%d acl=%s for share %s"
                                     % (path, st, now, exp - st, acl, share)))
            elif tokens:
                problems.append(("token-leak", "%s: token on share %s the session may not watch" % (path, share)))
    if complete:
        if embeds == 0:
            problems.append(("untokened", "%s: no embeds at all in %d bytes" % (path, len(body))))
        expected = normalized_template(path, big).replace(PLACEHOLDER.encode(), marker.encode())
        if without_tokens(body) != expected:
            problems.append(("body-mismatch", "gated %s: %d bytes, differs from the CMS's page beyond tokens"
                             % (path, len(body))))
    return problems


# ---------------------------------------------------------------------------
# Bookkeeping
# ---------------------------------------------------------------------------

CMS_ERRORS = {502, 504, "cut"}  # the CMS was killed: refused, or gone mid-body
# An upload the gateway answers 502 before it has read the body (the CMS is
# down) may come back as a reset: the gateway closes without draining it, and
# http.client writes the whole body before it reads the answer.
UPLOAD_CMS_ERRORS = CMS_ERRORS | {"reset"}
REDIS_ERRORS = {503}  # the session source cannot answer (on_error = "503")

# kind -> (statuses always fine, {chaos: statuses fine while that chaos is on})
EXPECT = {
    "gated": ({200}, {"cms": CMS_ERRORS}),
    "gated-partial": ({200}, {"cms": CMS_ERRORS}),
    "public": ({200}, {"cms": CMS_ERRORS}),
    "slow-cms": ({200}, {"cms": CMS_ERRORS}),
    "upload": ({200}, {"cms": UPLOAD_CMS_ERRORS}),
    "rotating": ({200, 403}, {"cms": CMS_ERRORS}),
    "denied": ({403, 400}, {}),
    "redis-gated": ({200}, {"cms": CMS_ERRORS, "redis": REDIS_ERRORS}),
    "redis-denied": ({403}, {"redis": REDIS_ERRORS}),
    "slow-reader": ({200}, {"cms": CMS_ERRORS}),
    "aborted": (None, {}),  # anything goes: the client walks away
    "h2-check": ({200}, {"cms": CMS_ERRORS}),
}


class Chaos:
    """When each kind of chaos was on, to judge errors by."""

    GRACE = {"cms": 2.0, "redis": 3.0}

    def __init__(self):
        self.lock = threading.Lock()
        self.windows = []  # [what, start, end or None]
        self.log = []  # wall-clock (UTC) times of the chaos, as in the gateways' logs, and seconds since start
        self.t0 = time.monotonic()
        self.counts = collections.Counter()

    def note(self, what):
        now = time.time()
        self.log.append("%s.%03d %.1f %s" % (time.strftime("%H:%M:%S", time.gmtime(now)), now % 1 * 1000,
                                            time.monotonic() - self.t0, what))

    def begin(self, what):
        with self.lock:
            self.windows.append([what, time.monotonic(), None])
            self.counts[what] += 1
            self.note(what + " down")

    def end(self, what):
        with self.lock:
            self.note(what + " up")
            for w in reversed(self.windows):
                if w[0] == what and w[2] is None:
                    w[2] = time.monotonic()
                    return

    def event(self, what):
        with self.lock:
            self.counts[what] += 1
            self.note(what)

    def during(self, what, t0, t1):
        with self.lock:
            for w, start, end in self.windows:
                if w == what and start <= t1 and (end is None or t0 <= end + self.GRACE[w]):
                    return True
        return False


class Stats:
    def __init__(self, chaos):
        self.chaos = chaos
        self.lock = threading.Lock()
        self.status = collections.defaultdict(collections.Counter)
        self.verdict = collections.defaultdict(collections.Counter)  # ok / chaos / unexpected
        self.latency = collections.defaultdict(list)
        self.failures = collections.Counter()
        self.examples = collections.defaultdict(list)
        self.done = 0
        self.retries = 0
        self.retry_after = collections.Counter()

    def fail(self, category, detail):
        with self.lock:
            self.failures[category] += 1
            if len(self.examples[category]) < 5:
                self.examples[category].append(detail)

    def record(self, kind, status, t0, t1, detail=""):
        ok, chaos = EXPECT[kind]
        if ok is None or status in ok:
            verdict = "ok"
        elif any(status in s and self.chaos.during(what, t0, t1) for what, s in chaos.items()):
            verdict = "chaos"
        else:
            verdict = "unexpected"
        with self.lock:
            self.status[kind][status] += 1
            self.verdict[kind][verdict] += 1
            if verdict != "unexpected" and status == 200:
                self.latency[kind].append(t1 - t0)
            self.done += 1
        if verdict == "unexpected":
            category = "gate-bypass" if kind in ("denied", "redis-denied") and status == 200 else "unexpected-status"
            self.fail(category, "%s got %s %s" % (kind, status, detail))


# ---------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------

RESET_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
                http.client.RemoteDisconnected, http.client.BadStatusLine)


class Connection(http.client.HTTPConnection):
    """http.client with TCP_NODELAY (a chunked upload is many small writes)."""

    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class SmallBufferConnection(http.client.HTTPConnection):
    """A connection whose receive buffer is small, so a slow reader pushes back."""

    def connect(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(self.timeout)
        self.sock.connect((self.host, self.port))


class Client:
    """One keep-alive connection to one gateway."""

    def __init__(self, port, stats):
        self.port, self.stats, self.conn, self.used = port, stats, None, False
        self.last = "-"  # the method and status of the last answer on this connection

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn, self.used = None, False

    def fetch(self, method, path, headers, body=None):
        """(status or "cut"/"reset"/"refused"/"timeout", headers, body bytes)."""
        for _ in range(2):
            if self.conn is None:
                self.conn = Connection("127.0.0.1", self.port, timeout=20)
            reused = self.used
            try:
                payload = body() if callable(body) else body
                self.conn.request(method, path, body=payload, headers=headers)
                self.used = True
                resp = self.conn.getresponse()
            except RESET_ERRORS:
                self.close()
                if reused:  # the keep-alive race: the server closed an idle connection
                    with self.stats.lock:
                        self.stats.retries += 1
                        self.stats.retry_after[self.last] += 1
                    continue
                return "reset", None, b""
            except ConnectionRefusedError:
                self.close()
                return "refused", None, b""
            except (socket.timeout, TimeoutError):
                self.close()
                return "timeout", None, b""
            try:
                data = resp.read()
            except http.client.IncompleteRead as e:
                self.close()
                return "cut", resp.headers, e.partial
            except (ConnectionError, socket.timeout, TimeoutError, http.client.HTTPException):
                self.close()
                return "cut", resp.headers, b""
            if resp.will_close:
                self.close()
            self.last = "%s %s" % (method, resp.status)
            return resp.status, resp.headers, data
        return "reset", None, b""


def decoded(headers, body):
    if headers is not None and headers.get("Content-Encoding", "").lower() == "gzip" and body:
        try:
            return gzip.decompress(body), True
        except (OSError, EOFError, zlib.error):
            return zlib.decompressobj(31).decompress(body), False
    return body, True


class Traffic:
    """The mixed traffic: paced keep-alive workers, slow readers, h2 checks."""

    def __init__(self, ctx, stats):
        self.ctx, self.stats = ctx, stats
        self.stop = threading.Event()
        self.rate = None  # requests/s for the paced mix; None: as fast as it goes
        self.pace_lock = threading.Lock()
        self.next_at = time.monotonic()
        self.threads = []
        mix = [("gated", 34, self.gated), ("gated-partial", 5, self.gated_partial),
               ("public", 20, self.public),
               ("upload", 8, self.upload), ("rotating", 4, self.rotating),
               ("denied", 10, self.denied), ("aborted", 4, self.aborted)]
        if ctx["redis"]:
            mix += [("redis-gated", 10, self.redis_gated), ("redis-denied", 3, self.redis_denied)]
        self.kinds = [m[2] for m in mix]
        self.weights = [m[1] for m in mix]

    # -- pacing ----------------------------------------------------------------

    def pace(self):
        if self.rate is None:
            return
        with self.pace_lock:
            now = time.monotonic()
            if self.next_at < now - 0.05:  # behind: do not burst to catch up
                self.next_at = now
            at = self.next_at
            self.next_at += 1.0 / self.rate
        delay = at - time.monotonic()
        if delay > 0:
            self.stop.wait(delay)

    def worker(self, seed):
        rng = random.Random(seed)
        clients = {"A": Client(self.ctx["port_a"], self.stats)}
        if self.ctx["redis"]:
            clients["B"] = Client(self.ctx["port_b"], self.stats)
        try:
            while not self.stop.is_set():
                self.pace()
                if self.stop.is_set():
                    break
                rng.choices(self.kinds, self.weights)[0](clients, rng)
        finally:
            for c in clients.values():
                c.close()

    def start(self, workers, slow_readers, h2_check):
        for i in range(workers):
            self.spawn(self.worker, i)
        for i in range(slow_readers):
            self.spawn(self.slow_reader_loop, 1000 + i)
            self.spawn(self.slow_cms_loop, 3000 + i)
        if h2_check:
            self.spawn(self.h2_check_loop, 2000)

    def spawn(self, fn, seed):
        t = threading.Thread(target=fn, args=(seed,), daemon=True)
        t.start()
        self.threads.append(t)

    def finish(self, timeout=25):
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        return sum(t.is_alive() for t in self.threads)

    # -- one request of each kind ----------------------------------------------

    def html(self, kind, client, path, session, entitled, rng, query="", big=False, gzip_ok=False):
        marker = new_marker()
        headers = {"X-Soak-Marker": marker}
        if session:
            headers["Cookie"] = "theme=dark; sessionid=%s" % session
        if gzip_ok:
            headers["Accept-Encoding"] = "gzip"
        t0 = time.monotonic()
        status, resp_headers, body = client.fetch("GET", "%s?m=%s%s" % (path, marker, query), headers)
        t1 = time.monotonic()
        self.stats.record(kind, status, t0, t1, path)
        if status in (200, "cut") and resp_headers is not None:
            body, whole = decoded(resp_headers, body)
            gated = entitled is not None
            if gated and status == 200 and "text/html" in resp_headers.get("Content-Type", ""):
                cc = resp_headers.get("Cache-Control", "")
                if "no-store" not in cc:
                    self.stats.fail("cacheable-gated", "%s: Cache-Control %r" % (path, cc))
            for category, detail in check_page(body, marker, path, big, entitled, status == 200 and whole):
                self.stats.fail(category, kind + ": " + detail)
        elif status in (403, 400, 503, 502, 504) and marker.encode() in body:
            self.stats.fail("gate-leak", "%s %s: the CMS page in a %s" % (kind, path, status))

    def gated(self, clients, rng):
        r = rng.random()
        query = "&ch=1" if r < 0.25 else "&cz=1" if r < 0.35 else ""
        self.html("gated", clients["A"], "/videos/v%d" % rng.randrange(16), self.ctx["member"], "all",
                  rng, query, gzip_ok=rng.random() < 0.2)

    def gated_partial(self, clients, rng):
        self.html("gated-partial", clients["A"], "/videos/v%d" % rng.randrange(16), self.ctx["partial"],
                  set(PARTIAL_SHARES), rng, "&ch=1" if rng.random() < 0.3 else "")

    def public(self, clients, rng):
        r = rng.random()
        query = "&ch=1" if r < 0.2 else "&cz=1" if r < 0.3 else ""
        self.html("public", clients["A"], "/public/p%d" % rng.randrange(16), None, None, rng, query)

    def slow_cms(self, clients, rng):
        self.html("slow-cms", clients["A"], "/videos/v%d" % rng.randrange(16), self.ctx["member"], "all",
                  rng, "&slow=1")

    def rotating(self, clients, rng):
        # Added to and removed from the allowlist by the chaos: 200 or 403.
        self.html("rotating", clients["A"], "/videos/v%d" % rng.randrange(16), self.ctx["rotating"], "all", rng)

    def redis_gated(self, clients, rng):
        self.html("redis-gated", clients["B"], "/videos/v%d" % rng.randrange(16), self.ctx["redis_member"],
                  "all", rng, "&ch=1" if rng.random() < 0.2 else "")

    def redis_denied(self, clients, rng):
        self.html("redis-denied", clients["B"], "/videos/v%d" % rng.randrange(16),
                  "stranger-" + os.urandom(6).hex(), "all", rng)

    def denied(self, clients, rng):
        marker = new_marker()
        variant = rng.randrange(5)
        path, cookie = "/videos/v%d?m=%s" % (rng.randrange(16), marker), None
        if variant == 1:
            cookie = "sessionid=stranger-" + os.urandom(6).hex()
        elif variant == 2:
            path = "/Videos/v1?m=" + marker
        elif variant == 3:
            path = "/public/%2e%2e/videos/v2?m=" + marker
        elif variant == 4:
            cookie = "sessionid=%s" % self.ctx["member"][:-1]  # one character short
        headers = {"X-Soak-Marker": marker}
        if cookie:
            headers["Cookie"] = cookie
        t0 = time.monotonic()
        status, _, body = clients["A"].fetch("GET", path, headers)
        self.stats.record("denied", status, t0, time.monotonic(), path.split("?")[0])
        if marker.encode() in body:
            self.stats.fail("gate-leak", "denied %s: the CMS page came back (%s)" % (path, status))

    def upload(self, clients, rng):
        marker = new_marker()
        size = rng.choice([0, 1024, 65536, 300000])
        data = rng.randbytes(size)
        gated = rng.random() < 0.5
        path = ("/videos/upload?m=" if gated else "/public/upload?m=") + marker
        headers = {"X-Soak-Marker": marker, "Content-Type": "application/octet-stream"}
        if gated:
            headers["Cookie"] = "sessionid=%s" % self.ctx["member"]
        if rng.random() < 0.3:
            body = lambda: (data[i:i + 16384] for i in range(0, len(data), 16384))  # chunked
        else:
            headers["Content-Length"] = str(size)
            body = data
        t0 = time.monotonic()
        status, _, answer = clients["A"].fetch("POST", path, headers, body)
        self.stats.record("upload", status, t0, time.monotonic(), path.split("?")[0])
        if status == 200:
            want = upload_answer(marker, size, hashlib.sha256(data).hexdigest())
            if answer != want:
                category = "cross-visitor" if MARK_RE.search(answer) and marker.encode() not in answer else "body-mismatch"
                self.stats.fail(category, "upload of %d bytes: answer %r" % (size, answer[:120]))

    def aborted(self, clients, rng):
        """A visitor who walks away: mid-response, mid-head, mid-upload, right after asking."""
        variant = rng.randrange(4)
        marker = new_marker()
        t0 = time.monotonic()
        try:
            s = socket.create_connection(("127.0.0.1", self.ctx["port_a"]), timeout=2)
        except OSError:
            self.stats.record("aborted", "refused", t0, time.monotonic())
            self.stats.fail("gateway-down", "aborted: cannot connect")
            return
        try:
            if rng.random() < 0.5:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            cookie = "Cookie: sessionid=%s\r\n" % self.ctx["member"]
            if variant == 0:
                what = "/videos/big?m=%s&big=1" % marker if rng.random() < 0.2 else "/videos/v7?m=%s&ch=1" % marker
                s.sendall(("GET %s HTTP/1.1\r\nHost: soak\r\n%s\r\n" % (what, cookie)).encode())
                got, want = 0, rng.choice([1, 4096, 32768])
                while got < want:
                    chunk = s.recv(8192)
                    if not chunk or (got == 0 and not chunk.startswith(b"HTTP/1.1 200")):
                        break  # a short error page (CMS down): nothing to walk away from
                    got += len(chunk)
            elif variant == 1:
                s.sendall(("GET /videos/v1?m=%s HTTP/1.1\r\nHost: soak\r\nCook" % marker).encode())
            elif variant == 2:
                s.sendall(("POST /public/upload?m=%s HTTP/1.1\r\nHost: soak\r\nContent-Length: 262144\r\n\r\n"
                           % marker).encode() + os.urandom(65536))
            else:
                s.sendall(("GET /videos/v2?m=%s&slow=1 HTTP/1.1\r\nHost: soak\r\n%s\r\n" % (marker, cookie)).encode())
        except OSError:
            pass
        finally:
            s.close()
        self.stats.record("aborted", "variant-%d" % variant, t0, time.monotonic())

    # -- slow readers ------------------------------------------------------------

    def slow_reader_loop(self, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            if self.slow_read(rng) != 200:
                self.stop.wait(0.2)  # not a hot loop of 502s while the CMS is down

    def slow_cms_loop(self, seed):
        """Pages the CMS sends in 8 pieces 40 ms apart, on a connection of their own."""
        rng = random.Random(seed)
        clients = {"A": Client(self.ctx["port_a"], self.stats)}
        try:
            while not self.stop.wait(0.05):
                self.slow_cms(clients, rng)
        finally:
            clients["A"].close()

    def slow_read(self, rng):
        """A ~440 KB page read 8 KB at a time, 25 ms apart (~300 KB/s); one read in
        four also stalls longer than the gateway's read_timeout halfway."""
        gated = rng.random() < 0.7
        marker = new_marker()
        path = "/videos/big" if gated else "/public/big"
        headers = {"X-Soak-Marker": marker}
        if gated:
            headers["Cookie"] = "sessionid=%s" % self.ctx["member"]
        stall = rng.random() < 0.25
        conn = SmallBufferConnection("127.0.0.1", self.ctx["port_a"], timeout=30)
        t0 = time.monotonic()
        status, body, resp_headers = None, b"", None
        try:
            conn.request("GET", "%s?m=%s&big=1" % (path, marker), headers=headers)
            resp = conn.getresponse()
            resp_headers = resp.headers
            parts, stalled = [], False
            while True:
                chunk = resp.read(8192)
                if not chunk:
                    break
                parts.append(chunk)
                if self.stop.wait(0.025):
                    conn.close()
                    return None  # the run is over: not judged
                if stall and not stalled and len(parts) == 20:
                    stalled = True
                    if self.stop.wait(self.ctx["read_timeout"] + 1.0):
                        conn.close()
                        return None
            body = b"".join(parts)
            status = resp.status
            if resp_headers.get("Content-Length") and len(body) != int(resp_headers["Content-Length"]):
                status = "cut"
        except http.client.IncompleteRead as e:
            status, body = "cut", b"".join(parts) + e.partial
        except (ConnectionError, socket.timeout, TimeoutError, http.client.HTTPException, OSError):
            status = "cut" if resp_headers is not None else "reset"
        finally:
            conn.close()
        t1 = time.monotonic()
        self.stats.record("slow-reader", status, t0, t1, "%s%s" % (path, " (stalled)" if stall else ""))
        if status == "cut" and stall and not self.ctx["chaos"].during("cms", t0, t1):
            self.stats.fail("slow-reader-cut", "a reader that paused %.0f s had its response cut"
                            % (self.ctx["read_timeout"] + 1))
        if status in (200, "cut"):
            for category, detail in check_page(body, marker, path, True, "all" if gated else None, status == 200):
                self.stats.fail(category, "slow-reader: " + detail)
        return status

    # -- HTTP/2 content checks (h2load only counts statuses) ---------------------

    def h2_check_loop(self, seed):
        rng = random.Random(seed)
        while not self.stop.wait(0.5):
            marker = new_marker()
            path = "/videos/v%d" % rng.randrange(16)
            t0 = time.monotonic()
            try:
                out = subprocess.run(
                    ["curl", "-s", "--http2-prior-knowledge", "--max-time", "10",
                     "-H", "Cookie: sessionid=%s" % self.ctx["member"], "-H", "X-Soak-Marker: " + marker,
                     "-w", "\n%{http_code} %{http_version}",
                     "http://127.0.0.1:%d%s?m=%s" % (self.ctx["port_a"], path, marker)],
                    capture_output=True, timeout=15).stdout
            except subprocess.TimeoutExpired:
                out = b"\n000 0"
            body, _, trailer = out.rpartition(b"\n")
            code, _, version = trailer.decode().partition(" ")
            status = int(code) if code.isdigit() and code != "000" else "cut"
            if status == 200 and version != "2":
                self.stats.fail("h2", "curl --http2-prior-knowledge got HTTP/%s" % version)
            self.stats.record("h2-check", status, t0, time.monotonic(), path)
            if status == 200:
                for category, detail in check_page(body, marker, path, False, "all", True):
                    self.stats.fail(category, "h2-check: " + detail)


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


def bounded(cmd):
    """The command, killed if this process dies (setpriv --pdeathsig), so that
    nothing outlives the soak even when it is killed with -9."""
    if shutil.which("setpriv"):
        return ["setpriv", "--pdeathsig", "KILL", "--"] + cmd
    return cmd


class Procs:
    def __init__(self, work):
        self.work, self.procs = work, {}

    def start(self, name, cmd, env=None, log=None):
        out = open(log or os.path.join(self.work, name + ".log"), "ab")
        p = subprocess.Popen(bounded(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, cwd=self.work)
        out.close()
        self.procs[name] = p
        self.write_pids()
        return p

    def write_pids(self):
        with open(os.path.join(self.work, "pids"), "w") as f:
            f.write("".join("%d\n" % p.pid for p in self.procs.values() if p.poll() is None))

    def kill(self, name, sig=signal.SIGKILL, wait=5.0):
        p = self.procs.get(name)
        if p is None:
            return None
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            return p.wait(wait)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.kill(name, signal.SIGKILL, 2.0)
        self.write_pids()


def wait_http(port, path="/healthz", seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            status = c.getresponse().status
            c.close()
            if status < 500:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def redis_cmd(port, *args, timeout=1.0):
    """One command in RESP; the raw reply's first line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args))
        s.sendall(out)
        return s.recv(4096).split(b"\r\n")[0].decode()


def wait_redis(port, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if redis_cmd(port, "PING") == "+PONG":
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------


def proc_sample(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        return {"rss_kb": int(status["VmRSS"].split()[0]), "threads": int(status["Threads"]),
                "fds": len(os.listdir("/proc/%d/fd" % pid))}
    except (OSError, KeyError, ValueError):
        return None


def describe_fds(pid, roles):
    """The gateway's fds by what they are: sockets by the peer's role."""
    tcp = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                    tcp[inode] = (int(local.split(":")[1], 16), int(remote.split(":")[1], 16), state)
        except OSError:
            pass
    out = collections.Counter()
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for fd in names:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m and m.group(1) in tcp:
            lport, rport, state = tcp[m.group(1)]
            if state == "0A":
                out["listener :%d" % lport] += 1
            elif rport in roles:
                out["tcp to %s" % roles[rport]] += 1
            elif lport in roles:
                out["tcp from a client of %s" % roles[lport]] += 1
            else:
                out["tcp other"] += 1
        elif m:
            out["socket (not tcp)"] += 1
        elif target.startswith("anon_inode:"):
            out[target] += 1
        elif target.startswith("pipe:"):
            out["pipe"] += 1
        else:
            out["file " + target] += 1
    return out


class Sampler(threading.Thread):
    def __init__(self, pids, stats):
        super().__init__(daemon=True)
        self.pids, self.stats = pids, stats
        self.samples = []  # (t, phase, name, sample)
        self.phase = "start"
        self.stopped = threading.Event()
        self.dead = set()
        self.done = []  # (t, phase, requests done so far)

    def sample_now(self):
        t = time.monotonic()
        self.done.append((t, self.phase, self.stats.done))
        for name, pid in self.pids.items():
            s = proc_sample(pid)
            if s is None:
                if name not in self.dead:
                    self.dead.add(name)
                    self.stats.fail("gateway-exited", "%s (pid %d) is gone" % (name, pid))
                continue
            self.samples.append((t, self.phase, name, s))

    def run(self):
        while not self.stopped.wait(1.0):
            self.sample_now()

    def of(self, name, phase=None, t0=None, t1=None):
        return [s for t, p, n, s in self.samples if n == name and (phase is None or p == phase)
                and (t0 is None or t >= t0) and (t1 is None or t <= t1)]


# ---------------------------------------------------------------------------
# The soak
# ---------------------------------------------------------------------------

KEY = "5be0b1f4a3c29d8e7f60152a4c3b2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"


def gateway_config(listen, cms_port, session_source, admin=None, read_timeout=5):
    admin_table = '[admin]\nlisten = "127.0.0.1:%d"\n' % admin if admin else ""
    return """# Written by bench/soak.py.
[server]
listen = "127.0.0.1:{listen}"
header_timeout = "5s"
idle_timeout = "20s"
body_timeout = "10s"
shutdown_timeout = "5s"

[upstream]
url = "http://127.0.0.1:{cms}"
connect_timeout = "1s"
response_timeout = "5s"
read_timeout = "{read_timeout}s"
# Idle CMS connections are dropped after 3 s (default 90 s), so that the fd
# count can come back to its baseline within the soak's final idle.
pool_idle_timeout = "3s"

[session]
cookie = "sessionid"

{source}
{admin}
[reload]
watch = true
interval = "1s"

[[route]]
prefix = "/videos/"
access = "session"

[[route]]
prefix = "/"
access = "public"

[[embed]]
src = "https://api.vod2.infomaniak.com/res/embed/{{share}}.html"

[embed.token]
kind = "edgeauth"
key = "{key}"
ttl = "5m"
acl = "/hls/{{share}}/*"
""".format(listen=listen, cms=cms_port, source=session_source, admin=admin_table,
           read_timeout=read_timeout, key=KEY)


def write_allowlist(path, ctx, rotating, fillers):
    rng = random.Random()
    lines = ["# soak allowlist, rewritten by the chaos", ctx["member"],
             ctx["partial"] + " " + " ".join(PARTIAL_SHARES)]
    if rotating:
        lines.append(ctx["rotating"])
    lines += ["filler-%s" % rng.randbytes(8).hex() for _ in range(fillers)]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)  # atomic, as `mv` or a ConfigMap update


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100.0 * len(values)))]


def ms(x):
    return "-" if x is None else ("%.1f ms" % (x * 1000) if x < 1 else "%.2f s" % x)


def median(xs):
    return pct(xs, 50)


def run(args):
    work = os.path.abspath(args.work)
    args.bin = os.path.abspath(args.bin)  # the processes run in `work`
    procs = Procs(work)
    chaos = Chaos()
    stats = Stats(chaos)
    cap_stats = Stats(chaos)
    port_a, port_b, port_admin, port_cms, port_redis = free_ports(5)
    use_redis = bool(args.redis_server)
    tag = os.urandom(6).hex()
    ctx = {"port_a": port_a, "port_b": port_b, "redis": use_redis, "chaos": chaos,
           "member": "soak-member-" + tag, "partial": "soak-partial-" + tag,
           "rotating": "soak-rotating-" + tag, "redis_member": "soak-redis-" + tag,
           "read_timeout": 5}
    roles = {port_cms: "the CMS", port_redis: "Redis", port_a: "gateway A", port_b: "gateway B",
             port_admin: "admin"}
    allowlist = os.path.join(work, "allowlist.txt")
    write_allowlist(allowlist, ctx, False, 10)
    with open(os.path.join(work, "gateway-a.toml"), "w") as f:
        f.write(gateway_config(port_a, port_cms, '[session.allowlist]\nfile = "allowlist.txt"\n', port_admin))
    if use_redis:
        with open(os.path.join(work, "gateway-b.toml"), "w") as f:
            f.write(gateway_config(port_b, port_cms, """[session.allowlist.redis]
url = "redis://127.0.0.1:{port}/0"
key = "session:{{id}}"
timeout = "300ms"

[session.allowlist.cache]
# Short, so that lookups keep reaching Redis (and its restarts are felt).
ttl = "1s"
negative_ttl = "1s"
""".format(port=port_redis)))
    lifetime = str(int(args.duration + args.cap_seconds + 120))
    cms_cmd = [sys.executable, os.path.abspath(__file__), "cms", "--port", str(port_cms), "--lifetime", lifetime]
    redis_cmd_line = [args.redis_server, "--port", str(port_redis), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--dir", work, "--dbfilename", "soak.rdb", "--daemonize", "no"]
    env = dict(os.environ, EMBEDGATE_LOG=os.environ.get("EMBEDGATE_LOG", "info"))
    gateways = {"A (file)": "gateway-a"} | ({"B (redis)": "gateway-b"} if use_redis else {})
    h2load_proc, h2_totals, h2_runs = None, collections.Counter(), 0
    sampler = None
    traffic = None
    t_start = time.monotonic()
    try:
        procs.start("cms", cms_cmd)
        if not wait_http(port_cms):
            raise SystemExit("soak: the CMS does not answer")
        if use_redis:
            procs.start("redis", redis_cmd_line)
            if not wait_redis(port_redis):
                raise SystemExit("soak: redis-server does not answer")
            redis_cmd(port_redis, "SET", "session:" + ctx["redis_member"], "1")
            redis_cmd(port_redis, "SAVE")  # a restarted Redis loads it back
        for name, base in gateways.items():
            procs.start(base, [args.bin, "run", "--config", os.path.join(work, base + ".toml")], env=env)
        for name, base in gateways.items():
            port = port_a if base == "gateway-a" else port_b
            # A 403, so that the CMS is not asked and no pooled CMS connection
            # is open when the baseline is taken.
            if not wait_http(port, "/videos/ready", 15):
                with open(os.path.join(work, base + ".log"), "rb") as f:
                    sys.stderr.write(f.read()[-3000:].decode(errors="replace"))
                raise SystemExit("soak: %s does not answer" % name)
        pids = {name: procs.procs[base].pid for name, base in gateways.items()}
        sampler = Sampler(pids, stats)
        sampler.phase = "baseline"
        time.sleep(1.0)
        for _ in range(3):
            sampler.sample_now()
            time.sleep(0.5)
        baseline = {name: min(s["fds"] for s in sampler.of(name, "baseline")) for name in gateways}
        baseline_rss = {name: sampler.of(name, "baseline")[-1]["rss_kb"] for name in gateways}
        baseline_fd_kinds = {name: describe_fds(pids[name], roles) for name in gateways}
        sampler.start()

        # 1. Capacity: the paced mix, unpaced, on `workers` connections.
        sampler.phase = "capacity"
        log("capacity: %d workers, unpaced, %.0f s" % (args.workers, args.cap_seconds))
        cap = Traffic(ctx, cap_stats)
        cap.start(args.workers, 0, False)
        time.sleep(args.cap_seconds)
        cap.finish()
        capacity = cap_stats.done / args.cap_seconds
        target = capacity * args.load
        log("capacity %.0f req/s; running at %.0f%%: %.0f req/s for %.0f s"
            % (capacity, args.load * 100, target, args.duration))

        # 2. The run: paced traffic, slow readers, h2, chaos on a schedule.
        traffic = Traffic(ctx, stats)
        traffic.rate = target
        sampler.phase = "warm-up"
        run_start = time.monotonic()
        warm_end = run_start + args.duration * 0.2
        run_end = run_start + args.duration
        traffic.start(args.workers, args.slow_readers, bool(shutil.which("curl")))
        fillers = 10
        schedule = []
        c = 0
        while True:
            base = run_start + c * args.cycle
            if base >= run_end - 1:
                break
            P = args.cycle
            schedule += [(base + 0.0, "allow+", c), (base + 0.25 * P, "cms-kill", c),
                         (base + 0.25 * P + 1.0, "cms-start", c), (base + 0.5 * P, "allow-", c)]
            if use_redis:
                schedule += [(base + 0.6 * P, "redis-stop", c), (base + 0.6 * P + 2.0, "redis-start", c)]
            if args.h2load:
                schedule.append((base + 0.05, "h2load", c))
            c += 1
        schedule.sort()
        cms_down = redis_down = False
        for at, action, _ in schedule:
            while time.monotonic() < at:
                if sampler.phase == "warm-up" and time.monotonic() >= warm_end:
                    sampler.phase = "run"
                time.sleep(min(0.05, max(0.0, at - time.monotonic())))
            if at >= run_end:
                break
            if action == "allow+" or action == "allow-":
                fillers = random.choice([10, 500, 2000])
                write_allowlist(allowlist, ctx, action == "allow+", fillers)
                os.kill(pids["A (file)"], signal.SIGHUP)
                chaos.event("allowlist rewrite + SIGHUP (A)")
                if use_redis and action == "allow+":
                    os.kill(pids["B (redis)"], signal.SIGHUP)
                    chaos.event("SIGHUP (B)")
            elif action == "cms-kill":
                chaos.begin("cms")
                cms_down = True
                procs.kill("cms", signal.SIGKILL)
            elif action == "cms-start":
                procs.start("cms", cms_cmd)
                cms_down = False
                wait_http(port_cms, seconds=5)
                chaos.end("cms")
            elif action == "redis-stop":
                chaos.begin("redis")
                redis_down = True
                procs.kill("redis", signal.SIGTERM)
            elif action == "redis-start":
                procs.start("redis", redis_cmd_line)
                redis_down = False
                wait_redis(port_redis, 5)
                chaos.end("redis")
            elif action == "h2load":
                if h2load_proc is not None:
                    h2_totals += parse_h2load(h2load_proc.communicate()[0])
                seg = max(1.0, min(args.cycle, run_end - time.monotonic()) - 1.0)
                rps = max(1, int(target * args.h2_share / 2))
                h2load_proc = subprocess.Popen(bounded([
                    args.h2load, "-D", "%d" % seg, "-c", "2", "-m", "4", "--rps", str(rps),
                    "-H", "cookie: sessionid=%s" % ctx["member"],
                    "http://127.0.0.1:%d/videos/v3?m=MK0000000000000000" % port_a,
                    "http://127.0.0.1:%d/public/p4?m=MK0000000000000000" % port_a,
                    "http://127.0.0.1:%d/videos/v5?m=MK0000000000000000&ch=1" % port_a]),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                h2_runs += 1
            if sampler.dead:
                break
        while time.monotonic() < run_end and not sampler.dead:
            if sampler.phase == "warm-up" and time.monotonic() >= warm_end:
                sampler.phase = "run"
            time.sleep(0.05)
        if cms_down:
            procs.start("cms", cms_cmd)
            chaos.end("cms")
        if redis_down:
            procs.start("redis", redis_cmd_line)
            chaos.end("redis")
        sampler.phase = "stopping"
        traffic_end = time.monotonic()
        left = traffic.finish()
        if left:
            stats.fail("client-stuck", "%d client threads did not finish within 25 s" % left)
        if h2load_proc is not None:
            try:
                h2_totals += parse_h2load(h2load_proc.communicate(timeout=args.cycle + 10)[0])
            except subprocess.TimeoutExpired:
                h2load_proc.kill()
                stats.fail("h2load", "h2load did not finish")

        if h2_totals["4xx"] or h2_totals["3xx"] or h2_totals["unparsed"]:
            stats.fail("h2load", "h2load: %d 3xx, %d 4xx for an allowlisted session, %d outputs not understood"
                       % (h2_totals["3xx"], h2_totals["4xx"], h2_totals["unparsed"]))

        # 3. Idle: the fds must come back to the baseline.
        sampler.phase = "idle"
        allowance = {name: (1 if name.startswith("B") else 0) for name in gateways}
        settled = {}
        idle_start = time.monotonic()
        while time.monotonic() - idle_start < args.idle and len(settled) < len(gateways):
            time.sleep(1.0)
            for name in gateways:
                s = proc_sample(pids[name])
                if s and s["fds"] <= baseline[name] + allowance[name] and name not in settled:
                    settled[name] = time.monotonic() - idle_start
        end_fds = {name: (proc_sample(pids[name]) or {}).get("fds") for name in gateways}
        end_fd_kinds = {name: describe_fds(pids[name], roles) for name in gateways}
        end_rss_idle = {name: (proc_sample(pids[name]) or {}).get("rss_kb") for name in gateways}
        metrics = scrape(port_admin)
        with open(os.path.join(work, "metrics-a.txt"), "w") as f:
            f.write(metrics)
        gauges = metric_values(metrics, "embedgate_open_connections")
        if not metrics:
            stats.fail("admin", "A's /metrics did not answer")
        elif any(v != 0 for v in gauges.values()):
            stats.fail("open-connections", "A's embedgate_open_connections after the idle: %s" % gauges)
        reloads = metric_values(metrics, "embedgate_reloads_total")
        if any(v for k, v in reloads.items() if "ok" not in k and "success" not in k):
            stats.fail("reload", "A's reloads: %s" % reloads)
        for name in gateways:
            if name not in settled:
                extra = end_fd_kinds[name] - baseline_fd_kinds[name]
                stats.fail("fd-leak", "%s: %s fds %.0f s after the traffic stopped, baseline %d (+%d allowed); "
                           "more than at the baseline: %s" % (name, end_fds[name], args.idle, baseline[name],
                                                              allowance[name], dict(extra)))
        sampler.stopped.set()

        # 4. Shutdown: SIGTERM, drained and gone within shutdown_timeout.
        exit_codes = {}
        for name, base in gateways.items():
            exit_codes[name] = procs.kill(base, signal.SIGTERM, 10.0)
            if exit_codes[name] != 0:
                stats.fail("shutdown", "%s exited %s on SIGTERM" % (name, exit_codes[name]))
        log_lines = {}
        for name, base in gateways.items():
            counts, panics = scan_log(os.path.join(work, base + ".log"))
            log_lines[name] = counts
            for line in panics[:3]:
                stats.fail("panic", "%s: %s" % (name, line))
            if len(panics) > 3:
                stats.fail("panic", "%s: %d more lines saying panicked" % (name, len(panics) - 3))

        # 5. Memory: RSS over the last 20% of the run against the 20% after
        # the warm-up (the first 20%, while the heap grows to its working
        # size: a 10-minute run is flat from the third minute, and a 60 s
        # run's first seconds would count that growth as creep): medians of
        # the per-second samples, as RSS swings by 10%
        # from one second to the next with the large pages in flight.
        rss = {}
        for name in gateways:
            window = warm_end - run_start
            warm = [s["rss_kb"] for s in sampler.of(name, None, warm_end, warm_end + window)]
            end = [s["rss_kb"] for s in sampler.of(name, None, traffic_end - window, traffic_end)]
            all_run = sampler.of(name, None, run_start, traffic_end)
            rss[name] = {"baseline": baseline_rss[name], "warm": median(warm), "end": median(end),
                         "max": max(s["rss_kb"] for s in all_run), "idle": end_rss_idle[name],
                         "fds_base": baseline[name], "fds_max": max(s["fds"] for s in all_run),
                         "fds_end": end_fds[name], "fds_settled": settled.get(name),
                         "thr_min": min(s["threads"] for s in all_run), "thr_max": max(s["threads"] for s in all_run)}
            if rss[name]["warm"] and rss[name]["end"] and rss[name]["end"] > rss[name]["warm"] * 1.10:
                stats.fail("rss-growth", "%s: RSS (median) %d kB after the warm-up, %d kB over the last 20%% (+%.1f%%)"
                           % (name, rss[name]["warm"], rss[name]["end"],
                              100.0 * (rss[name]["end"] / rss[name]["warm"] - 1)))
        with open(os.path.join(work, "throughput.csv"), "w") as f:
            f.write("t,phase,requests_done\n")
            for t, phase, done in sampler.done:
                f.write("%.1f,%s,%d\n" % (t - t_start, phase, done))
        with open(os.path.join(work, "chaos.log"), "w") as f:
            f.write("\n".join(chaos.log) + "\n")
        with open(os.path.join(work, "samples.csv"), "w") as f:
            f.write("t,phase,gateway,rss_kb,fds,threads\n")
            for t, phase, name, s in sampler.samples:
                f.write("%.1f,%s,%s,%d,%d,%d\n" % (t - t_start, phase, name, s["rss_kb"], s["fds"], s["threads"]))
        for k, v in cap_stats.failures.items():
            stats.failures[k] += v
            stats.examples[k] += cap_stats.examples[k][:5 - len(stats.examples[k])]

        summary = summarize(args, ctx, stats, chaos, capacity, target, traffic_end - run_start, rss,
                            h2_totals, h2_runs, log_lines, sampler.done)
        print(summary)
        with open(os.path.join(work, "summary.md"), "w") as f:
            f.write(summary)
        if args.summary:
            with open(args.summary, "w") as f:
                f.write(summary)
        return 1 if stats.failures else 0
    finally:
        if traffic is not None:
            traffic.stop.set()
        if h2load_proc is not None and h2load_proc.poll() is None:
            h2load_proc.kill()
            h2load_proc.wait()
        if sampler is not None:
            sampler.stopped.set()
        procs.stop_all()


def parse_h2load(out):
    text = out.decode(errors="replace")
    c = collections.Counter()
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    if m:
        for k, v in zip(["total", "started", "done", "succeeded", "failed", "errored", "timeout"], m.groups()):
            c[k] += int(v)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        for k, v in zip(["2xx", "3xx", "4xx", "5xx"], m.groups()):
            c[k] += int(v)
    if not c:
        c["unparsed"] += 1
    return c


def scrape(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode(errors="replace")
        c.close()
        return text
    except OSError:
        return ""


def metric_values(text, family):
    """{labels: value} of one metric family in Prometheus text."""
    out = {}
    for line in text.splitlines():
        if line.startswith(family + "{") or line.startswith(family + " "):
            name, _, value = line.rpartition(" ")
            try:
                out[name[len(family):] or "-"] = float(value)
            except ValueError:
                pass
    return out


def scan_log(path):
    counts, panics = collections.Counter(), []
    with open(path, "rb") as f:
        for line in f:
            if b"panicked" in line:
                panics.append(line.decode(errors="replace").strip()[:300])
            for level in (b"WARN", b"ERROR"):
                if level in line[:80]:
                    counts[level.decode()] += 1
            counts["lines"] += 1
    return counts, panics


def log(msg):
    print("soak: " + msg, flush=True)


def summarize(args, ctx, stats, chaos, capacity, target, seconds, rss, h2, h2_runs, log_lines, stats_done):
    out = []
    total = sum(sum(c.values()) for c in stats.status.values())
    out.append("Soak: %s s of traffic (%s), %d paced workers + %d slow readers + h2; "
               "capacity %.0f req/s (closed loop, %.0f s), target %.0f%% = %.0f req/s, achieved %.0f req/s "
               "(%d requests; %d sent again on a new connection after the gateway closed a kept-alive one: %s)\n"
               % (round(seconds), "QUICK" if args.duration <= 120 else "full", args.workers, args.slow_readers,
                  capacity, args.cap_seconds, args.load * 100, target, total / seconds if seconds else 0,
                  total, stats.retries, ", ".join("%d after a %s" % (n, k) for k, n in stats.retry_after.most_common())))
    per_second = []
    marks = [(t, d) for t, phase, d in stats_done if phase in ("warm-up", "run")]
    for (t0, d0), (t1, d1) in zip(marks, marks[1:]):
        if t1 > t0:
            per_second.append((d1 - d0) / (t1 - t0))
    if per_second:
        out.append("Requests/s each second of the run (h2load aside): min %.0f, median %.0f, max %.0f\n"
                   % (min(per_second), pct(per_second, 50), max(per_second)))
    out.append("Chaos: " + ", ".join("%s x%d" % (k, v) for k, v in sorted(chaos.counts.items())).replace(
        "cms x", "CMS kill -9 + restart x").replace("redis x", "Redis stop + start x") + "\n")
    out.append("| kind | requests | ok | chaos-allowed | unexpected | statuses | p50 | p99 |")
    out.append("|---|---|---|---|---|---|---|---|")
    for kind in EXPECT:
        if kind not in stats.status:
            continue
        st = stats.status[kind]
        v = stats.verdict[kind]
        statuses = " ".join("%s:%d" % (k, n) for k, n in sorted(st.items(), key=lambda kv: str(kv[0])))
        lat = stats.latency[kind]
        out.append("| %s | %d | %d | %d | %d | %s | %s | %s |" % (
            kind, sum(st.values()), v["ok"], v["chaos"], v["unexpected"], statuses,
            ms(pct(lat, 50)) if kind != "aborted" else "-", ms(pct(lat, 99)) if kind != "aborted" else "-"))
    if h2_runs:
        out.append("| h2load (h2c, %d runs) | %d | %d 2xx | %d 5xx | %d 4xx | failed %d, errored %d, timeout %d | - | - |"
                   % (h2_runs, h2["total"], h2["2xx"], h2["5xx"], h2["4xx"], h2["failed"], h2["errored"], h2["timeout"]))
    out.append("")
    out.append("| gateway | RSS before traffic | RSS after warm-up (median) | RSS last 20% (median) | RSS max | growth | RSS after idle "
               "| fds before / max / after idle | fds back after | threads min / max | log lines (WARN, ERROR) |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rss.items():
        growth = "%+.1f%%" % (100.0 * (r["end"] / r["warm"] - 1)) if r["warm"] and r["end"] else "-"
        lines = log_lines.get(name, {})
        out.append("| %s | %.1f MB | %.1f MB | %.1f MB | %.1f MB | %s | %s | %d / %d / %s | %s | %d / %d | %d (%d, %d) |" % (
            name, r["baseline"] / 1024, (r["warm"] or 0) / 1024, (r["end"] or 0) / 1024, r["max"] / 1024, growth,
            "%.1f MB" % (r["idle"] / 1024) if r["idle"] else "-", r["fds_base"], r["fds_max"], r["fds_end"],
            "%.0f s" % r["fds_settled"] if r["fds_settled"] is not None else "never",
            r["thr_min"], r["thr_max"], lines.get("lines", 0), lines.get("WARN", 0), lines.get("ERROR", 0)))
    out.append("")
    if stats.failures:
        out.append("FAILED:")
        for category, n in sorted(stats.failures.items()):
            out.append("- %s x%d" % (category, n))
            for e in stats.examples[category]:
                out.append("    %s" % e)
    else:
        out.append("PASSED: no panic, every gated page tokened, no foreign bytes, RSS within 10%, fds back to baseline.")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("cms")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--lifetime", type=float, default=0)
    p = sub.add_parser("run")
    p.add_argument("--bin", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--cap-seconds", type=float, default=10)
    p.add_argument("--cycle", type=float, default=30)
    p.add_argument("--load", type=float, default=0.7)
    p.add_argument("--workers", type=int, default=20)
    p.add_argument("--slow-readers", type=int, default=2)
    p.add_argument("--h2-share", type=float, default=0.1)
    p.add_argument("--idle", type=float, default=12)
    p.add_argument("--redis-server", default="")
    p.add_argument("--h2load", default="")
    p.add_argument("--summary", default="")
    args = parser.parse_args()
    if args.cmd == "cms":
        run_cms(args)
    else:
        def stop(signum, _frame):
            # Once: a second signal must not cut the cleanup short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        sys.exit(run(args))


if __name__ == "__main__":
    main()
