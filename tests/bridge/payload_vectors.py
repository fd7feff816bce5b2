#!/usr/bin/env python3
"""An independent, stdlib-only codec for shardsync DiLoCo fragment payloads.

It re-implements trainer_bridge/include/shardsync/bridge/{payload,quantize}.hpp from their
documentation (and DILOCO.md §3.2, §4.3.1) without sharing code with the C++, and checks
the test vectors in tests/data/bridge/:

  <name>.in.json         the inputs: wire, block size, zstd flag, metadata, fp32 bit patterns
  <name>.safetensors     the payload the C++ encoder wrote
  <name>.expected.json   the fp32 bit patterns the C++ decoder dequantized

For every vector this script encodes the inputs and requires the same bytes (payloads without
zstd; for zstd ones it compares with the frame's content when the interpreter has
compression.zstd), decodes the C++ payload and requires the expected bit patterns, and decodes
its own payload and requires them too.

fp32 arithmetic is emulated with doubles: a single +, -, *, / of two fp32 values computed in
double and rounded once to fp32 (struct 'f') is correctly rounded, since 53 >= 2*24 + 2.

Usage: payload_vectors.py [DATA_DIR]          check (exit 0 ok, 1 mismatch); DATA_DIR
                                              defaults to tests/data/bridge
       payload_vectors.py --write-inputs DIR  (re)write the *.in.json inputs
"""

import json
import math
import os
import struct
import sys

FORMAT = "shardsync.diloco.fragment/1"
ABSMAX_FLOOR = struct.unpack("<f", struct.pack("<f", 1e-30))[0]


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def bits_to_f32(h):
    return struct.unpack("<f", struct.pack("<I", int(h, 16)))[0]


def f32_to_bits(v):
    return "%08x" % struct.unpack("<I", struct.pack("<f", v))[0]


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def nblocks(n, block):
    return (n + block - 1) // block


# ---- quantizers ------------------------------------------------------------------------------

def bf16_bits(x):
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    if math.isnan(x):
        return (u >> 16) | 0x40
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def bf16_value(b):
    return struct.unpack("<f", struct.pack("<I", b << 16))[0]


def block_absmax(vals):
    m = 0.0
    for v in vals:
        m = max(m, abs(v))
    return max(m, ABSMAX_FLOOR)


def round_half_even(v):
    return float(round(v))  # Python's round() on a float ties to even


def int8_encode(x, block):
    codes, scales = [], []
    for b in range(nblocks(len(x), block)):
        vals = x[b * block:(b + 1) * block]
        scale = f32(block_absmax(vals) / 127.0)
        scales.append(scale)
        for v in vals:
            q = round_half_even(f32(v / scale))
            codes.append(int(min(127.0, max(-127.0, q))))
    return codes, scales


