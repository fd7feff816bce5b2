#!/usr/bin/env python3
"""In-process DiLoCo / Streaming DiLoCo on the calibration task, with the wire round trip done
by the shardsync package's C++ codecs (shardsync.quantize_dequantize): no server, no protocol,
M workers in one process. It separates what the codecs and the algorithm do from what the
bridge's protocol does: run.py's bridge runs should land on the same eval loss.

Semantics (DILOCO.md §1.2, §3.1): fragment p (blocks assigned strided) syncs at steps
t_p + k*H with t_p = floor(H/P*(p+1)); pseudo-gradient = global - local in fp32, quantized per
worker, dequantized and summed in worker order in fp32, divided by M; outer Nesterov SGD
(torch.optim.SGD); with τ > 0 the new global lands τ steps later as lerp(global, local, α).
Eval: mean of the workers after landing what is in flight.

  examples/diloco/inproc.py --build build --M 4 --H 50 --wire fp4-e3m0 [--P 4 --tau 5]
"""

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tinylm  # noqa: E402

if os.environ.get("DILOCO_EXAMPLE_REEXEC") is None:
    env = tinylm.openblas_env(os.environ)
    env["DILOCO_EXAMPLE_REEXEC"] = "1"
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    tinylm.add_diloco_arguments(ap)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(os.path.join(args.build, "python")))
    import shardsync
    torch.set_num_threads(1)
    t0 = time.time()
    train, held_out = tinylm.load_corpus()
    evals = tinylm.eval_batches(held_out)
    base = tinylm.build_model(args.seed)
    workers = [tinylm.TinyLM() for _ in range(args.M)]
    for w in workers:
        w.load_state_dict(base.state_dict())
    opts = [tinylm.inner_optimizer(w, args.lr) for w in workers]
    names = [n for n, _ in base.named_parameters()]
    layers = shardsync.layers_of(names)
    frag_names = [[n for n, layer in zip(names, layers) if layer % args.P == p] for p in range(args.P)]
    glob = {n: torch.nn.Parameter(p.detach().clone()) for n, p in base.named_parameters()}
    outer = [torch.optim.SGD([glob[n] for n in frag_names[p]], lr=args.outer_lr,
                             momentum=args.outer_momentum, nesterov=args.outer_momentum > 0)
             for p in range(args.P)]
    offsets = [int(math.floor(args.H / args.P * (p + 1))) for p in range(args.P)]
    wparams = [dict(w.named_parameters()) for w in workers]
    b_local = args.batch // args.M
    pending, syncs, payload_bytes = [], 0, []

    @torch.no_grad()
    def land(p, new_global):
        for m in range(args.M):
            for n in frag_names[p]:
                wp = wparams[m][n]
                wp.copy_(torch.lerp(new_global[n], wp.data, args.alpha) if args.tau > 0 else new_global[n])

    for step in range(1, args.steps + 1):
        lr = tinylm.lr_at(step - 1, args.steps, args.lr)
        x, y = tinylm.global_batch(train, step, args.seed, args.batch, 64)
        for m in range(args.M):
            rows = slice(m * b_local, (m + 1) * b_local)
            tinylm.train_step(workers[m], opts[m], x[rows], y[rows], lr)
        still = []
        for at, p, new_global in pending:
            if step >= at:
                land(p, new_global)
            else:
                still.append((at, p, new_global))
        pending = still
        for p in range(args.P):
            if step < offsets[p] or (step - offsets[p]) % args.H:
                continue
            syncs += 1
            nbytes = 0
            with torch.no_grad():
                for n in frag_names[p]:
                    acc = torch.zeros_like(glob[n])
                    for m in range(args.M):
                        delta = (glob[n].data - wparams[m][n].data).numpy()
                        values, size = shardsync.quantize_dequantize(delta, args.wire, args.block)
                        nbytes += size if m == 0 else 0
                        acc += torch.from_numpy(values)
                    glob[n].grad = acc / args.M
            outer[p].step()
            outer[p].zero_grad(set_to_none=True)
            payload_bytes.append(nbytes)
            new_global = {n: glob[n].detach().clone() for n in frag_names[p]}
            if args.tau > 0:
                pending.append((step + args.tau, p, new_global))
            else:
                land(p, new_global)
    for _, p, new_global in pending:
        land(p, new_global)
    mean = tinylm.TinyLM()
    mean.load_state_dict({k: torch.stack([w.state_dict()[k] for w in workers]).mean(0)
                          for k in workers[0].state_dict()})
    result = dict(run=f"inproc_M{args.M}_H{args.H}_P{args.P}_tau{args.tau}_{args.wire}",
                  method="inproc", M=args.M, H=args.H, P=args.P, tau=args.tau, wire=args.wire,
                  eval_loss=round(tinylm.evaluate(mean, evals), 4), syncs=syncs,
                  peak_payload_bytes=max(payload_bytes), payload_bytes_total=sum(payload_bytes),
                  download_bytes_per_worker=(args.M - 1) * sum(payload_bytes),
                  wall_s=round(time.time() - t0, 1))
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
