#!/usr/bin/env python3
"""ctest bridge.python_workers: three worker processes train a tiny torch model through
shardsync.DiLoCoBridge (Streaming DiLoCo: P=2 fragments, H=8, τ=1, α=0.5, fp4-e3m0) against
one real `shardsync serve` over loopback.

Passes when every worker exits 0; every worker landed every sync of both fragments with all
three payloads included; for each (fragment, sync) all workers report the same global-fragment
sha-256; the final model is published (runs/r1/final/model.safetensors) and its tensors hash
to each worker's global fragments; and the model actually trained (loss fell).

Usage: python_workers_test.py SHARDSYNC_BINARY       (PYTHONPATH=<build>/python)
       python_workers_test.py --worker ...           (one worker; used by the test itself)
"""

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

M = 3
STEPS = 24
SETTINGS = dict(num_fragments=2, sync_every=8, overlap_steps=1, merge_alpha=0.5, wire="fp4-e3m0",
                block_size=32, outer_lr=0.7, outer_momentum=0.9, min_workers=M, num_workers=M)


def build_model(torch):
    """Embedding-free toy with transformer-style names: blocks.0.* and blocks.1.* (one fragment
    each), inp.* with block 0 and out.* with block 1."""
    torch.manual_seed(0)
    return torch.nn.ModuleDict({
        "inp": torch.nn.Linear(8, 16),
        "blocks": torch.nn.ModuleList(torch.nn.Linear(16, 16) for _ in range(2)),
        "out": torch.nn.Linear(16, 1),
    })


def forward(model, x, torch):
    h = torch.tanh(model["inp"](x))
    for block in model["blocks"]:
        h = h + torch.tanh(block(h))
    return model["out"](h)


def run_worker(args):
    import torch
    import shardsync
    torch.set_num_threads(1)
    model = build_model(torch)
    # Every worker starts from a different random model: bootstrap must overwrite it with θ0.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(float(args.index))
    bridge = shardsync.DiLoCoBridge(
        base_url=f"{args.url}/runs/r1", worker_id=args.worker, model=model,
        write_token=args.token, coordinator=args.index == 0, grace=5.0, commit_timeout=30.0,
        **SETTINGS)
    start = bridge.bootstrap()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(100 + args.index)
    target_w = torch.linspace(-1, 1, 8)
    losses = []
    with bridge.attach(opt):
        for _ in range(STEPS):
            x = torch.randn(32, 8, generator=g)
            y = (x @ target_w).unsqueeze(1)
            loss = torch.nn.functional.mse_loss(forward(model, x, torch), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    bridge.finalize()
    stats = bridge.stats()
    result = dict(worker=args.worker, start=start, step=bridge.step, losses=losses,
                  records=stats["records"], bytes_up=stats["bytes_up"],
                  bytes_down=stats["bytes_down"],
                  globals=[bridge.global_sha256(p) for p in range(SETTINGS["num_fragments"])])
    with open(args.out, "w") as fh:
        json.dump(result, fh)


def read_safetensors(path):
    with open(path, "rb") as fh:
        data = fh.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    buf = data[8 + n:]
    return {name: buf[e["data_offsets"][0]:e["data_offsets"][1]] for name, e in header.items()}


def fragment_names(torch):
    names = [n for n, _ in build_model(torch).named_parameters()]
    import shardsync
    layers = shardsync.layers_of(names)
    return [[n for n, layer in zip(names, layers) if layer == p] for p in range(2)]


def main():
    binary = sys.argv[1]
    import torch
    work = tempfile.mkdtemp(prefix="bridge-python-")
    procs, problems = [], []
    try:
        token = "python-workers-test-token-0123456789"
        with open(os.path.join(work, "token"), "w") as fh:
            fh.write(token + "\n")
        data = os.path.join(work, "data")
        os.makedirs(data)
        server_log = open(os.path.join(work, "server.log"), "w")
        server = subprocess.Popen(
            [binary, "serve", "--collection", f"bridge={data}", "--listen", "127.0.0.1:0",
             "--port-file", os.path.join(work, "port"), "--state-dir", os.path.join(work, "state"),
             "--rebuild-delay-ms", "5", "--write-token-file", os.path.join(work, "token")],
            stdout=server_log, stderr=subprocess.STDOUT)
        procs.append(server)
        port_file = os.path.join(work, "port")
        deadline = time.time() + 10
        while not (os.path.exists(port_file) and os.path.getsize(port_file)):
            if time.time() > deadline or server.poll() is not None:
                print("FAIL: shardsync serve did not start")
                return 1
            time.sleep(0.05)
        with open(port_file) as fh:
            url = f"http://127.0.0.1:{fh.read().strip()}/bridge"

        workers = []
        for i in range(M):
            out = os.path.join(work, f"w{i}.json")
            log = open(os.path.join(work, f"w{i}.log"), "w")
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", f"w{i}", "--index", str(i),
                   "--url", url, "--token", token, "--out", out]
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            procs.append(p)
            workers.append((f"w{i}", p, out))
        results = {}
        for name, p, out in workers:
            try:
                rc = p.wait(timeout=90)
            except subprocess.TimeoutExpired:
                rc = "timeout"
            if rc != 0:
                problems.append(f"{name} exited {rc}")
                with open(os.path.join(work, f"{name}.log")) as fh:
                    print(f"--- {name}.log\n{fh.read()[-3000:]}")
                continue
            with open(out) as fh:
                results[name] = json.load(fh)
        if len(results) == M:
            check(results, data, torch, problems)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)
    for p in problems:
        print("FAIL", p)
    print(f"{M} workers, {len(problems)} problems")
    return 1 if problems else 0


