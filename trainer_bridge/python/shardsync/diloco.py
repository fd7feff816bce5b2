"""shardsync.DiLoCoBridge: a PyTorch model's side of (Streaming) DiLoCo over ResourceSync.

The shape of DILOCO.md §3.4::

    bridge = shardsync.DiLoCoBridge(base_url="http://127.0.0.1:8080/bridge/runs/r1",
                                    worker_id="w3", model=model, num_fragments=4, sync_every=50,
                                    overlap_steps=5, merge_alpha=0.5, wire="fp4-e3m0")
    bridge.bootstrap()                       # θ0 from the run (or a checkpoint on restart)
    with bridge.attach(inner_optimizer):     # after every optimizer.step()
        for batch in loader: ...
    bridge.finalize()                        # lands what is in flight, publishes the final model

The C++ library does the work (shardsync._bridge.Bridge): the hook after each optimizer step
hands it the step number; when a fragment is due it copies that fragment's fp32 parameters and
returns, while its background thread computes the pseudo-gradient, quantizes, publishes and
fetches. When an update is due to land it writes the new global fragment (or the α-merge) into
the parameters in place. The GIL is released throughout, so other Python threads keep running.

Parameters must be contiguous float32 CPU tensors: the bridge reads and writes their memory
directly (through numpy views), which is also why it needs no copy of the model. The writes
happen between optimizer.step() and the next forward, when no autograd graph holds them.
"""

import re

from shardsync import _bridge

_BLOCK_INDEX = re.compile(r"\.(\d+)\.")


def layers_of(names):
    """Transformer block of each parameter name: the first `.<i>.` component (blocks.3.fc1.weight
    -> 3). Parameters before the first block (embeddings) go with block 0, those after the last
    (final norm, head) with the last block, as in DILOCO.md §4's setup."""
    found = [(_BLOCK_INDEX.search(n), n) for n in names]
    indices = [int(m.group(1)) for m, _ in found if m]
    last = max(indices) if indices else 0
    layers, seen_block = [], False
    for m, _ in found:
        if m:
            seen_block = True
            layers.append(int(m.group(1)))
        else:
            layers.append(last if seen_block else 0)
    return layers


def split_base_url(base_url):
    """'http://host:port/COLLECTION/runs/RUN' -> ('http://host:port/COLLECTION', 'RUN')."""
    head, sep, run_id = base_url.rstrip("/").rpartition("/runs/")
    if not sep or not run_id or "/" in run_id:
        raise ValueError(f"base_url must end in /runs/<run_id>: {base_url!r}")
    return head, run_id


