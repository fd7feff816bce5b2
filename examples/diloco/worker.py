#!/usr/bin/env python3
"""One DiLoCo worker of the calibration task, training through shardsync.DiLoCoBridge.

Worker m of M takes rows [m*B/M, (m+1)*B/M) of each global batch (the same token stream as
data-parallel), runs AdamW with the cosine schedule, and lets the bridge hook publish, fetch,
reduce and merge. At the end it lands the update still in flight (τ > 0) by advancing the
bridge without training, which is what the reference simulation does before its eval, saves
its parameters for the launcher's eval of the mean of the workers, then finalizes (which
publishes the final model). run.py starts these; see README.md.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tinylm  # noqa: E402
import torch  # noqa: E402

import shardsync  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True, help="<collection URL>/runs/<run_id>")
    ap.add_argument("--token", required=True)
    ap.add_argument("--index", type=int, required=True)
    tinylm.add_diloco_arguments(ap)
    ap.add_argument("--pattern", default="strided")
    ap.add_argument("--out", required=True, help="result JSON; parameters go to <out>.pt")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    b_local = args.batch // args.M
    rows = slice(args.index * b_local, (args.index + 1) * b_local)
    train, _ = tinylm.load_corpus()
    model = tinylm.build_model(args.seed)
    bridge = shardsync.DiLoCoBridge(
        base_url=args.url, worker_id=f"w{args.index}", model=model, fragments=args.pattern,
        num_fragments=args.P, sync_every=args.H, overlap_steps=args.tau, merge_alpha=args.alpha,
        wire=args.wire, block_size=args.block, outer_lr=args.outer_lr,
        outer_momentum=args.outer_momentum, min_workers=args.M, num_workers=args.M,
        # Every worker's payload is wanted in every sync (the simulation's semantics): the
        # committer waits for stragglers on this shared CPU rather than leaving them out.
        grace=600.0, commit_timeout=900.0, bootstrap_timeout=120.0,
        write_token=args.token, coordinator=args.index == 0,
        # No checkpoints: the table counts payload traffic, as the simulation does.
        checkpoint_every=0)
    bridge.bootstrap()
    opt = tinylm.inner_optimizer(model, args.lr)
    step_seconds = []
    with bridge.attach(opt, tokens_per_step=b_local * 64):
        for step in range(1, args.steps + 1):
            x, y = tinylm.global_batch(train, step, args.seed, args.batch, 64)
            s0 = time.perf_counter()
            loss = tinylm.train_step(model, opt, x[rows], y[rows],
                                     tinylm.lr_at(step - 1, args.steps, args.lr))
            step_seconds.append(time.perf_counter() - s0)
            if step % 100 == 0:
                print(f"w{args.index} step {step} train {loss.item():.4f} "
                      f"t={time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    # Land the update sent at the last sync (in flight for τ steps), as the simulation does
    # before its eval: advance the bridge without training.
    for _ in range(args.tau):
        bridge.after_inner_step()
    torch.save({n: p.detach().clone() for n, p in model.named_parameters()}, args.out + ".pt")
    bridge.finalize()
    stats = bridge.stats()
    records = stats["records"]
    result = dict(worker=f"w{args.index}", bytes_up=stats["bytes_up"],
                  bytes_down=stats["bytes_down"], syncs=stats["syncs"],
                  included=stats["included"], late=stats["late"], skipped=stats["skipped"],
                  wait_seconds=round(stats["wait_seconds"], 2),
                  max_bytes_up_per_sync=max((r["bytes_up"] for r in records), default=0),
                  globals=[[r["fragment"], r["sync"], r["global_sha256"]] for r in records],
                  median_step_s=sorted(step_seconds)[len(step_seconds) // 2],
                  wall_s=round(time.time() - t0, 1))
    with open(args.out, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
