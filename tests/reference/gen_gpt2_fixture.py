#!/usr/bin/python3
"""gen_gpt2_fixture.py — writes the GPT-2 reference fixture that test_reference checks against.

An independent GPT-2 in plain torch, computed in float64 on a tiny configuration with fixed
random weights, tokens and targets. It records the logits, the mean loss, the gradient of every
parameter, and five AdamW steps (the loss before each step and the final parameters), in the
binary format described in README.md next to this file.

Run by hand (Debian's python3 has torch):
    /usr/bin/python3 tests/reference/gen_gpt2_fixture.py [output]   # default: gpt2_tiny.fixture
The output is deterministic: same torch version, same bytes.
"""

import math
import struct
import sys
from pathlib import Path

import numpy as np
import torch

MAGIC = b"TSGPT2RF"
VERSION = 1

# Tiny configuration. T < maxT on purpose: the model must handle sequences shorter than its
# position table (rows T..maxT-1 of wpe get no gradient).
L, NH, C, MAXT, V = 2, 2, 16, 8, 50
VP = (V + 127) // 128 * 128
B, T = 2, 6
ADAM_STEPS = 5


def f32(x):
    """The float32 value nearest x, as a Python float. tessera's adamw takes its
    hyperparameters as float, so the reference uses exactly the values it will see."""
    return float(np.float32(x))


LR, BETA1, BETA2, EPS, WD = f32(1e-3), f32(0.9), f32(0.95), f32(1e-8), f32(0.1)


def param_table():
    """(name, shape) in the order of gpt2_param_table (models/gpt2_table.c)."""
    table = [("wte", (VP, C)), ("wpe", (MAXT, C))]
    for l in range(L):
        p = f"h.{l}."
        table += [
            (p + "ln1.w", (C,)), (p + "ln1.b", (C,)),
            (p + "attn.qkv.w", (3 * C, C)), (p + "attn.qkv.b", (3 * C,)),
            (p + "attn.proj.w", (C, C)), (p + "attn.proj.b", (C,)),
            (p + "ln2.w", (C,)), (p + "ln2.b", (C,)),
            (p + "mlp.fc.w", (4 * C, C)), (p + "mlp.fc.b", (4 * C,)),
            (p + "mlp.proj.w", (C, 4 * C)), (p + "mlp.proj.b", (C,)),
        ]
    table += [("lnf.w", (C,)), ("lnf.b", (C,))]
    return table


def init_params(gen):
    """Random weights that exercise every gradient: matrices N(0, 0.02), biases N(0, 0.05),
    LayerNorm weights 1 + N(0, 0.1) and biases N(0, 0.1). Padded wte rows are zero."""
    params = {}
    for name, shape in param_table():
        z = torch.randn(shape, generator=gen, dtype=torch.float64)
        if len(shape) == 2:
            x = 0.02 * z
        elif name.endswith("ln1.w") or name.endswith("ln2.w") or name == "lnf.w":
            x = 1.0 + 0.1 * z
        elif name.endswith("ln1.b") or name.endswith("ln2.b") or name == "lnf.b":
            x = 0.1 * z
        else:
            x = 0.05 * z
        if name == "wte":
            x[V:] = 0.0
        params[name] = x.requires_grad_(True)
    return params


def layernorm(x, w, b):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased, like GPT-2
    return (x - mean) / torch.sqrt(var + 1e-5) * w + b


def linear(x, w, b):
    return x @ w.t() + b  # w is (out, in)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def attention(qkv, nh):
    """qkv (B,T,3C) -> (B,T,C), causal, scale 1/sqrt(head size)."""
    b, t, c3 = qkv.shape
    c = c3 // 3
    hs = c // nh
    q, k, v = qkv.split(c, dim=-1)
    q, k, v = (z.reshape(b, t, nh, hs).transpose(1, 2) for z in (q, k, v))  # (B,NH,T,hs)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hs)                          # (B,NH,T,T)
    future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    y = torch.softmax(scores, dim=-1) @ v                                     # (B,NH,T,hs)
    return y.transpose(1, 2).reshape(b, t, c)


