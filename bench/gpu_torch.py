#!/usr/bin/env python3
"""gpu_torch.py — the PyTorch peer of bench/gpu_bench.c: the same GPT-2 training step on one GPU.

Same model as models/gpt2.c: token + learned position embeddings, pre-LayerNorm blocks (causal
multi-head attention, GELU with the tanh approximation), final LayerNorm, LM head tied to the
token embedding. The token table has the padded vocabulary's rows (a multiple of 128) and the
head multiplies by all of them, as tessera does (same FLOPs); the loss takes the first V
columns. A step is what gpu_bench times: forward with the loss, backward, global gradient-norm
clipping at 1.0, AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices only), then the
loss read back. Synthetic uniform random tokens.

PyTorch gets its best known set-up for this model (say which one when reporting): fp32 weights
with bf16 autocast, torch.compile (default mode), F.scaled_dot_product_attention with
is_causal (flash attention on Hopper), fused AdamW, TF32 allowed for any fp32 matmul left.
    python3 bench/gpu_torch.py --batch 16 --steps 20
    python3 bench/gpu_torch.py --compile max-autotune-no-cudagraphs    # other set-ups to try
The first steps compile (tens of seconds; inductor caches them for the next run): they are the
warm-up and are not counted. Figures as gpu_bench: median ms/step, tokens/s, MFU with
6N + 12*L*H*Q*T flops/token against 989e12 (datasheet) and 790e12 (measured) FLOP/s.
Progress to stderr, one JSON line to stdout.
"""

