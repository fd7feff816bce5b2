#!/usr/bin/env python3
"""The trainer bridge's overhead per inner step in a PyTorch loop (issue 6 goal: < 2 % of step
time).

Two copies of the calibration model (examples/diloco/tinylm.py, 220,544 parameters, batch 8 x
64 bytes per step, AdamW, one torch thread) train side by side in one process: copy A through
shardsync.DiLoCoBridge (its optimizer.step hooked by bridge.attach), copy B without. They run in
interleaved blocks of H inner steps (A's block, then B's), so each A block holds one sync of
every fragment, and the ratio A/B of each pair of blocks is taken; the figure is the median of
those ratios minus one. The time the training thread spends inside the hook is also
measured directly (mean per step, as % of a plain step): on a loaded machine it is the
steadier figure, though it leaves out the background thread's competition for the CPU. Pairs alternate which side runs first; a pair whose 1-minute
load moved by more than 2 is dropped (bench/README.md rules). The bridge is a real single-worker run against `shardsync serve` on
loopback (M=1: it publishes, commits and lands its own payloads), so every sync does the full
work: copy, pseudo-gradient, quantize, PUT, follow the change list, fetch, reduce, outer step,
merge.

  LD_LIBRARY_PATH is set for OpenBLAS by re-executing.
  bench/bridge_step_overhead.py --build build [--pairs 12] [--P 4 --tau 5 --wire fp4-e3m0]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples", "diloco"))
import tinylm  # noqa: E402

if os.environ.get("SHARDSYNC_BENCH_REEXEC") is None:
    env = tinylm.openblas_env(os.environ)
    env["SHARDSYNC_BENCH_REEXEC"] = "1"
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import torch  # noqa: E402


def loadavg():
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])


def start_server(binary, work):
    token = "bridge-overhead-bench-token-0123456789"
    with open(f"{work}/token", "w") as fh:
        fh.write(token + "\n")
    os.makedirs(f"{work}/data")
    server = subprocess.Popen(
        [binary, "serve", "--collection", f"bridge={work}/data", "--listen", "127.0.0.1:0",
         "--port-file", f"{work}/port", "--state-dir", f"{work}/state", "--rebuild-delay-ms", "5",
         "--write-token-file", f"{work}/token"],
        stdout=subprocess.DEVNULL, stderr=open(f"{work}/server.log", "w"))
    deadline = time.time() + 20
    while not (os.path.exists(f"{work}/port") and os.path.getsize(f"{work}/port")):
        if server.poll() is not None or time.time() > deadline:
            raise SystemExit("shardsync serve did not start")
        time.sleep(0.05)
    with open(f"{work}/port") as fh:
        return server, f"http://127.0.0.1:{fh.read().strip()}/bridge", token


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--H", type=int, default=50)
    ap.add_argument("--P", type=int, default=4)
    ap.add_argument("--tau", type=int, default=5)
    ap.add_argument("--wire", default="fp4-e3m0")
    ap.add_argument("--batch", type=int, default=8, help="sequences per step (one M=4 worker's share)")
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(os.path.join(args.build, "python")))
    import shardsync
    torch.set_num_threads(1)
    work = tempfile.mkdtemp(prefix="bridge-overhead-")
    server = None
    try:
        server, url, token = start_server(os.path.abspath(os.path.join(args.build, "bin", "shardsync")), work)
        train, _ = tinylm.load_corpus()
        with_bridge, plain = tinylm.build_model(0), tinylm.build_model(0)
        opt_a = tinylm.inner_optimizer(with_bridge, 4e-3)
        opt_b = tinylm.inner_optimizer(plain, 4e-3)
        bridge = shardsync.DiLoCoBridge(
            base_url=f"{url}/runs/bench", worker_id="w0", model=with_bridge, num_fragments=args.P,
            sync_every=args.H, overlap_steps=args.tau, merge_alpha=0.5, wire=args.wire,
            min_workers=1, num_workers=1, write_token=token, coordinator=True)
        bridge.bootstrap()
        step = {"a": 0, "b": 0}
        # The training thread's own cost: time inside the hook (copying a due fragment, landing
        # an update, waiting for a commit), measured directly, apart from the noisy pair ratio.
        hook_seconds = []
        untimed_hook = bridge.after_inner_step

        def timed_hook(tokens=0):
            h0 = time.perf_counter()
            untimed_hook(tokens)
            hook_seconds.append(time.perf_counter() - h0)
        bridge.after_inner_step = timed_hook

        def block(model, opt, key):
            t0 = time.perf_counter()
            for _ in range(args.H):
                step[key] += 1
                x, y = tinylm.global_batch(train, step[key], 0, args.batch, 64)
                tinylm.train_step(model, opt, x, y, 4e-3)
            return time.perf_counter() - t0

        with bridge.attach(opt_a):
            block(with_bridge, opt_a, "a")  # warm-up: first syncs, allocator, caches
            block(plain, opt_b, "b")
            ratios, times_a, times_b, dropped = [], [], [], 0
            for pair in range(args.pairs):
                load0 = loadavg()
                if pair % 2 == 0:  # ABAB / BABA: neither side always runs first
                    ta = block(with_bridge, opt_a, "a")
                    tb = block(plain, opt_b, "b")
                else:
                    tb = block(plain, opt_b, "b")
                    ta = block(with_bridge, opt_a, "a")
                load1 = loadavg()
                keep = abs(load1 - load0) <= 2.0
                print(f"pair {pair + 1}: with {1e3 * ta / args.H:.2f} ms/step, without "
                      f"{1e3 * tb / args.H:.2f} ms/step, ratio {ta / tb:.4f}, load {load0:.2f} -> "
                      f"{load1:.2f}{'' if keep else ' (dropped: load moved > 2)'}", file=sys.stderr)
                if not keep:
                    dropped += 1
                    continue
                ratios.append(ta / tb)
                times_a.append(ta / args.H)
                times_b.append(tb / args.H)
        if not ratios:
            raise SystemExit("every pair was dropped (load moved by more than 2)")
        bridge.finalize(publish_final=False)
        stats = bridge.stats()
        median = statistics.median(ratios)
        result = dict(pairs=len(ratios), dropped=dropped, H=args.H, P=args.P, tau=args.tau, wire=args.wire,
                      batch=args.batch, syncs=stats["syncs"],
                      median_step_ms_with=round(1e3 * statistics.median(times_a), 2),
                      median_step_ms_without=round(1e3 * statistics.median(times_b), 2),
                      median_ratio=round(median, 4), overhead_pct=round(100 * (median - 1), 2),
                      ratio_min=round(min(ratios), 4), ratio_max=round(max(ratios), 4),
                      hook_ms_mean=round(1e3 * statistics.mean(hook_seconds), 3),
                      hook_ms_max=round(1e3 * max(hook_seconds), 2),
                      hook_pct_of_step=round(100 * statistics.mean(hook_seconds) /
                                             statistics.median(times_b), 2),
                      wait_seconds=round(stats["wait_seconds"], 3), bytes_up=stats["bytes_up"])
        print(json.dumps(result))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
