#!/usr/bin/env python3
"""Hostile HTTP/1.1 requests against a real `shardsync serve`, as raw bytes over loopback
sockets (RELIABILITY.md §1.5 S*, §1.6 R*; stdlib only).

    http_attacks.py SHARDSYNC

Starts the server on 127.0.0.1:0 over a small collection (with a write token, and a sentinel
file beside the collection), sends each case, and checks the answer: the status class, that a
framing error closes the connection and answers exactly once (nothing smuggled behind it gets
its own answer), that no byte of the sentinel leaks, and that the server still answers a
plain GET after every case. Prints one line per failed case and a summary; exit 0 when all
pass. Cases already asserted in-process by server_tests ("framing attacks get 400 ...") are
not repeated here except where the real binary's wiring matters.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SMUGGLED = b"GET /ckpt/secret-probe HTTP/1.1\r\nHost: x\r\n\r\n"
TOKEN = "0123456789abcdef-write-token"


def exchange(port, data, timeout=3.0, read_limit=64 << 20):
    """Sends DATA, then reads until the server closes or TIMEOUT passes with no byte."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may close while we still send (an early 400): read its answer
        out, closed = b"", False
        while len(out) < read_limit:
            try:
                chunk = s.recv(1 << 16)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
        return out, closed
    finally:
        s.close()


def status_of(reply):
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", reply)
    return int(m.group(1)) if m else None


def header(reply, name):
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    m = re.search(r"(?im)^" + re.escape(name) + r":\s*(.*?)\s*$", head)
    return m.group(1) if m else None


def body_of(reply):
    return reply.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in reply else b""