def check(results, data, torch, problems):
    expected_syncs = {(f, s) for f in range(2) for s in range(1, STEPS // SETTINGS["sync_every"] + 1)}
    by_key = {}
    for name, r in sorted(results.items()):
        if r["start"] != 0 or r["step"] != STEPS:
            problems.append(f"{name}: started at {r['start']}, ended at step {r['step']}")
        landed = set()
        for rec in r["records"]:
            key = (rec["fragment"], rec["sync"])
            landed.add(key)
            if rec["skipped"] or rec["timed_out"] or sorted(rec["included"]) != ["w0", "w1", "w2"]:
                problems.append(f"{name}: sync {key} skipped={rec['skipped']} "
                                f"timed_out={rec['timed_out']} included={rec['included']}")
            by_key.setdefault(key, {})[name] = rec["global_sha256"]
        if not expected_syncs <= landed:
            problems.append(f"{name}: landed {sorted(landed)}, want at least {sorted(expected_syncs)}")
        if not r["losses"][-1] < r["losses"][0]:
            problems.append(f"{name}: loss {r['losses'][0]:.4f} -> {r['losses'][-1]:.4f}")
        if r["bytes_up"] <= 0 or r["bytes_down"] <= 0:
            problems.append(f"{name}: bytes up {r['bytes_up']} down {r['bytes_down']}")
    for name, r in sorted(results.items()):
        print(f"{name}: {len(r['records'])} syncs landed, loss {r['losses'][0]:.4f} -> "
              f"{r['losses'][-1]:.4f}, {r['bytes_up']} B up, {r['bytes_down']} B down")
    for key, shas in sorted(by_key.items()):
        print(f"fragment {key[0]} sync {key[1]}: {len(shas)} workers, global sha-256 "
              f"{sorted(set(shas.values()))[0][:16]}... ({len(set(shas.values()))} distinct)")
        if len(shas) != M or len(set(shas.values())) != 1 or "" in shas.values():
            problems.append(f"sync {key}: global sha-256 differ or missing: {shas}")
    finals = {tuple(r["globals"]) for r in results.values()}
    if len(finals) != 1:
        problems.append(f"final global fragments differ: {finals}")
    final_path = os.path.join(data, "runs", "r1", "final", "model.safetensors")
    if not os.path.exists(final_path):
        problems.append("runs/r1/final/model.safetensors was not published")
        return
    tensors = read_safetensors(final_path)
    globals_ = next(iter(finals))
    for p, names in enumerate(fragment_names(torch)):
        missing = [n for n in names if n not in tensors]
        if missing:
            problems.append(f"final model lacks {missing}")
            continue
        sha = hashlib.sha256(b"".join(tensors[n] for n in names)).hexdigest()
        if sha != globals_[p]:
            problems.append(f"final model fragment {p}: sha-256 {sha} != workers' {globals_[p]}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        ap = argparse.ArgumentParser()
        ap.add_argument("--worker")
        ap.add_argument("--index", type=int)
        ap.add_argument("--url")
        ap.add_argument("--token")
        ap.add_argument("--out")
        run_worker(ap.parse_args())
    else:
        sys.exit(main())