def int8_decode(codes, scales, block):
    return [f32(float(c) * scales[i // block]) for i, c in enumerate(codes)]


def fp4_code(x, scale):
    r = f32(abs(x) / scale)
    if not r >= 2.0 ** -7:
        return 0
    _, ex = math.frexp(r)
    lo = 2.0 ** (ex - 1)
    mag = 2 * lo if (r - lo) > (2 * lo - r) else lo  # exact in fp32 and in double
    mag = min(max(mag, 2.0 ** -6), 1.0)
    e = int(round(math.log2(mag))) + 7  # mag is an exact power of two
    return (e | 8) if math.copysign(1.0, x) < 0 else e


def fp4_value(code, scale):
    e = code & 7
    mag = 0.0 if e == 0 else f32((2.0 ** (e - 7)) * scale)
    return -mag if code & 8 else mag


def fp4_encode(x, block):
    codes, scales = [], []
    for b in range(nblocks(len(x), block)):
        vals = x[b * block:(b + 1) * block]
        scale = block_absmax(vals)
        scales.append(scale)
        codes.extend(fp4_code(v, scale) for v in vals)
    packed = bytearray((len(x) + 1) // 2)
    for i, c in enumerate(codes):
        packed[i // 2] |= c if i % 2 == 0 else c << 4
    return bytes(packed), scales


def fp4_decode(packed, scales, block, n):
    out = []
    for i in range(n):
        byte = packed[i // 2]
        code = byte & 0xF if i % 2 == 0 else byte >> 4
        if code == 8:
            raise ValueError("fp4 code 8")
        out.append(fp4_value(code, scales[i // block]))
    return out


# ---- safetensors -----------------------------------------------------------------------------

ALIGN = {"F32": 4, "BF16": 2, "I8": 1, "U8": 1}
SIZE = {"F32": 4, "BF16": 2, "I8": 1, "U8": 1}


def dumps(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def write_safetensors(metadata, tensors):
    """tensors: list of (name, dtype, shape, bytes)."""
    order = sorted(tensors, key=lambda t: (-ALIGN[t[1]], t[0].encode("utf-8")))
    header = {"__metadata__": metadata}
    at = 0
    for name, dtype, shape, data in order:
        assert len(data) == numel(shape) * SIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + len(data)]}
        at += len(data)
    text = dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in order)


def read_safetensors(data):
    if len(data) < 8:
        raise ValueError("truncated")
    (n,) = struct.unpack("<Q", data[:8])
    if n > 100_000_000 or n > len(data) - 8:
        raise ValueError("bad header length")

    def no_dupes(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate key")
        return dict(pairs)

    raw = data[8:8 + n]
    if raw[:1] != b"{":
        raise ValueError("header must begin with {")
    header = json.loads(raw.decode("utf-8").rstrip(" "), object_pairs_hook=no_dupes)
    buf = data[8 + n:]
    meta = header.pop("__metadata__", {})
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    at = 0
    for b, e, k in spans:
        if b != at or e < b:
            raise ValueError("hole or overlap at " + k)
        t = header[k]
        if numel(t["shape"]) * SIZE[t["dtype"]] != e - b:
            raise ValueError("shape x dtype != range for " + k)
        at = e
    if at != len(buf):
        raise ValueError("buffer not covered")
    return meta, {k: (v["dtype"], v["shape"], buf[v["data_offsets"][0]:v["data_offsets"][1]])
                  for k, v in header.items()}


# ---- fragment payloads -----------------------------------------------------------------------

def encode(spec):
    wire, block = spec["wire"], spec["block_size"]
    blocked = wire in ("int8", "fp4-e3m0")
    m = spec["meta"]
    tensors, names, shapes = [], [], []
    for t in spec["tensors"]:
        x = [bits_to_f32(h) for h in t["bits"]]
        name, shape = t["name"], t["shape"]
        names.append(name)
        shapes.append(shape)
        if wire == "f32":
            tensors.append((name, "F32", shape, struct.pack("<%df" % len(x), *x)))
        elif wire == "bf16":
            tensors.append((name, "BF16", shape,
                            struct.pack("<%dH" % len(x), *[bf16_bits(v) for v in x])))
        elif wire == "int8":
            codes, scales = int8_encode(x, block)
            tensors.append((name + ".q", "I8", shape, struct.pack("<%db" % len(codes), *codes)))
            tensors.append((name + ".scale", "F32", [len(scales)],
                            struct.pack("<%df" % len(scales), *scales)))
        elif wire == "fp4-e3m0":
            packed, scales = fp4_encode(x, block)
            tensors.append((name + ".q", "U8", [len(packed)], packed))
            tensors.append((name + ".scale", "F32", [len(scales)],
                            struct.pack("<%df" % len(scales), *scales)))
        else:
            raise ValueError(wire)
    metadata = {
        "format": FORMAT, "run_id": m["run_id"], "outer_step": str(m["outer_step"]),
        "inner_step": str(m["inner_step"]), "fragment_id": str(m["fragment_id"]),
        "num_fragments": str(m["num_fragments"]), "worker_id": m["worker_id"],
        "worker_nonce": m["worker_nonce"], "base_sha256": m["base_sha256"], "wire": wire,
        "block_size": str(block if blocked else 0), "scale_dtype": "F32",
        "tokens": str(m["tokens"]), "param_names": dumps(names), "shapes": dumps(shapes),
        "torch_dtype_master": m["torch_dtype_master"], "created": m["created"],
    }
    return write_safetensors(metadata, tensors)


def decode(data):
    meta, tensors = read_safetensors(data)
    if meta.get("format") != FORMAT:
        raise ValueError("format")
    wire, block = meta["wire"], int(meta["block_size"])
    out = []
    for name, shape in zip(json.loads(meta["param_names"]), json.loads(meta["shapes"])):
        n = numel(shape)
        if wire == "f32":
            _, _, b = tensors[name]
            vals = list(struct.unpack("<%df" % n, b))
        elif wire == "bf16":
            _, _, b = tensors[name]
            vals = [bf16_value(v) for v in struct.unpack("<%dH" % n, b)]
        else:
            _, _, sb = tensors[name + ".scale"]
            scales = list(struct.unpack("<%df" % (len(sb) // 4), sb))
            _, _, qb = tensors[name + ".q"]
            if wire == "int8":
                vals = int8_decode(list(struct.unpack("<%db" % n, qb)), scales, block)
            else:
                vals = fp4_decode(qb, scales, block, n)
        out.append({"name": name, "bits": [f32_to_bits(v) for v in vals]})
    return meta, out


# ---- vectors ---------------------------------------------------------------------------------

META = {
    "run_id": "r1", "outer_step": 3, "inner_step": 150, "fragment_id": 1, "num_fragments": 4,
    "worker_id": "w3", "worker_nonce": "n-7f3a", "tokens": 32768,
    "base_sha256": "3c0a8e5d0b6a4e0e7d9b2c6a1f4e8d7c6b5a4938271605f4e3d2c1b0a9f8e7d6",
    "torch_dtype_master": "float32", "created": "2026-11-25T00:00:00Z",
}


def lcg_values(count, seed):
    """Deterministic values of varied magnitude, as fp32 bit patterns."""
    state, out = seed, []
    for _ in range(count):
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        u = (state >> 11) / float(1 << 53)
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        e = (state >> 40) % 24
        out.append(f32_to_bits(f32((2 * u - 1) * 2.0 ** (-e))))
    return out


def hexes(values):
    return [f32_to_bits(f32(v)) for v in values]


EDGE_F32 = ["00000000", "80000000", "00000001", "80000001", "00800000", "3f800000", "bf800000",
            "7f7fffff", "ff7fffff", "7f000000", "3f808000", "3f818000", "3f808001", "0da24260",
            "c0490fdb"]
EDGE_BF16 = [h for h in EDGE_F32 if h not in ("7f7fffff", "ff7fffff")] + ["7f7f7fff", "ff7f7fff"]


def vectors():
    int8_w = hexes([127.0, 0.5, 1.5, 2.5, -2.5, -126.5, 63.5, -0.0] + [0.0] * 4 + [-0.0] * 4 +
                   [3e38, -3e38, 1e-40, -1e-45, 1.0])
    fp4_w = hexes([1.0, 0.75, -0.75, 3.0 / 128, 2.0 ** -7, 2.0 ** -7 * 0.99, 0.6, -0.8] +
                  [0.0] * 7 + [-0.0] + [3e38, -1e-40, 1e-40, -3.4028234663852886e38, 0.25])
    scalar = hexes([-3.25])
    named = "layers.0.attn/q\u00e9"
    return {
        "f32_edge": {"wire": "f32", "block_size": 0, "zstd": False, "tensors": [
            {"name": "w", "shape": [3, 5], "bits": EDGE_F32},
            {"name": "b", "shape": [0], "bits": []},
            {"name": "s", "shape": [], "bits": scalar}]},
        "bf16_edge": {"wire": "bf16", "block_size": 0, "zstd": False, "tensors": [
            {"name": "w", "shape": [15], "bits": EDGE_BF16},
            {"name": named, "shape": [2, 4], "bits": lcg_values(8, 5)}]},
        "int8_edge": {"wire": "int8", "block_size": 8, "zstd": False, "tensors": [
            {"name": "w", "shape": [3, 7], "bits": int8_w},
            {"name": "b", "shape": [0], "bits": []},
            {"name": "s", "shape": [], "bits": scalar},
            {"name": named, "shape": [40], "bits": lcg_values(40, 1)}]},
        "fp4_edge": {"wire": "fp4-e3m0", "block_size": 8, "zstd": False, "tensors": [
            {"name": "w", "shape": [21], "bits": fp4_w},
            {"name": "b", "shape": [0, 3], "bits": []},
            {"name": "s", "shape": [], "bits": scalar},
            {"name": "r", "shape": [5, 31], "bits": lcg_values(155, 2)}]},
        "fp4_b128": {"wire": "fp4-e3m0", "block_size": 128, "zstd": False, "tensors": [
            {"name": "blocks.1.mlp.w", "shape": [10, 100], "bits": lcg_values(1000, 3)}]},
        "int8_zstd": {"wire": "int8", "block_size": 64, "zstd": True, "tensors": [
            {"name": "w", "shape": [300], "bits": lcg_values(300, 4)}]},
        "fp4_zstd": {"wire": "fp4-e3m0", "block_size": 64, "zstd": True, "tensors": [
            {"name": "w", "shape": [300], "bits": lcg_values(300, 4)}]},
    }


def write_inputs(directory):
    os.makedirs(directory, exist_ok=True)
    for name, spec in vectors().items():
        spec = dict(spec, meta=META)
        with open(os.path.join(directory, name + ".in.json"), "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=1, ensure_ascii=False)
            f.write("\n")


def zstd_content(data):
    try:
        from compression import zstd  # Python 3.14+
    except ImportError:
        return None
    return zstd.decompress(data)


def check(directory):
    names = sorted(f[:-len(".in.json")] for f in os.listdir(directory) if f.endswith(".in.json"))
    if not names:
        print("no vectors in " + directory)
        return 1
    failures = 0
    for name in names:
        with open(os.path.join(directory, name + ".in.json"), encoding="utf-8") as f:
            spec = json.load(f)
        with open(os.path.join(directory, name + ".expected.json"), encoding="utf-8") as f:
            expected = json.load(f)["tensors"]
        with open(os.path.join(directory, name + ".safetensors"), "rb") as f:
            cpp = f.read()
        mine = encode(spec)
        problems = []
        if spec["zstd"]:
            if cpp[:4] != b"\x28\xb5\x2f\xfd":
                problems.append("C++ payload is not a zstd frame")
            content = zstd_content(cpp)
            if content is not None and content != mine:
                problems.append("zstd content differs from the Python encoding")
            if content is not None:
                _, decoded = decode(content)
                if decoded != expected:
                    problems.append("decoding the C++ payload gives other values")
        else:
            if cpp != mine:
                at = next((i for i in range(min(len(cpp), len(mine))) if cpp[i] != mine[i]),
                          min(len(cpp), len(mine)))
                problems.append("bytes differ from the C++ payload at offset %d (%d vs %d bytes)"
                                % (at, len(mine), len(cpp)))
            _, decoded = decode(cpp)
            if decoded != expected:
                problems.append("decoding the C++ payload gives other values")
        _, own = decode(mine)
        if own != expected:
            bad = [(t["name"], i, a, b) for t, e in zip(own, expected)
                   for i, (a, b) in enumerate(zip(t["bits"], e["bits"])) if a != b][:5]
            problems.append("own round trip differs from the C++ values: %r" % bad)
        print("%-10s %s%s" % (name, "ok" if not problems else "FAIL",
                              "" if not problems else ": " + "; ".join(problems)))
        failures += bool(problems)
    return 1 if failures else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "--write-inputs":
        write_inputs(argv[2])
        return 0
    if len(argv) > 2 or (len(argv) == 2 and argv[1].startswith("-")):
        print(__doc__[__doc__.index("Usage:"):].rstrip())
        return 2
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "bridge")
    return check(argv[1] if len(argv) == 2 else default)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
