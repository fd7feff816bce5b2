#!/usr/bin/env python3
"""Writes the hand-made seed corpora under fuzz/corpus/<target>/ (stdlib only).

Seeds name the catalogue rows they stand for (RELIABILITY.md §1). The sitemap and
safetensors targets also read tests/data/{valid,invalid} and tests/data/bridge in place
(scripts/fuzz passes those directories), so they are not copied here. Rerun after editing;
the output is deterministic.
"""
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import warnings
import zipfile

warnings.filterwarnings("ignore", "Duplicate name")  # z7-duplicate is on purpose

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- sitemap: hostile documents (X rows) --------------------------------------------------
NS = ('xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
      'xmlns:rs="http://www.openarchives.org/rs/terms/"')
RL_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<urlset ' + NS + '>\n'
           '<rs:md capability="resourcelist" at="2026-01-01T00:00:00Z"/>\n')
CL_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<urlset ' + NS + '>\n'
           '<rs:md capability="changelist" from="2026-01-01T00:00:00Z"/>\n')
URL = ('<url><loc>http://example.org/data/{0}</loc><lastmod>2026-01-01T00:00:00Z</lastmod>'
       '<rs:md hash="sha-256:' + "ab" * 32 + '" length="{1}" type="application/octet-stream"/>'
       '</url>\n')
sitemap = {
    "x1-billion-laughs.xml": '<?xml version="1.0"?>\n<!DOCTYPE l [<!ENTITY a "aa"><!ENTITY b "&a;&a;">]>\n'
                             '<urlset ' + NS + '><url><loc>&b;</loc></url></urlset>',
    "x2-xxe.xml": '<!DOCTYPE x SYSTEM "http://127.0.0.1:1/x.dtd"><urlset ' + NS + '/>',
    "x3-deep.xml": RL_HEAD + "<url><loc>http://example.org/data/a</loc>" + "<x:e xmlns:x='urn:x'>" * 12
                   + "</x:e>" * 12 + "</url></urlset>",
    "x5-two-roots.xml": RL_HEAD + "</urlset><urlset " + NS + "/>",
    "x6-duplicate-attr.xml": RL_HEAD + '<url><loc>http://example.org/data/a</loc>'
                             '<rs:md hash="md5:00" hash="md5:11"/></url></urlset>',
    "x7-char-refs.xml": RL_HEAD + "<url><loc>http://example.org/data/&#0;&#xD800;&foo;&amp;&#x41;</loc></url></urlset>",
    "x8-utf16-bom.xml": b"\xff\xfe<\x00u\x00r\x00l\x00",
    "x8-bad-utf8.xml": RL_HEAD.encode() + b"<url><loc>http://example.org/data/\xc0\xae\xed\xa0\x80</loc></url></urlset>",
    "x10-fields.xml": RL_HEAD + '<url><loc>http://example.org/data/a</loc><lastmod>0000-01-01T24:00:60.123456789</lastmod>'
                      '<rs:md length="+5" hash="sha-256:XYZ md5:" datetime="9999-12-31T23:59:59+14:00"/></url>\n'
                      '<url><loc>http://example.org/data/b</loc><rs:md length="18446744073709551616"/></url></urlset>',
    "x11-truncated.xml": (RL_HEAD + URL.format("a", 1) + URL.format("b", 2))[:-40],
    "x12-duplicate-loc.xml": RL_HEAD + URL.format("a", 1) + URL.format("a", 2) + "</urlset>",
    "changelist-order.xml": CL_HEAD + '<url><loc>http://example.org/data/a</loc>'
                            '<rs:md change="updated" datetime="2026-01-02T00:00:00Z"/></url>'
                            '<url><loc>http://example.org/data/b</loc>'
                            '<rs:md change="deleted" datetime="2026-01-01T00:00:00+01:00"/></url></urlset>',
    "cdata-ln.xml": RL_HEAD + '<rs:ln rel="up" href="http://example.org/caps.xml" pri="999999"/>'
                    '<url><loc><![CDATA[http://example.org/data/x y]]></loc><changefreq>daily</changefreq>'
                    '<priority>0.5</priority><rs:ln rel="duplicate" href="http://m.example.org/a" modified="2026-01-01T00:00:00.5Z"/>'
                    '</url></urlset>',
    "index.xml": '<?xml version="1.0"?><sitemapindex ' + NS + '><rs:md capability="resourcelist" at="2026-01-01T00:00:00Z"/>'
                 '<sitemap><loc>http://example.org/rl1.xml</loc></sitemap></sitemapindex>',
}
for name, text in sitemap.items():
    put("sitemap", name, text)
