#!/usr/bin/env python3
"""Data-parallel baseline of the calibration task (DILOCO.md §4): one model, the whole global
batch of 32 x 64 bytes every step, AdamW, 1,000 steps. Prints one JSON line with the eval loss.
Data-parallel exchanges fp32 gradients every step: costed as (M-1) x 4N bytes per worker per step
in the all-gather accounting the table uses.

  LD_LIBRARY_PATH is set for OpenBLAS by re-executing (see tinylm.openblas_env).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tinylm  # noqa: E402

if os.environ.get("DILOCO_EXAMPLE_REEXEC") is None:
    env = tinylm.openblas_env(os.environ)
    env["DILOCO_EXAMPLE_REEXEC"] = "1"
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lr", type=float, default=8e-3)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--M", type=int, default=4, help="workers the DP traffic is costed for")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    train, held_out = tinylm.load_corpus()
    evals = tinylm.eval_batches(held_out)
    model = tinylm.build_model(args.seed)
    opt = tinylm.inner_optimizer(model, args.lr)
    n_params = sum(p.numel() for p in model.parameters())
    for step in range(1, args.steps + 1):
        x, y = tinylm.global_batch(train, step, args.seed, args.batch, 64)
        loss = tinylm.train_step(model, opt, x, y, tinylm.lr_at(step - 1, args.steps, args.lr))
        if step % 100 == 0:
            print(f"step {step} train {loss.item():.4f} t={time.time() - t0:.0f}s", file=sys.stderr,
                  flush=True)
    result = dict(run=f"dp_lr{args.lr:g}", method="dp", lr=args.lr, steps=args.steps,
                  n_params=n_params, eval_loss=round(tinylm.evaluate(model, evals), 4),
                  syncs=args.steps, payload_bytes_per_sync=4 * n_params,
                  download_bytes_per_worker=(args.M - 1) * 4 * n_params * args.steps,
                  wall_s=round(time.time() - t0, 1))
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
