#!/usr/bin/env python3
"""Rewrites the metadata of a bridge payload (safetensors, uncompressed), for fault tests.

    python3 forge_payload.py IN OUT KEY=VALUE...

Keeps the tensors and sets the given __metadata__ entries, e.g. a wrong base_sha256.
"""
import json
import struct
import sys

data = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + n])
for item in sys.argv[3:]:
    key, value = item.split("=", 1)
    header["__metadata__"][key] = value
text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
text += b" " * (-len(text) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + data[8 + n:])