class Suite:
    def __init__(self, port, small, big):
        self.port, self.small, self.big = port, small, big
        self.passed, self.failed = 0, []

    def case(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed.append("%s %s" % (name, detail))
        # After every case the server still answers a legitimate request.
        reply, _ = exchange(self.port, b"GET /ckpt/small.bin HTTP/1.1\r\nHost: x\r\n"
                            b"Connection: close\r\n\r\n")
        if status_of(reply) != 200 or body_of(reply) != self.small:
            self.failed.append("server stopped answering after: " + name)

    def framing_error(self, name, request, allowed=(400,)):
        """A framing error: one answer from ALLOWED, connection closed, nothing smuggled."""
        reply, closed = exchange(self.port, request + SMUGGLED)
        st = status_of(reply)
        self.case(name, st in allowed and closed and reply.count(b"HTTP/1.1 ") == 1 and
                  b"secret" not in reply,
                  "(status %s, closed %s, answers %d)" % (st, closed, reply.count(b"HTTP/1.1 ")))


def run(port, small, big):
    t = Suite(port, small, big)
    get = b"GET /ckpt/small.bin HTTP/1.1\r\nHost: x\r\n"

    # S7: Content-Length forms a longest-prefix parser would accept
    t.framing_error("S7 two different Content-Length", get + b"Content-Length: 5\r\n"
                    b"Content-Length: 6\r\n\r\nhello!")
    t.framing_error("S7 Content-Length 5, 6", get + b"Content-Length: 5, 6\r\n\r\nhello!")
    t.framing_error("S7 Content-Length 0x10", get + b"Content-Length: 0x10\r\n\r\n")
    t.framing_error("S7 Content-Length 10^23", get + b"Content-Length: 1" + b"0" * 23 + b"\r\n\r\n",
                    (400, 413))
    t.framing_error("S7 Content-Length -1", get + b"Content-Length: -1\r\n\r\n")
    # S6: lenient line parsing
    t.framing_error("S6 bare LF line ends", b"GET /ckpt/small.bin HTTP/1.1\nHost: x\n\n")
    t.framing_error("S6 NUL in a header value", get + b"X-A: a\x00b\r\n\r\n")
    t.framing_error("S6 CR alone in a value", get + b"X-A: a\rb\r\n\r\n")
    t.framing_error("S6 obs-fold", get + b"X-A: b\r\n c\r\n\r\n")
    t.framing_error("S6 space before colon", b"GET /ckpt/small.bin HTTP/1.1\r\nHost: x\r\n"
                    b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n")
    # S8: chunked bodies
    chunked = get + b"Transfer-Encoding: chunked\r\n\r\n"
    t.framing_error("S8 chunk size overflow", chunked + b"1" + b"0" * 20 + b"\r\nx\r\n0\r\n\r\n")
    t.framing_error("S8 chunk size 0_2e", chunked + b"0_2e\r\n\r\n")
    t.framing_error("S8 chunk size with a sign", chunked + b"+5\r\nhello\r\n0\r\n\r\n")
    t.framing_error("S8 CR in a chunk extension", chunked + b"5;a\rb\r\nhello\r\n0\r\n\r\n")
    t.framing_error("S8 1 MiB chunk extension", chunked + b"5;" + b"e" * (1 << 20) +
                    b"\r\nhello\r\n0\r\n\r\n", (400, 413, 431))
    t.framing_error("S8 no CRLF after chunk data", chunked + b"5\r\nhelloXX0\r\n\r\n")
    # S2-S4 on the real binary (the in-process table has the rest)
    t.framing_error("S2 Transfer-Encoding gzip", get + b"Transfer-Encoding: gzip\r\n\r\n")
    t.framing_error("S4 chunked in HTTP/1.0", b"GET /ckpt/small.bin HTTP/1.0\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    t.framing_error("S5 two Host fields", get + b"Host: y\r\n\r\n")

    # A malformed chunked upload: 400, and nothing published
    t.framing_error("S8 bad chunk in an authorised PUT", b"PUT /ckpt/torn.bin HTTP/1.1\r\nHost: x\r\n"
                    b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
    reply, _ = exchange(port, b"GET /ckpt/torn.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    t.case("S8 the torn upload is not published", status_of(reply) == 404,
           "(status %s)" % status_of(reply))

    # S13: method and version confusion
    for name, line, allowed in [
            ("S13 HTTP/2.0 request line", b"GET /ckpt/small.bin HTTP/2.0", (400, 505)),
            ("S13 HTTP/0.9 request line", b"GET /ckpt/small.bin", (400,)),
            ("S13 OPTIONS *", b"OPTIONS * HTTP/1.1", (400, 404, 405, 501)),
            ("S13 CONNECT", b"CONNECT 127.0.0.1:22 HTTP/1.1", (400, 405, 501)),
            ("S13 FOO method", b"FOO /ckpt/small.bin HTTP/1.1", (400, 405, 501)),
            ("S13 TRACE", b"TRACE /ckpt/small.bin HTTP/1.1", (400, 405, 501))]:
        reply, _ = exchange(port, line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        t.case(name, status_of(reply) in allowed, "(status %s)" % status_of(reply))
    reply, _ = exchange(port, b"GET http://127.0.0.1/ckpt/small.bin HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
    t.case("S13 absolute-form target", status_of(reply) in (200, 400) and
           (status_of(reply) != 200 or body_of(reply) == small), "(status %s)" % status_of(reply))

    # S14: Expect: 100-continue on an upload that will be refused: no 100, an early answer
    for name, auth in [("no token", b""), ("wrong token", b"Authorization: Bearer nope-nope-nope\r\n")]:
        reply, closed = exchange(port, b"PUT /ckpt/up.bin HTTP/1.1\r\nHost: x\r\n" + auth +
                                 b"Content-Length: 10737418240\r\nExpect: 100-continue\r\n\r\n",
                                 timeout=3)
        t.case("S14 Expect: 100-continue, " + name, status_of(reply) in (401, 403) and
               b"100 Continue" not in reply, "(status %s)" % status_of(reply))

    # S11: 10,000 pipelined requests in one write: answered in order or cut, never a blow-up
    many = (b"HEAD /ckpt/small.bin HTTP/1.1\r\nHost: x\r\n\r\n") * 10000
    start = time.time()
    reply, closed = exchange(port, many, timeout=30)
    answers = reply.count(b"HTTP/1.1 200 ")
    # (90 s: a sanitizer build on a loaded 2-core machine needs ~40 s; release ~1 s)
    t.case("S11 10,000 pipelined requests", answers > 0 and answers <= 10000 and
           time.time() - start < 90, "(%d answers in %.1f s)" % (answers, time.time() - start))

    # R1: traversal targets over the real binary
    for target in [b"/ckpt/../sentinel.txt", b"/ckpt/%2e%2e/sentinel.txt", b"/%2e%2e/sentinel.txt",
                   b"/ckpt/..%2fsentinel.txt", b"/ckpt/%252e%252e/sentinel.txt",
                   b"/ckpt/%c0%ae%c0%ae/sentinel.txt", b"/ckpt/..\\sentinel.txt",
                   b"/ckpt/\x02", b"/ckpt/small.bin%00.txt", b"/ckpt/%", b"//ckpt/small.bin"]:
        reply, _ = exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                            b"Connection: close\r\n\r\n")
        st = status_of(reply)
        t.case("R1 target %r" % target, st in (400, 404) and b"SENTINEL" not in reply,
               "(status %s)" % st)

    # R3/R4: range abuse and edge values on a file of len(big) bytes
    size = len(big)

    def range_case(name, value, allowed, extra=b""):
        reply, _ = exchange(port, b"GET /ckpt/big.bin HTTP/1.1\r\nHost: x\r\nRange: " + value +
                            b"\r\n" + extra + b"Connection: close\r\n\r\n", timeout=5)
        st, body = status_of(reply), body_of(reply)
        ok = st in allowed and len(body) <= size
        if st == 206:  # the body is exactly what Content-Range says, and those bytes
            m = re.match(r"bytes (\d+)-(\d+)/(\d+)$", header(reply, "Content-Range") or "")
            ok = ok and m is not None and int(m.group(3)) == size and \
                body == big[int(m.group(1)):int(m.group(2)) + 1]
        if st == 200:
            ok = ok and body == big
        t.case(name, ok, "(status %s, %d bytes)" % (st, len(body)))

    range_case("R3 1,000 overlapping ranges", b"bytes=" + b",".join([b"0-"] * 1000),
               (200, 206, 416))
    range_case("R3 CVE-2011-3192 ranges", b"bytes=0-," + b",".join(b"5-%d" % i for i in range(1300)),
               (200, 206, 416))
    range_case("R3 unsorted tiny ranges", b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in
                                                                range(900, 0, -3)), (200, 206, 416))
    range_case("R4 last-pos 2^64-1", b"bytes=18-18446744073709551615", (206, 416))
    range_case("R4 last-pos 2^64", b"bytes=18-18446744073709551616", (200, 206, 416))
    range_case("R4 bytes=-0", b"bytes=-0", (200, 416))
    range_case("R4 bytes=5-1", b"bytes=5-1", (200, 416))
    range_case("R4 bytes=alpha", b"bytes=alpha", (200, 416))
    range_case("R4 suffix past the size", b"bytes=-%d" % (size * 10), (200, 206))
    range_case("R4 first-pos past 4 GiB", b"bytes=5000000000-", (416,))
    range_case("R4 first-pos at the size", b"bytes=%d-" % size, (416,))
    range_case("R4 other unit", b"items=0-5", (200,))
    range_case("R4 MS15-034 style", b"bytes=0-18446744073709551615", (200, 206, 416))
    # R5: If-Range with a weak ETag or a date: never a 206 splice from a weak validator
    reply, _ = exchange(port, b"HEAD /ckpt/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    etag = (header(reply, "ETag") or "").encode()
    range_case("R5 If-Range with the weak form of the ETag", b"bytes=10-20", (200,),
               b"If-Range: W/" + etag + b"\r\n")
    range_case("R5 If-Range with another ETag", b"bytes=10-20", (200,),
               b"If-Range: \"0000\"\r\n")
    range_case("R5 If-Range with the strong ETag", b"bytes=10-20", (206,),
               b"If-Range: " + etag + b"\r\n")
    range_case("R5 If-Range with an old date", b"bytes=10-20", (200,),
               b"If-Range: Thu, 01 Jan 1970 00:00:00 GMT\r\n")
    # R6: conditional requests (weak comparison for If-None-Match)
    reply, _ = exchange(port, b"HEAD /ckpt/small.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    etag = (header(reply, "ETag") or "").encode()
    for name, cond, want in [("If-None-Match *", b"If-None-Match: *", 304),
                             ("If-None-Match W/etag", b"If-None-Match: W/" + etag, 304),
                             ("If-None-Match list", b"If-None-Match: \"x\", " + etag, 304),
                             ("If-None-Match other", b"If-None-Match: \"x\"", 200),
                             ("If-Modified-Since past 2038",
                              b"If-Modified-Since: Tue, 19 Jan 2038 03:14:08 GMT", 304),
                             ("If-Modified-Since garbage", b"If-Modified-Since: yesterday", 200)]:
        reply, _ = exchange(port, b"GET /ckpt/small.bin HTTP/1.1\r\nHost: x\r\n" + cond +
                            b"\r\nConnection: close\r\n\r\n")
        t.case("R6 " + name, status_of(reply) == want, "(status %s)" % status_of(reply))
    # R7: HEAD has GET's length and no body
    reply, closed = exchange(port, b"HEAD /ckpt/big.bin HTTP/1.1\r\nHost: x\r\n"
                             b"Connection: close\r\n\r\n")
    t.case("R7 HEAD", status_of(reply) == 200 and header(reply, "Content-Length") == str(size) and
           body_of(reply) == b"", "(status %s)" % status_of(reply))
    # R9: an error page never reflects the target as markup
    reply, _ = exchange(port, b"GET /ckpt/%3Cscript%3Ealert(1)%3C/script%3E HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
    t.case("R9 no reflected markup", status_of(reply) in (400, 404) and b"<script>" not in reply,
           "(status %s)" % status_of(reply))
    return t


def start_server(binary, work, extra=()):
    port_file = os.path.join(work, "port")
    if os.path.exists(port_file):
        os.unlink(port_file)
    log = open(os.path.join(work, "server.log"), "ab")
    proc = subprocess.Popen(list(extra) + [
        binary, "serve", "--collection", "ckpt=" + os.path.join(work, "coll"), "--listen",
        "127.0.0.1:0", "--port-file", port_file, "--state-dir", os.path.join(work, "state"),
        "--write-token-file", os.path.join(work, "token")], stdout=log, stderr=log)
    for _ in range(300):
        if os.path.exists(port_file) and open(port_file).read().strip():
            return proc, int(open(port_file).read())
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def wait_listed(port, name):
    for _ in range(100):
        reply, _ = exchange(port, b"HEAD /ckpt/" + name + b" HTTP/1.1\r\nHost: x\r\n"
                            b"Connection: close\r\n\r\n")
        if status_of(reply) == 200:
            return
        time.sleep(0.1)


def fd_flood(binary, work, small):
    """S12: the server at a low fd limit, flooded past it; it answers again once the flood
    ends (the accept loop survived EMFILE)."""
    proc, port = start_server(binary, work, ["prlimit", "--nofile=64"])
    try:
        wait_listed(port, b"small.bin")
        flood = []
        for _ in range(200):
            try:
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        time.sleep(0.5)
        for s in flood:
            s.close()
        time.sleep(0.5)
        for _ in range(50):
            reply, _ = exchange(port, b"GET /ckpt/small.bin HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\n\r\n", timeout=2)
            if status_of(reply) == 200:
                break
            time.sleep(0.1)
        return status_of(reply) == 200 and body_of(reply) == small and proc.poll() is None, \
            "(%d connections opened, then status %s)" % (len(flood), status_of(reply))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def main():
    binary = os.path.realpath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="http_attacks.")
    try:
        os.makedirs(os.path.join(work, "coll"))
        small = os.urandom(1000)
        big = os.urandom(3 << 20)
        open(os.path.join(work, "coll", "small.bin"), "wb").write(small)
        open(os.path.join(work, "coll", "big.bin"), "wb").write(big)
        open(os.path.join(work, "sentinel.txt"), "w").write("SENTINEL\n")
        open(os.path.join(work, "token"), "w").write(TOKEN + "\n")
        proc, port = start_server(binary, work)
        try:
            wait_listed(port, b"big.bin")
            suite = run(port, small, big)
            alive = proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
        if not alive or code not in (0, -signal.SIGTERM):
            suite.failed.append("the server died or stopped badly (exit %s)" % code)
        ok, detail = fd_flood(binary, work, small)
        suite.case = None
        if ok:
            suite.passed += 1
        else:
            suite.failed.append("S12 fd flood past RLIMIT_NOFILE " + detail)
        for line in suite.failed:
            print("FAIL: " + line)
        print("http_attacks: %d passed, %d failed" % (suite.passed, len(suite.failed)))
        if suite.failed:
            sys.stdout.write(open(os.path.join(work, "server.log")).read()[-3000:])
        return 1 if suite.failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
