#!/usr/bin/env python3
"""A scripted, misbehaving HTTP/1.1 file server for the downloader's tests (stdlib only).

    python3 fault_server.py ROOT

Binds 127.0.0.1 on a free port and prints the port on the first line of stdout. Files come
from ROOT. A request names its behaviour in the query string:

    GET /NAME?seq=MODE1,MODE2,...&key=KEY

The n-th request with the same KEY (default: the path and query) behaves as MODEn; past the
end of the list the last mode repeats, so `seq=short_cl,ok` fails once and then serves. The
well-behaved response ("ok") has a strong ETag (from the content), Last-Modified and
Content-Length, and honours `Range: bytes=N-` / `bytes=N-M` and `If-Range`. The fault modes
(RELIABILITY.md §2) deliver that response wrongly:

    short_cl         Content-Length of the whole body, half of it sent, then close
    long_cl          Content-Length a quarter short of the body, all of it sent
    no_cl_close      no Content-Length, half of the body, close (undetectable by HTTP)
    chunk_trunc      chunked, half of the body, close without the last chunk
    rst              Content-Length, half of the body, then a TCP reset (SO_LINGER 0)
    stall            Content-Length, half of the body, then silence for `stall` seconds
    slow             the well-behaved response, after `stall` seconds

(`cut=N` sends N bytes instead of half.)
    range_ignored    200 with the whole body even when a Range was asked for
    range_wrong_start  206 whose Content-Range starts at 0 whatever was asked
    416              416 with Content-Range: bytes */SIZE
    503 / 500 / 404 / 408 / 429   that status with an HTML body (503/429: Retry-After `ra`)
    hash_mismatch    the right length and headers, but the bytes flipped
    redirect_loop    302 to the same URL, forever
    redirect_to      302 to the URL in `to`
    header_flood     a 1 MiB header line before the body
    v2               serve NAME.v2 instead (its own ETag): the source changed
    v2_ignore_ifrange  like v2 but honours Range even when If-Range does not match
    weak             a weak ETag (so Last-Modified is the only strong validator)
    novalidator      neither ETag nor Last-Modified
    gzip             the whole body gzip-encoded (Content-Encoding: gzip), no ranges
    gzip_range       a Range request answered 206 with a gzip-encoded body (broken)

Modes combine with "+": `weak+short_cl` cuts a response that has a weak ETag, `gzip+rst` an
encoded one.

GET /_log?key=KEY returns the requests seen for KEY as JSON: mode, range, if_range,
authorization, host, accept_encoding. GET /_stats returns {"most_active": N}: the most file
requests this server was answering at once.
"""