class DiLoCoBridge:
    """One worker of a DiLoCo / Streaming DiLoCo run. Call every method from the training
    thread, except stats(). Raises shardsync.Error for failures of the protocol (transport,
    divergence, a run.json that differs from this worker's settings), ValueError for
    arguments that cannot work."""

    def __init__(self, base_url, worker_id, model, fragments="strided", num_fragments=1,
                 sync_every=500, overlap_steps=0, merge_alpha=0.5, wire="fp4-e3m0", block_size=128,
                 outer_lr=0.7, outer_momentum=0.9, min_workers=1, grace=2.0,
                 topology="allgather", *, num_workers=0, coordinator=None, follow_urls=None,
                 commit_url=None, write_token=None, zstd=False, commit_timeout=30.0,
                 bootstrap_timeout=30.0, poll_interval=0.02, checkpoint_every=1, layers=None,
                 log=None):
        """base_url: '<collection URL>/runs/<run_id>' on a `shardsync serve` with a write token.
        grace: seconds the committer waits after the deadline step for missing payloads, or
        "adaptive" (not implemented by the C++ library yet: it uses its 2 s default).
        num_workers: M, to commit as soon as all are in (0: wait for the deadline + grace).
        coordinator: publish run.json and θ0 when the run has none (default: worker "w0").
        layers: transformer block per parameter, parallel to model.named_parameters(); by
        default from the names (see layers_of). log: True (stderr) or a callable(level, msg)."""
        import torch
        publish_url, run_id = split_base_url(base_url)
        if grace == "adaptive":
            grace = None
        named = list(model.named_parameters())
        for name, p in named:
            if p.device.type != "cpu" or p.dtype != torch.float32 or not p.is_contiguous():
                raise ValueError(f"parameter {name}: the bridge needs contiguous float32 CPU "
                                 f"parameters, not {p.dtype} on {p.device}")
        names = [n for n, _ in named]
        layer_list = list(layers) if layers is not None else layers_of(names)
        if len(layer_list) != len(names):
            raise ValueError("layers must have one entry per parameter")
        n_layers = max(layer_list) + 1 if layer_list else 0
        config = dict(h=sync_every, p=num_fragments, pattern=fragments, tau=overlap_steps,
                      alpha=merge_alpha, outer_lr=outer_lr, outer_momentum=outer_momentum,
                      wire_format=wire, block_size=block_size, n_layers=n_layers,
                      tensors=[(n, p.numel(), layer) for (n, p), layer in zip(named, layer_list)])
        options = dict(run_id=run_id, worker_id=worker_id, publish_url=publish_url,
                       follow_urls=follow_urls, commit_url=commit_url, write_token=write_token,
                       config=config,
                       coordinator=(worker_id == "w0") if coordinator is None else coordinator,
                       topology=topology, min_workers=min_workers, num_workers=num_workers,
                       grace_s=grace, commit_timeout_s=commit_timeout,
                       bootstrap_timeout_s=bootstrap_timeout, poll_interval_s=poll_interval,
                       zstd=zstd, checkpoint_every=checkpoint_every, log=log)
        # numpy views share the tensors' memory: the C++ side reads and writes the parameters.
        arrays = [(n, p.detach().numpy(), layer) for (n, p), layer in zip(named, layer_list)]
        self._bridge = _bridge.Bridge(options, arrays)
        self._model = model
        self._step = 0
        self._finalized = False

    @property
    def step(self):
        """Inner steps done (through the hook or after_inner_step)."""
        return self._step

    def bootstrap(self):
        """Fetches (or, as coordinator, publishes) run.json and θ0 and writes θ0 into the model;
        after a restart, the latest global state instead. Returns the step to continue from."""
        import torch
        with torch.no_grad():
            self._step = self._bridge.bootstrap()
        return self._step

    def after_inner_step(self, tokens=0):
        """What the hook does after each optimizer step: sends the fragment due now (a copy of
        its parameters; the rest runs in the background) and lands the update due now (blocks
        only if its commit is not in yet, then writes the parameters in place)."""
        if self._finalized:
            raise RuntimeError("the bridge was finalized")
        import torch
        with torch.no_grad():
            self._bridge.after_inner_step(self._step + 1, tokens)
        self._step += 1

    def attach(self, optimizer, tokens_per_step=0):
        """Context manager: calls after_inner_step() after every optimizer.step() (torch 1.13
        has no step post-hooks, so step is wrapped on the instance and restored on exit)."""
        return _Attached(self, optimizer, tokens_per_step)

    def finalize(self, publish_final=True):
        """Lands every update in flight (with P > 1, one last sync of every fragment) and
        publishes the final model. No more steps afterwards."""
        import torch
        with torch.no_grad():
            self._bridge.finalize(self._step, publish_final)
        self._finalized = True

    def state_dict(self):
        """The bridge's state (global fragments, outer momentum, counters, incarnation, step);
        save it with the model and the inner optimizer."""
        return {"shardsync_bridge": self._bridge.state_dict(), "step": self._step}

    def load_state_dict(self, state):
        """Restores state_dict()'s output. Call it after bootstrap() (which the C++ library
        needs first; bootstrap() of a restarted worker also writes the run's latest global
        state into the model), then load the model's and the inner optimizer's own state."""
        self._bridge.load_state_dict(state["shardsync_bridge"])
        self._step = int(state["step"])

    def stats(self):
        """bytes_up/down, wait_seconds, syncs, included, late, skipped, rejected, and one
        record per landed sync (fragment, sync, steps, included workers, global_sha256, ...)."""
        return self._bridge.stats()

    def global_sha256(self, fragment):
        return self._bridge.global_sha256(fragment)

    def config(self):
        return self._bridge.config()


class _Attached:
    def __init__(self, bridge, optimizer, tokens_per_step):
        self._bridge = bridge
        self._optimizer = optimizer
        self._tokens = tokens_per_step

    def __enter__(self):
        optimizer, bridge, tokens = self._optimizer, self._bridge, self._tokens
        # An LR scheduler may have wrapped step on the instance already: wrap that, restore it.
        self._own = vars(optimizer).get("step")
        inner_step = optimizer.step

        def step(*args, **kwargs):
            result = inner_step(*args, **kwargs)
            bridge.after_inner_step(tokens)
            return result

        optimizer.step = step
        return bridge

    def __exit__(self, *exc):
        if self._own is None:
            del self._optimizer.step
        else:
            self._optimizer.step = self._own
        return False