# Z1's carrier: gzip input is recognised by its magic bytes (mtime 0 keeps the bytes stable).
put("sitemap", "z1-gzip.xml.gz", gzip.compress((RL_HEAD + URL.format("a", 1) + "</urlset>").encode(), mtime=0))

# ---- path: URLs and references (U rows) ---------------------------------------------------
paths = {
    "ok": "a/b/model.bin",
    "ok-absolute": "https://EXAMPLE.org:443/data/c%20d/%C3%A9.bin",
    "nested": "http://example.org:8080/data/deep/er/x/y",
    "u1-dotdot": "https://example.org/data/../../home/u/.bashrc",
    "u2-encoded": "https://example.org/data/%2e%2e/%2E./.%2e/x%2fy%5cz/%252e%252e/%%32%65",
    "u3-rooted": "//evil.example/x",
    "u3-drive": "C:\\x",
    "u4-backslash": "a\\..\\b",
    "u5-controls": "a%00b/c%0ad/e%0d%7f%c2%85",
    "u6-long": "a/" + "x" * 300,
    "u6-deep": "/".join(["d"] * 70),
    "u7-overlong": "%c0%ae%c0%ae/%e0%80%ae/%ed%a0%80",
    "u8-ignorable": ".g%e2%80%8cit/x",
    "u9-reserved": ".SHARDSYNC-state/x/.%C5%BFhardsync",
    "u15-query": "a?x=1#frag",
    "u15-empty": "a//b/./c/",
    "u16-userinfo": "https://user@example.org/data/a",
    "u16-authority": "https://example.org.evil:443/data/a",
    "u16-port": "https://example.org:0443/data/a",
    "v6": "http://[::1]:8080/data/a",
}
for name, text in paths.items():
    put("path", name, text)

# ---- range: 8 bytes size, 8 bytes Last-Modified, "Range\nIf-Range\nETag" (R rows) -------
LM = 1764000000  # 2025-11-24T16:00:00Z
def rng(size, rng_header, if_range="", etag='"abc"'):
    return struct.pack("<QQ", size, LM) + f"{rng_header}\n{if_range}\n{etag}".encode()
ranges = {
    "single": rng(1000, "bytes=0-499"),
    "suffix": rng(1000, "bytes=-500"),
    "open": rng(1000, "bytes=9500-"),
    "r3-apache-killer": rng(1000, "bytes=" + ",".join(["0-"] * 50)),
    "r3-overlap": rng(1000, "bytes=0-10, 5-20, 1-1"),
    "r4-ms15-034": rng(1000, "bytes=18-18446744073709551615"),
    "r4-overflow": rng(1 << 40, "bytes=18446744073709551616-"),
    "r4-zero-suffix": rng(1000, "bytes=-0"),
    "r4-inverted": rng(1000, "bytes=5-1"),
    "r4-alpha": rng(1000, "bytes=alpha"),
    "r4-big-file": rng(6 << 30, "bytes=4294967296-4294967300"),
    "r5-if-range-etag": rng(1000, "bytes=0-1", '"abc"'),
    "r5-if-range-weak": rng(1000, "bytes=0-1", 'W/"abc"'),
    "r5-if-range-date": rng(1000, "bytes=0-1", "Mon, 24 Nov 2025 16:00:00 GMT"),
    "r5-rfc850": rng(1000, "bytes=0-1", "Monday, 24-Nov-25 16:00:00 GMT"),
    "r5-asctime": rng(1000, "bytes=0-1", "Mon Nov 24 16:00:00 2025"),
    "r6-inm-list": rng(1000, "gzip;q=0.5, zstd;q=1.0, *;q=0", 'W/"x", "abc", *'),
    "unit": rng(1000, "items=0-1"),
    "empty-file": rng(0, "bytes=0-0"),
}
for name, data in ranges.items():
    put("range", name, data)

# ---- safetensors (B6) ---------------------------------------------------------------------
def st(header, buf=b"", pad=True, raw_len=None):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    n = len(h) if raw_len is None else raw_len
    return struct.pack("<Q", n) + h + buf