import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PEAK_DATASHEET = 989e12
PEAK_MEASURED = 790e12


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--compile", default="default",
                   choices=["default", "max-autotune-no-cudagraphs", "reduce-overhead", "none"])
    p.add_argument("--attention", default="sdpa", choices=["sdpa", "manual"],
                   help="sdpa: F.scaled_dot_product_attention(is_causal=True); manual: matmul, "
                        "mask, softmax, matmul")
    p.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke test)")
    p.add_argument("--seed", type=int, default=1337)
    a = p.parse_args(argv)
    for k in ("batch", "steps", "seq_len", "layers", "heads", "width", "vocab"):
        if getattr(a, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1")
    if a.width % a.heads:
        p.error("--width must be a multiple of --heads")
    return a


class Block(nn.Module):
    def __init__(self, C, NH, L):
        super().__init__()
        self.C, self.NH = C, NH
        self.ln1 = nn.LayerNorm(C, eps=1e-5)
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C, eps=1e-5)
        self.fc = nn.Linear(C, 4 * C)
        self.fcproj = nn.Linear(4 * C, C)
        resid_std = 0.02 / math.sqrt(2 * L)
        for lin, std in ((self.qkv, 0.02), (self.proj, resid_std), (self.fc, 0.02),
                         (self.fcproj, resid_std)):
            nn.init.normal_(lin.weight, 0.0, std)
            nn.init.zeros_(lin.bias)
        self.manual = False

    def attention(self, x):
        B, T, C = x.shape
        NH, hs = self.NH, C // self.NH
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, NH, hs).transpose(1, 2)  # (B,NH,T,hs)
        k = k.view(B, T, NH, hs).transpose(1, 2)
        v = v.view(B, T, NH, hs).transpose(1, 2)
        if self.manual:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            y = att.masked_fill(mask, float("-inf")).softmax(dim=-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.V, C = a.vocab, a.width
        Vp = (a.vocab + 127) // 128 * 128
        self.wte = nn.Parameter(torch.randn(Vp, C) * 0.02)
        with torch.no_grad():
            self.wte[a.vocab:] = 0
        self.wpe = nn.Parameter(torch.randn(a.seq_len, C) * 0.02)
        self.blocks = nn.ModuleList(Block(C, a.heads, a.layers) for _ in range(a.layers))
        for b in self.blocks:
            b.manual = a.attention == "manual"
        self.lnf = nn.LayerNorm(C, eps=1e-5)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = F.embedding(idx, self.wte) + self.wpe[:T]
        for b in self.blocks:
            x = b(x)
        logits = F.linear(self.lnf(x), self.wte)  # (B,T,Vp), the tied head over every row
        return F.cross_entropy(logits[..., : self.V].reshape(B * T, self.V),
                               targets.reshape(B * T))


def make_adamw(params, device):
    decay = [p for p in params if p.dim() == 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    if device == "cuda":
        try:
            return torch.optim.AdamW(groups, fused=True, **kw), "fused"
        except (TypeError, RuntimeError):
            pass
    return torch.optim.AdamW(groups, **kw), "default"


def main(argv):
    a = parse_args(argv)
    torch.manual_seed(a.seed)
    dev = a.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("gpu_torch: no CUDA device: nothing measured", file=sys.stderr)
        return 77
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = GPT2(a).to(dev)
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    opt, adamw_kind = make_adamw(params, dev)
    step_fn = model if a.compile == "none" else torch.compile(
        model, mode=None if a.compile == "default" else a.compile)
    amp_dtype = torch.bfloat16

    B, T = a.batch, a.seq_len
    g = torch.Generator(device="cpu").manual_seed(a.seed)
    batches = [torch.randint(0, a.vocab, (B, T + 1), generator=g).to(dev) for _ in range(4)]
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(0) if dev == "cuda" else "CPU"
    print(f"gpu_torch: torch {torch.__version__} on {name}, L={a.layers} NH={a.heads} "
          f"C={a.width} T={T} V={a.vocab}, {n_params} parameters, batch {B}, compile "
          f"{a.compile}, attention {a.attention}, AdamW {adamw_kind}", file=sys.stderr)

    total = a.warmup + a.steps
    ms, losses = [], []
    sync()
    for step in range(total):
        data = batches[step % len(batches)]
        t0 = time.perf_counter()
        with torch.autocast(device_type=dev, dtype=amp_dtype):
            loss = step_fn(data[:, :-1], data[:, 1:])
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        lv = loss.item()  # reads back, as tessera does each step
        sync()
        ms.append((time.perf_counter() - t0) * 1e3)
        losses.append(lv)
        if not math.isfinite(lv):
            print(f"gpu_torch: step {step + 1}: loss {lv}: not finite", file=sys.stderr)
            return 1
        print(f"  step {step + 1:3d}{' (warm-up)' if step < a.warmup else ''}  loss {lv:.4f}  "
              f"norm {float(norm):.3f}  {ms[-1]:.1f} ms", file=sys.stderr)

    timed = ms[a.warmup:]
    med = statistics.median(timed)
    Q = a.width / a.heads
    flops_tok = 6 * (n_params - a.seq_len * a.width) + 12 * a.layers * a.heads * Q * T
    tok_s = B * T / (med * 1e-3)
    achieved = flops_tok * tok_s
    mem = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else 0.0
    print(f"gpu_torch: median {med:.2f} ms/step (min {min(timed):.2f}), {tok_s:.0f} tokens/s, "
          f"{achieved / 1e12:.1f} TFLOP/s, MFU {100 * achieved / PEAK_DATASHEET:.1f}% of 989 "
          f"(datasheet), {100 * achieved / PEAK_MEASURED:.1f}% of 790 (measured); first step "
          f"(compilation) {ms[0] / 1e3:.1f} s", file=sys.stderr)
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "device": name, "dtype": "bf16-autocast",
        "compile": a.compile, "attention": a.attention, "adamw": adamw_kind,
        "layers": a.layers, "heads": a.heads, "width": a.width, "seq_len": T, "vocab": a.vocab,
        "padded_vocab": (a.vocab + 127) // 128 * 128, "batch": B, "params": n_params,
        "flops_per_token": flops_tok, "warmup": a.warmup, "steps": a.steps,
        "ms_per_step_median": round(med, 3), "ms_per_step_min": round(min(timed), 3),
        "ms_per_step_mean": round(statistics.fmean(timed), 3), "tokens_per_s": round(tok_s, 1),
        "tflops": round(achieved / 1e12, 2), "mfu_datasheet": round(achieved / PEAK_DATASHEET, 4),
        "mfu_measured": round(achieved / PEAK_MEASURED, 4), "peak_datasheet": PEAK_DATASHEET,
        "peak_measured": PEAK_MEASURED, "loss_first": losses[0], "loss_last": losses[-1],
        "first_step_s": round(ms[0] / 1e3, 2), "device_gib": round(mem, 2),
        "step_ms": [round(x, 3) for x in timed],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
