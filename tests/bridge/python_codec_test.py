#!/usr/bin/env python3
"""ctest bridge.python_codec: the Python package's codec bindings (shardsync._bridge) against
the repo's payload test vectors (tests/data/bridge/<name>.{in.json,safetensors,expected.json}).

For every vector: encoding the inputs gives the committed payload byte for byte (zstd ones too:
same library, same level), decoding the committed payload gives the expected fp32 bit
patterns, and the quantizer functions alone agree with the decoded values. Then hostile bytes
raise shardsync.Error and bad arguments raise ValueError.

Usage: python_codec_test.py DATA_DIR      (with PYTHONPATH=<build>/python)
"""

import glob
import json
import os
import sys

import numpy as np

import shardsync


def bits_array(hex_bits):
    return np.array([int(h, 16) for h in hex_bits], dtype=np.uint32).view(np.float32)


def hex_bits(values):
    return ["%08x" % b for b in np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).ravel()]


def check_vector(data_dir, name, problems):
    with open(os.path.join(data_dir, name + ".in.json")) as fh:
        spec = json.load(fh)
    with open(os.path.join(data_dir, name + ".expected.json")) as fh:
        expected = json.load(fh)
    with open(os.path.join(data_dir, name + ".safetensors"), "rb") as fh:
        committed = fh.read()

    tensors = [(t["name"], bits_array(t["bits"]).reshape(t["shape"])) for t in spec["tensors"]]
    ours = shardsync.encode_payload(tensors, spec["meta"], wire=spec["wire"],
                                    block_size=spec["block_size"] or 128, zstd=spec["zstd"])
    if ours != committed:
        problems.append(f"{name}: encode_payload differs from the committed payload "
                        f"({len(ours)} vs {len(committed)} bytes)")

    decoded = shardsync.decode_payload(committed)
    if decoded["wire"] != spec["wire"] or decoded["zstd"] != spec["zstd"]:
        problems.append(f"{name}: decoded wire/zstd {decoded['wire']}/{decoded['zstd']}")
    want_meta = dict(spec["meta"])
    for key, value in want_meta.items():
        if decoded["meta"][key] != value:
            problems.append(f"{name}: meta {key} = {decoded['meta'][key]!r}, want {value!r}")
    if decoded["metadata"].get("format") != shardsync.FRAGMENT_FORMAT:
        problems.append(f"{name}: metadata format {decoded['metadata'].get('format')!r}")
    by_name = {t["name"]: t for t in expected["tensors"]}
    for (tname, values), (_, original) in zip(decoded["tensors"], tensors):
        if values.shape != original.shape:
            problems.append(f"{name}/{tname}: shape {values.shape}, want {original.shape}")
        if hex_bits(values) != by_name[tname]["bits"]:
            problems.append(f"{name}/{tname}: decoded bits differ from {name}.expected.json")
        # The quantizer alone gives the same values (up to the sign of zero, see quantize.hpp).
        alone, _ = shardsync.quantize_dequantize(original, spec["wire"], spec["block_size"] or 128)
        if not np.array_equal(alone, values):
            problems.append(f"{name}/{tname}: quantize_dequantize differs from the payload values")


def check_quantizers(problems):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(1000) * 10.0 ** rng.uniform(-6, 0, 1000)).astype(np.float32)
    codes, scales = shardsync.quantize_int8(x, 128)
    if codes.dtype != np.int8 or len(codes) != 1000 or len(scales) != 8:
        problems.append(f"quantize_int8 shapes {codes.dtype} {len(codes)} {len(scales)}")
    deq = shardsync.dequantize_int8(codes, scales, 128)
    bound = np.repeat(scales, 128)[:1000] / 2
    if not np.all(np.abs(deq - x) <= bound * (1 + 1e-6)):
        problems.append("int8 round trip exceeds scale/2")
    packed, scales4 = shardsync.quantize_fp4_e3m0(x, 128)
    if len(packed) != 500 or len(scales4) != 8:
        problems.append(f"quantize_fp4_e3m0 sizes {len(packed)} {len(scales4)}")
    deq4 = shardsync.dequantize_fp4_e3m0(packed, scales4, 128, 1000)
    rt, nbytes = shardsync.quantize_dequantize(x, "fp4-e3m0", 128)
    if not np.array_equal(deq4, rt) or nbytes != 500 + 4 * 8:
        problems.append(f"fp4 functions disagree, or {nbytes} bytes != 532")
    bf = shardsync.bf16_values(shardsync.bf16_bits(x))
    rt16, n16 = shardsync.quantize_dequantize(x, "bf16")
    if not np.array_equal(bf, rt16) or n16 != 2000:
        problems.append("bf16 functions disagree")


def check_refusals(problems):
    def raises(exc, fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except exc:
            return
        except Exception as e:  # noqa: BLE001 - report the wrong type
            problems.append(f"{fn.__name__}{args!r:.60}: raised {type(e).__name__}: {e}")
            return
        problems.append(f"{fn.__name__}{args!r:.60}: did not raise {exc.__name__}")

    raises(shardsync.Error, shardsync.decode_payload, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    raises(shardsync.Error, shardsync.decode_payload, b"abc")
    raises(ValueError, shardsync.quantize_int8, np.array([1.0, np.nan], dtype=np.float32), 128)
    raises(ValueError, shardsync.quantize_fp4_e3m0, np.ones(4, dtype=np.float32), 0)
    raises(ValueError, shardsync.dequantize_fp4_e3m0, np.zeros(1, np.uint8), np.ones(1, np.float32), 8, 4)
    raises(ValueError, shardsync.dequantize_int8, np.zeros(200, np.int8), np.ones(1, np.float32), 128)
    raises(ValueError, shardsync.quantize_dequantize, np.ones(4, np.float32), "fp3")
    raises(ValueError, shardsync.encode_payload, [("w", np.ones(2, np.float32))], {"bogus": 1})
    try:
        shardsync.encode_payload([("w", np.array([np.inf], np.float32))], {"base_sha256": "0" * 64},
                                 wire="f32")
        problems.append("encode_payload accepted Inf")
    except shardsync.Error as e:
        if e.category != "shardsync.bridge.payload" or not e.detail:
            problems.append(f"shardsync.Error fields: {e.category!r} {e.code!r} {e.detail!r}")


def main():
    data_dir = sys.argv[1]
    names = sorted(os.path.basename(p)[:-len(".in.json")] for p in glob.glob(os.path.join(data_dir, "*.in.json")))
    if not names:
        print(f"no vectors in {data_dir}")
        return 1
    problems = []
    for name in names:
        check_vector(data_dir, name, problems)
    check_quantizers(problems)
    check_refusals(problems)
    for p in problems:
        print("FAIL", p)
    print(f"{len(names)} vectors, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
