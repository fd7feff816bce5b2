#!/usr/bin/env python3
"""Data-parallel vs DiLoCo vs Streaming DiLoCo on the calibration task of DILOCO.md §4, each
DiLoCo run as M worker processes training through shardsync.DiLoCoBridge against a real
`shardsync serve` on loopback. Writes <out-dir>/<name>.json per run and <out-dir>/table.md.

  examples/diloco/run.py --build build --suite main --out-dir /tmp/diloco-example
  examples/diloco/run.py --build build --only diloco_M4_H50_fp4 --out-dir /tmp/diloco-example

A run whose JSON already exists is not run again (--force runs it anyway). See README.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tinylm  # noqa: E402

# name -> worker arguments (None = data-parallel). DiLoCo: inner lr 4e-3 (half DP's), outer
# Nesterov 0.7 / 0.9, as in DILOCO.md §4.1 tables A and B.
RUNS = {
    "dp_lr8e-3": None,
    "diloco_M4_H50_fp32": "--M 4 --H 50 --wire f32",
    "diloco_M4_H50_fp4": "--M 4 --H 50 --wire fp4-e3m0",
    "stream_M4_H50_P4_tau5_a0.5_fp4": "--M 4 --H 50 --P 4 --tau 5 --alpha 0.5 --wire fp4-e3m0",
    "stream_M4_H50_P4_tau1_a0.5_fp4": "--M 4 --H 50 --P 4 --tau 1 --alpha 0.5 --wire fp4-e3m0",
    "diloco_M2_H10": "--M 2 --H 10 --outer-lr 0.4 --wire f32",
    # the CI smoke test (bridge.python_example, with --steps 20)
    "smoke_M2_H10_P2_tau2_fp4": "--M 2 --H 10 --P 2 --tau 2 --alpha 0.5 --wire fp4-e3m0",
}
SUITES = {
    "main": ["dp_lr8e-3", "diloco_M4_H50_fp32", "diloco_M4_H50_fp4",
             "stream_M4_H50_P4_tau5_a0.5_fp4"],
    "all": list(RUNS),
}
# DILOCO.md §4.3 bar 3 (and §4.1 for DP): the simulation's eval loss for the same settings.
EXPECTED = {"dp_lr8e-3": 1.6158, "diloco_M4_H50_fp32": 2.0645, "diloco_M4_H50_fp4": 2.0595,
            "stream_M4_H50_P4_tau5_a0.5_fp4": 1.9500, "diloco_M2_H10": 1.8237}


def start_server(binary, work):
    token = "diloco-example-token-0123456789abcdef"
    with open(os.path.join(work, "token"), "w") as fh:
        fh.write(token + "\n")
    os.makedirs(os.path.join(work, "data"))
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen(
        [binary, "serve", "--collection", f"bridge={work}/data", "--listen", "127.0.0.1:0",
         "--port-file", f"{work}/port", "--state-dir", f"{work}/state", "--rebuild-delay-ms", "5",
         "--write-token-file", f"{work}/token"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while not (os.path.exists(f"{work}/port") and os.path.getsize(f"{work}/port")):
        if server.poll() is not None or time.time() > deadline:
            raise SystemExit(f"shardsync serve did not start; see {work}/server.log")
        time.sleep(0.05)
    with open(f"{work}/port") as fh:
        return server, f"http://127.0.0.1:{fh.read().strip()}/bridge", token


def run_dp(name, out, steps):
    subprocess.run([sys.executable, os.path.join(HERE, "dp.py"), "--lr", "8e-3", "--steps",
                    str(steps), "--out", out], check=True)
    with open(out) as fh:
        result = json.load(fh)
    result.update(run=name, M=1)
    return result


def run_diloco(name, extra, args):
    import torch
    worker_args = extra.split()
    m = int(worker_args[worker_args.index("--M") + 1])
    work = tempfile.mkdtemp(prefix=f"diloco-{name}-")
    env = tinylm.openblas_env(os.environ)
    env["PYTHONPATH"] = os.path.abspath(os.path.join(args.build, "python"))
    server = None
    procs = []
    try:
        t0 = time.time()
        server, url, token = start_server(os.path.join(args.build, "bin", "shardsync"), work)
        for i in range(m):
            cmd = [sys.executable, os.path.join(HERE, "worker.py"), "--url", f"{url}/runs/{name}",
                   "--token", token, "--index", str(i), "--out", f"{work}/w{i}.json"] + worker_args
            log = open(f"{work}/w{i}.log", "w")
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        for i, p in enumerate(procs):
            if p.wait() != 0:
                with open(f"{work}/w{i}.log") as fh:
                    sys.stderr.write(fh.read()[-4000:])
                raise SystemExit(f"{name}: worker w{i} failed (logs in {work})")
        wall = time.time() - t0
        workers = []
        for i in range(m):
            with open(f"{work}/w{i}.json") as fh:
                workers.append(json.load(fh))
        # Determinism: every worker ended every sync with the same global fragment.
        shas = {tuple(map(tuple, w["globals"])) for w in workers}
        if len(shas) != 1:
            raise SystemExit(f"{name}: the workers' global fragments differ (logs in {work})")
        # Eval of the mean of the workers (DILOCO.md §4 setup).
        params = [torch.load(f"{work}/w{i}.json.pt") for i in range(m)]
        torch.set_num_threads(1)
        model = tinylm.build_model(0)
        model.load_state_dict({k: torch.stack([p[k] for p in params]).mean(0) for k in params[0]},
                              strict=False)
        _, held_out = tinylm.load_corpus()
        eval_loss = tinylm.evaluate(model, tinylm.eval_batches(held_out))
        syncs = workers[0]["syncs"]
        return dict(run=name, method="diloco", args=extra, M=m, steps=args.steps, eval_loss=round(eval_loss, 4),
                    syncs=syncs, globals_agree=len(shas) == 1,
                    payload_bytes_per_sync=round(sum(w["bytes_up"] for w in workers) / m / max(1, syncs)),
                    peak_payload_bytes=max(w["max_bytes_up_per_sync"] for w in workers),
                    bytes_up_per_worker=round(sum(w["bytes_up"] for w in workers) / m),
                    download_bytes_per_worker=round(sum(w["bytes_down"] for w in workers) / m),
                    late=sum(w["late"] for w in workers), skipped=sum(w["skipped"] for w in workers),
                    wait_s=max(w["wait_seconds"] for w in workers), wall_s=round(wall, 1))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if server is not None:
            server.terminate()
            server.wait()
        if args.keep is False:
            shutil.rmtree(work, ignore_errors=True)


def fmt_bytes(n):
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def table(results):
    lines = ["| run | M | eval loss | simulation | vs simulation | syncs | bytes / worker / sync "
             "(mean up) | download / worker, whole run | total bytes on the wire (up + down, all "
             "workers) | wall |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        want = EXPECTED.get(r["run"]) if r.get("steps", 1000) == 1000 else None
        rel = f"{100 * (r['eval_loss'] / want - 1):+.2f} %" if want else "-"
        if r["method"] == "dp":
            total = r["M_costed"] * r["download_bytes_per_worker"] if "M_costed" in r else None
            lines.append(f"| {r['run']} | - | {r['eval_loss']:.4f} | {want} | {rel} | {r['syncs']} | "
                         f"{fmt_bytes(r['payload_bytes_per_sync'])} (fp32 gradient) | "
                         f"{fmt_bytes(r['download_bytes_per_worker'])} (all-gather at M=4) | "
                         f"{fmt_bytes(total) if total else '-'} | {r['wall_s']:.0f} s |")
        else:
            total = r["M"] * (r["bytes_up_per_worker"] + r["download_bytes_per_worker"])
            lines.append(f"| {r['run']} | {r['M']} | {r['eval_loss']:.4f} | {want} | {rel} | "
                         f"{r['syncs']} | {fmt_bytes(r['payload_bytes_per_sync'])} | "
                         f"{fmt_bytes(r['download_bytes_per_worker'])} | {fmt_bytes(total)} | "
                         f"{r['wall_s']:.0f} s |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="build directory (bin/shardsync, python/)")
    ap.add_argument("--suite", choices=sorted(SUITES), default="main")
    ap.add_argument("--only", default=None, help="comma-separated run names")
    ap.add_argument("--out-dir", default="/tmp/diloco-example")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep each run's server and worker files")
    ap.add_argument("--steps", type=int, default=1000,
                    help="inner steps (a short run names its results <name>_s<steps>)")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    names = args.only.split(",") if args.only else SUITES[args.suite]
    results = []
    for name in names:
        label = name if args.steps == 1000 else f"{name}_s{args.steps}"
        out = os.path.join(args.out_dir, f"{label}.json")
        if os.path.exists(out) and not args.force:
            with open(out) as fh:
                results.append(json.load(fh))
            continue
        print(f"running {label}", flush=True)
        if RUNS[name] is None:
            result = run_dp(name, out, args.steps)
            result["M_costed"] = 4
        else:
            result = run_diloco(name, f"{RUNS[name]} --steps {args.steps}", args)
        result["run"] = label
        with open(out, "w") as fh:
            json.dump(result, fh, indent=1)
        print(json.dumps(result), flush=True)
        results.append(result)
    text = table(results)
    with open(os.path.join(args.out_dir, "table.md"), "w") as fh:
        fh.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