f32 = lambda *v: struct.pack("<%df" % len(v), *v)
good = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "I8", "shape": [2, 2], "data_offsets": [8, 12]}}
tensors = {
    "ok": st(dict(good, __metadata__={"k": "v"}), f32(1, 2) + b"\x01\x02\x03\x04"),
    "b6-header-too-long": st(good, f32(1, 2), raw_len=200_000_000),
    "b6-header-past-eof": st(good, b"", raw_len=4096),
    "b6-not-object": st(b"[1,2,3]  "),
    "b6-not-utf8": st(b'{"\xff\xfe":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"x"),
    "b6-duplicate": st(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"x"),
    "b6-out-of-bounds": st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32(1)),
    "b6-overlap": st({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                      "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}, b"x" * 6),
    "b6-hole": st({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                   "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}}, b"x" * 6),
    "b6-tail": st({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}, b"x" * 5),
    "b6-shape-overflow": st({"a": {"dtype": "F64", "shape": [2**32, 2**32, 16], "data_offsets": [0, 0]}}),
    "b6-unknown-dtype": st({"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}, b"x"),
    "b6-subbyte-dtype": st({"a": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}, b"x"),
    "b6-length-mismatch": st({"a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 4]}}, b"x" * 4),
    "b6-metadata-nonstring": st({"__metadata__": {"k": 1}}),
    "b6-deep-json": st(b'{"a":' + b"[" * 600 + b"]" * 600 + b"}"),
    "b6-zstd-skippable": b"\x28\xb5\x2f\xfd" + b"\x00" * 12,
}
for name, data in tensors.items():
    put("safetensors", name, data)

# ---- zip: dump packages (Z rows) ----------------------------------------------------------
def manifest(entries, capability="resourcedump-manifest", extra=""):
    root = "from" if capability.startswith("change") else "at"
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<urlset ' + NS + '>\n'
           f'<rs:md capability="{capability}" {root}="2026-01-01T00:00:00Z"/>\n']
    for loc, path, body, md in entries:
        h = hashlib.sha256(body).hexdigest() if body is not None else "00" * 32
        n = len(body) if body is not None else 0
        out.append(f'<url><loc>{loc}</loc><rs:md hash="sha-256:{h}" length="{n}" path="{path}"{md}/></url>\n')
    out.append(extra + "</urlset>\n")
    return "".join(out).encode()

def package(files, manifest_bytes, modes=None, method=zipfile.ZIP_DEFLATED, zip64=False):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", method) as z:
        z.writestr(zipfile.ZipInfo("manifest.xml", (2026, 1, 1, 0, 0, 0)), manifest_bytes)
        for name, body in files:
            info = zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0))
            info.compress_type = method
            if modes and name in modes:
                info.external_attr = modes[name] << 16
                info.create_system = 3
            with z.open(info, "w", force_zip64=zip64) as f:
                f.write(body)
    return b.getvalue()

A, B = b"alpha\n", b"bravo bravo\n" * 4
D = "http://example.org/data/"
zips = {
    "ok": package([("res/a", A), ("res/b", B)],
                  manifest([(D + "a", "/res/a", A, ""), (D + "sub/b", "/res/b", B, "")])),
    "change-dump": package([("c/a1", A), ("c/a2", B)],
                           manifest([(D + "a", "/c/a1", A, ' change="created" datetime="2026-01-01T00:00:01Z"'),
                                     (D + "a", "/c/a2", B, ' change="updated" datetime="2026-01-01T00:00:02Z"'),
                                     (D + "gone", "/c/x", None, ' change="deleted" datetime="2026-01-01T00:00:03Z"')],
                                    capability="changedump-manifest")) + b"\x01",
    "z5-traversal": package([("../x", A), ("/abs", A), ("a\\..\\x", A)],
                            manifest([(D + "../x", "/../x", A, ""), (D + "%2e%2e/y", "/abs", A, ""),
                                      (D + "a%5cb", "/a\\..\\x", A, "")])),
    "z6-symlink": package([("link", b"/etc/passwd"), ("dir/", b"")],
                          manifest([(D + "l", "/link", b"/etc/passwd", ""), (D + "d", "/dir/", b"", "")]),
                          modes={"link": 0o120777}),
    "z7-duplicate": package([("a", A), ("a", B)], manifest([(D + "a", "/a", A, "")])),
    "z7-size-lie": package([("a", A * 100)], manifest([(D + "a", "/a", A, "")])),
    "z8-missing-extra": package([("extra", B)], manifest([(D + "a", "/missing", A, "")])),
    "hash-mismatch": package([("a", B)], manifest([(D + "a", "/a", A, "")]).replace(b'length="6"', b'length="48"')),
    "wrong-capability": package([("a", A)], manifest([(D + "a", "/a", A, "")], capability="resourcelist")),
    "stored": package([("a", A)], manifest([(D + "a", "/a", A, "")]), method=zipfile.ZIP_STORED),
    "z7-zip64": package([("a", A)], manifest([(D + "a", "/a", A, "")]), zip64=True),
    "no-manifest": b"PK\x05\x06" + b"\x00" * 18,
}
for name, data in zips.items():
    put("zip", name, data)

print("seeds written under", ROOT, file=sys.stderr)