import gzip
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = "."
LOCK = threading.Lock()
COUNTS = {}
LOGS = {}
ACTIVE = [0, 0]  # requests being answered now, and the most at once


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet: the test reads /_log instead
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        param = lambda name, default=None: query.get(name, [default])[0]
        if url.path == "/_log":
            with LOCK:
                body = json.dumps(LOGS.get(param("key", ""), [])).encode()
            return self.send_simple(200, body, "application/json")
        if url.path == "/_stats":
            with LOCK:
                body = json.dumps({"most_active": ACTIVE[1]}).encode()
            return self.send_simple(200, body, "application/json")
        with LOCK:
            ACTIVE[0] += 1
            ACTIVE[1] = max(ACTIVE[1], ACTIVE[0])
        try:
            self.serve_file(url, param)
        finally:
            with LOCK:
                ACTIVE[0] -= 1

    def serve_file(self, url, param):

        key = param("key", self.path)
        seq = (param("seq", "ok") or "ok").split(",")
        with LOCK:
            n = COUNTS.get(key, 0)
            COUNTS[key] = n + 1
            mode = seq[min(n, len(seq) - 1)]
            LOGS.setdefault(key, []).append({
                "mode": mode,
                "range": self.headers.get("Range"),
                "if_range": self.headers.get("If-Range"),
                "authorization": self.headers.get("Authorization"),
                "host": self.headers.get("Host"),
                "accept_encoding": self.headers.get("Accept-Encoding"),
            })

        flags = set(mode.replace(" ", "+").split("+"))  # a "+" in a query may arrive as " "
        if mode in ("503", "500", "404", "408", "429"):
            extra = {"Retry-After": param("ra", "999999999")} if mode in ("503", "429") else {}
            return self.send_simple(int(mode), b"<html><body>error page</body></html>\n",
                                    "text/html", extra)
        if mode == "redirect_loop":
            return self.send_simple(302, b"", "text/plain", {"Location": self.path})
        if mode == "redirect_to":
            return self.send_simple(302, b"", "text/plain", {"Location": param("to")})

        cut = int(param("cut")) if param("cut") else None  # bytes sent before a fault (half)
        name = urllib.parse.unquote(url.path.lstrip("/"))
        if flags & {"v2", "v2_ignore_ifrange"}:
            name += ".v2"
        path = os.path.join(ROOT, name)
        if "/" in name or not os.path.isfile(path):
            return self.send_simple(404, b"no such file\n", "text/plain")
        with open(path, "rb") as f:
            content = f.read()
        etag = '"%s"' % hashlib.sha256(content).hexdigest()[:16]
        last_modified = formatdate(os.stat(path).st_mtime, usegmt=True)

        headers = {"Content-Type": "application/octet-stream"}
        if "weak" in flags:
            headers["ETag"] = "W/" + etag
        if "novalidator" not in flags:
            headers["Last-Modified"] = last_modified
            if "weak" not in flags:
                headers["ETag"] = etag

        if "gzip" in flags:
            headers["Content-Encoding"] = "gzip"
            return self.deliver(flags, 200, headers, gzip.compress(content),
                                float(param("stall", "5")), cut)

        status, body = 200, content
        want = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        honour = want is not None and "range_ignored" not in flags
        if honour and if_range is not None and "v2_ignore_ifrange" not in flags:
            honour = if_range in (headers.get("ETag"), headers.get("Last-Modified"))
        if honour:
            first, last = parse_range(want, len(content))
            if first is None or first >= len(content):
                headers["Content-Range"] = "bytes */%d" % len(content)
                return self.send_simple(416, b"range not satisfiable\n", "text/plain", headers)
            if "range_wrong_start" in flags:
                first, last = 0, len(content) - 1
            status, body = 206, content[first:last + 1]
            headers["Content-Range"] = "bytes %d-%d/%d" % (first, last, len(content))
            if "gzip_range" in flags:
                headers["Content-Encoding"] = "gzip"
                body = gzip.compress(body)
        if "416" in flags:
            headers["Content-Range"] = "bytes */%d" % len(content)
            return self.send_simple(416, b"range not satisfiable\n", "text/plain", headers)
        if "hash_mismatch" in flags:
            body = bytes(b ^ 0x5A for b in body)
        self.deliver(flags, status, headers, body, float(param("stall", "5")), cut)

    def deliver(self, flags, status, headers, body, stall, cut=None):
        if "slow" in flags:
            time.sleep(stall)
        half = body[: len(body) // 2 if cut is None else cut]
        if flags & {"short_cl", "rst", "stall"}:
            self.start(status, headers, {"Content-Length": str(len(body))})
            self.wfile.write(half)
            self.wfile.flush()
            if "stall" in flags:
                time.sleep(stall)
            elif "rst" in flags:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            self.close_connection = True
        elif "long_cl" in flags:
            self.start(status, headers, {"Content-Length": str(len(body) - max(1, len(body) // 4)),
                                         "Connection": "close"})
            self.wfile.write(body)
            self.close_connection = True
        elif "no_cl_close" in flags:
            self.start(status, headers, {"Connection": "close"})
            self.wfile.write(half)
            self.close_connection = True
        elif "chunk_trunc" in flags:
            self.start(status, headers, {"Transfer-Encoding": "chunked"})
            if half:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))
            self.close_connection = True
        elif "header_flood" in flags:
            self.start(status, headers, {"Content-Length": str(len(body)),
                                         "X-Flood": "a" * (1 << 20)})
            self.wfile.write(body)
        else:
            self.send_body(status, headers, body)

    def start(self, status, headers, extra):
        self.send_response(status)
        for name, value in list(headers.items()) + list(extra.items()):
            self.send_header(name, value)
        self.end_headers()

    def send_body(self, status, headers, body):
        self.start(status, headers, {"Content-Length": str(len(body))})
        self.wfile.write(body)

    def send_simple(self, status, body, content_type, extra=None):
        headers = {"Content-Type": content_type}
        headers.update(extra or {})
        self.send_body(status, headers, body)


def parse_range(value, size):
    """`bytes=N-` or `bytes=N-M` -> (first, last); (None, None) when unparsable."""
    if not value.startswith("bytes=") or "," in value:
        return None, None
    first, _, last = value[len("bytes="):].partition("-")
    try:
        first = int(first)
        last = int(last) if last else size - 1
    except ValueError:
        return None, None
    return first, min(last, size - 1)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # resets and timeouts are what the client under test is meant to cause


def main():
    global ROOT
    ROOT = sys.argv[1] if len(sys.argv) > 1 else "."
    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
