#!/usr/bin/env python3
"""DILOCO.md §4.3.1: the C++ codec reproduces diloco_sim.quantize_dequantize exactly.

For every test vector in DATA_DIR (tests/data/bridge) with a bf16, int8 or fp4-e3m0 wire, runs
the simulator's quantize_dequantize on the same fp32 inputs and block size and requires:
  * the dequantized fp32 bit patterns the C++ decoder produced (<name>.expected.json), except
    that a zero may differ in sign (the simulator keeps -0.0 for a negative input that rounds
    to zero; the wire codes have no negative zero, so the C++ decodes +0.0);
  * the simulator's byte count equal to the tensor's bytes in the C++ payload.

Usage: payload_sim_check.py SHARED_DIR DATA_DIR   (exit 77 when torch or diloco_sim is missing)
"""

import json
import os
import struct
import sys


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1])
        return 2
    shared, data = argv[1], argv[2]
    os.environ["DILOCO_SIM_NO_REEXEC"] = "1"  # no re-exec with OpenBLAS: only the codec is used
    sys.path.insert(0, shared)
    try:
        import torch
        import diloco_sim
    except Exception as e:  # ImportError, or torch failing to load its libraries
        print("skipped: %s" % e)
        return 77

    kinds = {"bf16": "bf16", "int8": "int8", "fp4-e3m0": "fp4"}
    failures = 0
    checked = 0
    negative_zeros = 0
    for name in sorted(f[:-len(".in.json")] for f in os.listdir(data) if f.endswith(".in.json")):
        with open(os.path.join(data, name + ".in.json"), encoding="utf-8") as f:
            spec = json.load(f)
        if spec["wire"] not in kinds:
            continue
        with open(os.path.join(data, name + ".expected.json"), encoding="utf-8") as f:
            expected = {t["name"]: t["bits"] for t in json.load(f)["tensors"]}
        with open(os.path.join(data, name + ".safetensors"), "rb") as f:
            payload = f.read()
        sizes = tensor_sizes(payload)
        for t in spec["tensors"]:
            words = [int(h, 16) for h in t["bits"]]
            x = torch.tensor(struct.unpack("<%df" % len(words), struct.pack("<%dI" % len(words), *words)),
                             dtype=torch.float32).reshape(t["shape"])
            deq, nbytes = diloco_sim.quantize_dequantize(x, kinds[spec["wire"]], block=spec["block_size"] or 128)
            got = struct.unpack("<%dI" % deq.numel(), struct.pack("<%df" % deq.numel(), *deq.reshape(-1).tolist()))
            want = [int(h, 16) for h in expected[t["name"]]]
            bad = [(i, "%08x" % g, "%08x" % w) for i, (g, w) in enumerate(zip(got, want))
                   if g != w and not (g == 0x80000000 and w == 0)]
            negative_zeros += sum(1 for g, w in zip(got, want) if g != w and not bad)
            if len(got) != len(want) or bad:
                print("FAIL %s/%s: %d values differ, first %r" % (name, t["name"], len(bad), bad[:5]))
                failures += 1
            if spec["wire"] == "bf16":
                ours = sizes[t["name"]]
            else:
                ours = sizes[t["name"] + ".q"] + sizes[t["name"] + ".scale"]
            if nbytes != ours:
                print("FAIL %s/%s: simulator counts %d bytes, the payload has %d"
                      % (name, t["name"], nbytes, ours))
                failures += 1
            checked += 1
    if checked == 0:
        print("no vectors checked in " + data)
        return 1
    print("%d tensors checked against diloco_sim.quantize_dequantize, %d failures "
          "(%d values where the simulator gives -0.0 and the wire +0.0)"
          % (checked, failures, negative_zeros))
    return 1 if failures else 0


def tensor_sizes(payload):
    if payload[:4] == b"\x28\xb5\x2f\xfd":
        try:
            from compression import zstd  # Python 3.14+
        except ImportError:
            import subprocess
            payload = subprocess.run(["zstd", "-dc"], input=payload, capture_output=True,
                                     check=True).stdout
        else:
            payload = zstd.decompress(payload)
    (n,) = struct.unpack("<Q", payload[:8])
    header = json.loads(payload[8:8 + n])
    header.pop("__metadata__", None)
    return {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
