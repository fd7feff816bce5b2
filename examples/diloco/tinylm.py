"""The calibration task of DILOCO.md §4: a byte-level pre-LN transformer on the Python 3.11
standard library sources that Debian ships, with the data pipeline, learning-rate schedule and
evaluation of that setup.

The model, its initialisation order and the batch generator follow the same recipe as the
reference simulation (shared/diloco_sim.py), so that a data-parallel run with the same seed
reproduces its eval loss: every random draw happens in the same order on the same generator.
"""

import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-pthread"
STDLIB_SKIP = ("/test/", "/tests/", "/idlelib/", "/lib2to3/", "/site-packages/", "/dist-packages/",
               "/__pycache__/")


def openblas_env(env):
    """env with Debian's OpenBLAS (pthread) first on LD_LIBRARY_PATH: torch's default reference
    BLAS is about 20x slower. The dynamic loader reads it only at process start, so workers are
    launched with it."""
    if not os.path.exists(os.path.join(OPENBLAS_DIR, "libblas.so.3")):
        return env
    env = dict(env)
    paths = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
    if OPENBLAS_DIR not in paths:
        env["LD_LIBRARY_PATH"] = ":".join([OPENBLAS_DIR] + paths)
    return env


# ---- data -------------------------------------------------------------------------------------

def stdlib_files():
    """Every .py file of the newest /usr/lib/python3.X standard library, sorted, without tests,
    idlelib, lib2to3 and installed packages."""
    roots = sorted(r for r in (os.path.join("/usr/lib", d) for d in os.listdir("/usr/lib"))
                   if os.path.basename(r).startswith("python3.") and
                   os.path.exists(os.path.join(r, "os.py")))
    if not roots:
        raise SystemExit("no /usr/lib/python3.X standard library found")
    files = []
    for directory, _subdirs, names in os.walk(roots[-1]):
        for name in names:
            path = os.path.join(directory, name)
            if name.endswith(".py") and not any(s in path + "/" for s in STDLIB_SKIP):
                files.append(path)
    return sorted(files)


def load_corpus(eval_every=20):
    """(train bytes, eval bytes) as int64 tensors: every eval_every-th file is held out; files
    are joined with newlines."""
    train, held_out = [], []
    for i, path in enumerate(stdlib_files()):
        with open(path, "rb") as fh:
            (held_out if i % eval_every == eval_every - 1 else train).append(fh.read())

    def as_tensor(parts):
        return torch.frombuffer(bytearray(b"\n".join(parts)), dtype=torch.uint8).long()
    return as_tensor(train), as_tensor(held_out)


def windows(data, starts, ctx):
    x = torch.stack([data[i:i + ctx] for i in starts])
    y = torch.stack([data[i + 1:i + ctx + 1] for i in starts])
    return x, y


def global_batch(data, step, seed, batch, ctx):
    """The global batch of inner step `step`, a pure function of (seed, step): every method and
    every worker sees the same token stream (worker m of M takes rows [m*B/M, (m+1)*B/M))."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, data.numel() - ctx - 1, (batch,), generator=g).tolist()
    return windows(data, starts, ctx)


def eval_batches(data, count=128, ctx=64, seed=12345, batch=32):
    g = torch.Generator()
    g.manual_seed(seed)
    starts = torch.randint(0, data.numel() - ctx - 1, (count,), generator=g).tolist()
    return [windows(data, starts[k:k + batch], ctx) for k in range(0, count, batch)]


# ---- model ------------------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self, d, heads, ctx):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.register_buffer("causal", torch.tril(torch.ones(ctx, ctx, dtype=torch.bool)),
                             persistent=False)

    def forward(self, x):
        b, t, d = x.shape
        hd = d // self.heads
        q, k, v = (z.view(b, t, self.heads, hd).transpose(1, 2)
                   for z in self.qkv(self.ln1(x)).split(d, dim=2))
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        weights = scores.masked_fill(~self.causal[:t, :t], float("-inf")).softmax(-1)
        x = x + self.proj((weights @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TinyLM(nn.Module):
    """4 pre-LN blocks, d=64, 4 heads, context 64, tied input/output embedding: 220,544
    parameters. Parameter names: tok.*, pos.*, blocks.<i>.*, lnf.* (the bridge assigns blocks
    to fragments by the <i>; embeddings go with block 0, the final norm with the last)."""

    def __init__(self, vocab=256, d=64, layers=4, heads=4, ctx=64):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads, ctx) for _ in range(layers))
        self.lnf = nn.LayerNorm(d)
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("fc2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)

    def forward(self, idx, targets):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = self.lnf(x) @ self.tok.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def add_diloco_arguments(ap):
    """The run settings the in-process check (inproc.py) and a bridge worker (worker.py) share."""
    ap.add_argument("--M", type=int, default=4)
    ap.add_argument("--H", type=int, default=50)
    ap.add_argument("--P", type=int, default=1)
    ap.add_argument("--tau", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--wire", default="f32")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--outer-lr", type=float, default=0.7)
    ap.add_argument("--outer-momentum", type=float, default=0.9)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)


def build_model(seed):
    """The initial model of a run: identical in every process for a given seed."""
    torch.manual_seed(seed)
    return TinyLM()


def inner_optimizer(model, lr, weight_decay=0.1):
    """AdamW (0.9, 0.95); weight decay on matrices and embeddings only."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8)


def lr_at(step, total, peak, warmup=50, min_ratio=0.1):
    """Linear warm-up over `warmup` steps, then cosine to min_ratio * peak; step is 0-based."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model, batches):
    """Mean cross-entropy, nats per byte."""
    model.eval()
    total = sum(model(x, y).item() for x, y in batches)
    model.train()
    return total / len(batches)


def train_step(model, opt, x, y, lr, clip=1.0):
    for group in opt.param_groups:
        group["lr"] = lr
    loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss
