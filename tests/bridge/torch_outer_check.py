#!/usr/bin/python3
"""Bit-exactness of shardsync's outer optimizer and overlap merge against PyTorch (CPU, fp32).

Runs torch.optim.SGD(lr, momentum, nesterov=True, dampening=0, weight_decay=0) for 20 steps
on random fp32 tensors (fixed seed; sizes chosen so that torch's vectorized kernels have
tails), plus plain SGD (momentum 0) and torch.lerp merges, writes every input and every
expected output to a binary file, then runs the C++ replay
`<bridge_core_tests> "[torch]"` with SHARDSYNC_TORCH_VECTORS pointing at it, which compares
bit for bit. Exit 77 (skip) when torch cannot be imported.

usage: torch_outer_check.py <path to bridge_core_tests> [--keep DIR]

File layout (little-endian): b"SSTORCH1", u32 runs; per run: f64 lr, f64 momentum, u32 steps,
u32 tensors, u32 size[tensors], f32 initial params; per step: f32 grads, f32 params after,
f32 momentum buffers after (absent when momentum is 0). Then u32 merges; per merge: f64 alpha,
u32 n, f32 global[n], f32 local[n], f32 torch.lerp(global, local, alpha)[n].
"""
import os
import struct
import subprocess
import sys
import tempfile

try:
    import torch
except Exception as e:  # noqa: BLE001 - any import failure means "no torch here"
    print(f"skip: torch not importable ({e})")
    sys.exit(77)

SIZES = [1, 7, 16, 37, 1000, 4099]
STEPS = 20
RUNS = [(0.7, 0.9), (0.4, 0.9), (0.7, 0.5), (1.0, 0.0)]
ALPHAS = [0.5, 0.3, 0.75, 0.0, 1.0, 0.49999]


def f32(t):
    return t.detach().contiguous().numpy().astype("<f4").tobytes()


def write_run(out, gen, lr, momentum):
    params = [torch.randn(n, generator=gen, dtype=torch.float32) for n in SIZES]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0,
                          dampening=0, weight_decay=0)
    out += struct.pack("<ddII", lr, momentum, STEPS, len(SIZES))
    out += struct.pack(f"<{len(SIZES)}I", *SIZES)
    for p in params:
        out += f32(p)
    for step in range(STEPS):
        # Pseudo-gradient-like magnitudes that change over steps, with exact zeros and -0.
        scale = 10.0 ** (-(step % 5))
        for p in params:
            g = torch.randn(p.shape, generator=gen, dtype=torch.float32) * scale
            if p.numel() > 3:
                g[0] = 0.0
                g[1] = -0.0
            p.grad = g
            out += f32(g)
        opt.step()
        for p in params:
            out += f32(p)
        if momentum > 0:
            for p in params:
                out += f32(opt.state[p]["momentum_buffer"])


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20261125)
    out = bytearray(b"SSTORCH1")
    out += struct.pack("<I", len(RUNS))
    for lr, momentum in RUNS:
        write_run(out, gen, lr, momentum)
    out += struct.pack("<I", len(ALPHAS))
    for alpha in ALPHAS:
        n = 1013
        glob = torch.randn(n, generator=gen, dtype=torch.float32)
        local = glob + torch.randn(n, generator=gen, dtype=torch.float32) * 1e-2
        out += struct.pack("<dI", alpha, n)
        out += f32(glob) + f32(local) + f32(torch.lerp(glob, local, alpha))

    keep = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--keep" else None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(keep or tmp, "torch_outer.bin")
        with open(path, "wb") as f:
            f.write(out)
        print(f"torch {torch.__version__}: wrote {len(out)} bytes to {path}", flush=True)
        env = dict(os.environ, SHARDSYNC_TORCH_VECTORS=path)
        return subprocess.run([binary, "[torch]"], env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