def forward(p, tokens):
    """tokens (B,T) -> logits (B,T,V): the full padded LM head, then the real columns."""
    t = tokens.shape[1]
    x = p["wte"][tokens] + p["wpe"][:t]
    for l in range(L):
        h = f"h.{l}."
        a = layernorm(x, p[h + "ln1.w"], p[h + "ln1.b"])
        a = attention(linear(a, p[h + "attn.qkv.w"], p[h + "attn.qkv.b"]), NH)
        x = x + linear(a, p[h + "attn.proj.w"], p[h + "attn.proj.b"])
        m = layernorm(x, p[h + "ln2.w"], p[h + "ln2.b"])
        m = gelu_tanh(linear(m, p[h + "mlp.fc.w"], p[h + "mlp.fc.b"]))
        x = x + linear(m, p[h + "mlp.proj.w"], p[h + "mlp.proj.b"])
    x = layernorm(x, p["lnf.w"], p["lnf.b"])
    logits_padded = x @ p["wte"].t()  # (B,T,Vp), tied head
    return logits_padded[..., :V]


def mean_loss(logits, targets):
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, targets.unsqueeze(-1)).mean()


def loss_and_grads(p, tokens, targets):
    for x in p.values():
        x.grad = None
    logits = forward(p, tokens)
    loss = mean_loss(logits, targets)
    loss.backward()
    return logits.detach(), loss.item(), {n: x.grad.detach().clone() for n, x in p.items()}


def adamw_steps(p, tokens, targets):
    """tessera's AdamW (kernels/backend.h), written out rather than torch.optim's, which decays
    before the update: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    p -= lr (mhat / (sqrt(vhat) + eps) + wd p), wd only on matrices."""
    m = {n: torch.zeros_like(x) for n, x in p.items()}
    v = {n: torch.zeros_like(x) for n, x in p.items()}
    losses = []
    for step in range(1, ADAM_STEPS + 1):
        _, loss, grads = loss_and_grads(p, tokens, targets)
        losses.append(loss)
        with torch.no_grad():
            for name, x in p.items():
                g = grads[name]
                wd = WD if x.dim() == 2 else 0.0
                m[name] = BETA1 * m[name] + (1.0 - BETA1) * g
                v[name] = BETA2 * v[name] + (1.0 - BETA2) * g * g
                mhat = m[name] / (1.0 - BETA1**step)
                vhat = v[name] / (1.0 - BETA2**step)
                x -= LR * (mhat / (torch.sqrt(vhat) + EPS) + wd * x)
    return losses, {n: x.detach().clone() for n, x in p.items()}


def pack_array(name, arr):
    arr = np.ascontiguousarray(np.asarray(arr, dtype="<f8"))
    nb = name.encode()
    out = struct.pack("<i", len(nb)) + nb + struct.pack("<i", arr.ndim)
    out += struct.pack(f"<{arr.ndim}i", *arr.shape) + arr.tobytes()
    return out


def main():
    out_path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name(
        "gpt2_tiny.fixture")
    gen = torch.Generator().manual_seed(20240611)
    params = init_params(gen)
    tokens = torch.randint(0, V, (B, T), generator=gen)
    targets = torch.randint(0, V, (B, T), generator=gen)
    initial = {n: x.detach().clone() for n, x in params.items()}

    logits, loss, grads = loss_and_grads(params, tokens, targets)
    losses, final = adamw_steps(params, tokens, targets)
    assert abs(losses[0] - loss) == 0.0

    arrays = [("param/" + n, initial[n]) for n, _ in param_table()]
    arrays += [("logits", logits), ("loss", np.float64(loss))]
    arrays += [("grad/" + n, grads[n]) for n, _ in param_table()]
    arrays += [("adam_losses", np.array(losses))]
    arrays += [("adam_final/" + n, final[n]) for n, _ in param_table()]

    blob = MAGIC + struct.pack("<10i", VERSION, L, NH, C, MAXT, V, VP, B, T, ADAM_STEPS)
    blob += struct.pack("<5d", LR, BETA1, BETA2, EPS, WD)
    blob += np.asarray(tokens, dtype="<i4").tobytes() + np.asarray(targets, dtype="<i4").tobytes()
    blob += struct.pack("<i", len(arrays))
    for name, arr in arrays:
        blob += pack_array(name, arr.numpy() if torch.is_tensor(arr) else arr)
    out_path.write_bytes(blob)
    print(f"wrote {out_path} ({len(blob)} bytes): loss {loss:.12f}, "
          f"adam losses {' '.join(f'{x:.9f}' for x in losses)}")


if __name__ == "__main__":
    main()
