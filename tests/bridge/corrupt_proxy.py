#!/usr/bin/env python3
"""A reverse proxy that corrupts payloads in transit, for the bridge's hash tests (stdlib only).

    python3 corrupt_proxy.py UPSTREAM_PORT_FILE PATTERN

Listens on 127.0.0.1 (a free port, printed on the first line of stdout) and forwards every
GET and HEAD to 127.0.0.1 at the port in UPSTREAM_PORT_FILE (read per request, so the
upstream may start after the proxy, e.g. with `--base-url` naming the proxy) unchanged, except that the body of a 200
response whose path contains PATTERN has one byte flipped: same length, same headers, wrong
bytes, which only a hash check can tell.
"""
import http.client
import http.server
import sys

port_file = sys.argv[1]
pattern = sys.argv[2]


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def forward(self, send_body):
        port = int(open(port_file).read().strip())
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        if resp.status == 200 and pattern in self.path and body:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0x5A]) + body[middle + 1:]
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "keep-alive"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def do_GET(self):
        self.forward(True)

    def do_HEAD(self):
        self.forward(False)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print(server.server_address[1], flush=True)
server.serve_forever()
