#!/usr/bin/python3
"""torch_gpt2.py — the PyTorch peer of the CPU benchmark: tessera's GPT-2, trained in PyTorch.

Same function as models/gpt2.c: token + learned position embeddings, pre-LayerNorm blocks
(causal multi-head attention, GELU with the tanh approximation), final LayerNorm, LM head tied to
the token embedding, fp32. The token table has the padded vocabulary's rows (a multiple of 128),
as in tessera; the LM head multiplies by the first V rows only, which is the same function
(tessera zeroes the padded logits' gradient) without computing logits nobody reads. One training
step is what `tessera train` does: forward, cross-entropy, backward, global gradient-norm
clipping at 1.0, AdamW (beta 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices only).

Run by Debian's python3 (torch 1.13), one configuration per process:
    /usr/bin/python3 bench/torch_gpt2.py --layers 4 --heads 4 --width 128 --seq-len 128 \
        --vocab 256 --batch 8 --steps 12 --torch-threads 1
Thread settings: --torch-threads sets torch.set_num_threads (OpenMP); OpenBLAS (which torch's
matmuls use here) takes OPENBLAS_NUM_THREADS from the environment, set by the caller.

Prints one JSON line: the configuration, parameter count and ms of every step (the first ones
are warm-up; the caller decides how many to skip).
"""

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--heads", type=int, required=True)
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--steps", type=int, default=10, help="training steps to time (all printed)")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--attention", choices=["manual", "sdpa"], default="manual",
                   help="manual: matmul + mask + softmax + matmul; sdpa: torch 1.13's private "
                        "F._scaled_dot_product_attention (is_causal)")
    p.add_argument("--foreach", type=int, choices=[0, 1], default=1,
                   help="AdamW's multi-tensor (foreach) implementation")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--profile", action="store_true",
                   help="profile the last step with torch.autograd.profiler and print the ops "
                        "by total self time, then by op and input shapes (to compare with "
                        "bench/profile_ops.sh)")
    return p.parse_args(argv)


class GPT2:
    """Parameters as plain tensors in tessera's table order; forward as functional calls."""

    def __init__(self, a):
        self.L, self.NH, self.C, self.T, self.V = a.layers, a.heads, a.width, a.seq_len, a.vocab
        self.Vp = (self.V + 127) // 128 * 128
        self.attention_kind = a.attention
        self.future = torch.triu(torch.ones(self.T, self.T, dtype=torch.bool), diagonal=1)
        g = torch.Generator().manual_seed(a.seed)
        C, L = self.C, self.L

        def normal(shape, std):
            return torch.randn(shape, generator=g) * std

        resid_std = 0.02 / math.sqrt(2 * L)
        self.wte = normal((self.Vp, C), 0.02)
        self.wte[self.V:] = 0
        self.wpe = normal((self.T, C), 0.02)
        self.blocks = []
        for _ in range(L):
            self.blocks.append({
                "ln1.w": torch.ones(C), "ln1.b": torch.zeros(C),
                "qkv.w": normal((3 * C, C), 0.02), "qkv.b": torch.zeros(3 * C),
                "proj.w": normal((C, C), resid_std), "proj.b": torch.zeros(C),
                "ln2.w": torch.ones(C), "ln2.b": torch.zeros(C),
                "fc.w": normal((4 * C, C), 0.02), "fc.b": torch.zeros(4 * C),
                "fcproj.w": normal((C, 4 * C), resid_std), "fcproj.b": torch.zeros(C),
            })
        self.lnf_w, self.lnf_b = torch.ones(C), torch.zeros(C)
        for t in self.parameters():
            t.requires_grad_(True)

    def parameters(self):
        out = [self.wte, self.wpe]
        for b in self.blocks:
            out += list(b.values())
        return out + [self.lnf_w, self.lnf_b]

    def attention(self, qkv, B, T):
        C, NH = self.C, self.NH
        hs = C // NH
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, NH, hs).transpose(1, 2)  # (B,NH,T,hs)
        k = k.view(B, T, NH, hs).transpose(1, 2)
        v = v.view(B, T, NH, hs).transpose(1, 2)
        if self.attention_kind == "sdpa":
            y, _ = F._scaled_dot_product_attention(q, k, v, None, 0.0, False, True)
        else:
            att = (q * (1.0 / math.sqrt(hs))) @ k.transpose(-2, -1)  # (B,NH,T,T)
            att = att.masked_fill(self.future[:T, :T], float("-inf"))
            y = torch.softmax(att, dim=-1) @ v                        # (B,NH,T,hs)
        return y.transpose(1, 2).reshape(B, T, C)

    def loss(self, idx, targets):
        B, T = idx.shape
        C = self.C
        x = F.embedding(idx, self.wte) + self.wpe[:T]
        for b in self.blocks:
            h = F.layer_norm(x, (C,), b["ln1.w"], b["ln1.b"], 1e-5)
            h = self.attention(F.linear(h, b["qkv.w"], b["qkv.b"]), B, T)
            x = x + F.linear(h, b["proj.w"], b["proj.b"])
            h = F.layer_norm(x, (C,), b["ln2.w"], b["ln2.b"], 1e-5)
            h = F.gelu(F.linear(h, b["fc.w"], b["fc.b"]), approximate="tanh")
            x = x + F.linear(h, b["fcproj.w"], b["fcproj.b"])
        x = F.layer_norm(x, (C,), self.lnf_w, self.lnf_b, 1e-5)
        logits = F.linear(x, self.wte[: self.V])  # (B,T,V): the tied head, real rows only
        return F.cross_entropy(logits.view(B * T, self.V), targets.view(B * T))


def main(argv):
    a = parse_args(argv)
    torch.set_num_threads(a.torch_threads)
    torch.manual_seed(a.seed)
    model = GPT2(a)
    params = model.parameters()
    decay = [p for p in params if p.dim() == 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4, betas=(0.9, 0.95), eps=1e-8, foreach=bool(a.foreach))
    n_params = sum(p.numel() for p in params)

    # random tokens: the content does not change the work of a step
    data = torch.randint(0, a.vocab, (a.steps, a.batch, a.seq_len + 1))
    ms = []
    losses = []
    prof = None
    for step in range(a.steps):
        if a.profile and step == a.steps - 1:
            prof = torch.autograd.profiler.profile(record_shapes=True)
            prof.__enter__()
        t0 = time.perf_counter()
        idx, tgt = data[step, :, :-1].contiguous(), data[step, :, 1:].contiguous()
        loss = model.loss(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        ms.append((time.perf_counter() - t0) * 1e3)
    if prof is not None:
        prof.__exit__(None, None, None)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30),
              file=sys.stderr)
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=20), file=sys.stderr)

    print(json.dumps({
        "peer": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "attention": a.attention, "foreach": a.foreach, "params": n_params,
        "tokens_per_step": a.batch * a.seq_len, "ms_per_step": [round(x, 3) for x in ms],
        "loss_first": losses[0], "loss_last": losses[-1],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
