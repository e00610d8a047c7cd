#!/usr/bin/env python3
"""gpu_attn_torch.py — the PyTorch peer of bench/gpu_attn_bench.c: causal attention forward and
forward+backward with F.scaled_dot_product_attention restricted to its flash backend.

Same shapes and layout as tessera's op: one qkv tensor (B,T,3C) in bf16, split into q, k, v
views (B,NH,T,HS) as a GPT model does (no copies), output (B,T,NH,HS). Each iteration is timed
with a synchronize after it (wall time with launches, as gpu_attn_bench). FLOPs as there:
4 B NH T^2 HS / 2 for the causal forward, 2.5 times that for the backward.
    python3 bench/gpu_attn_torch.py --batch 32 --seq-len 1024 --heads 12 --head-size 64
Needs PyTorch 2.3 or later (torch.nn.attention.sdpa_kernel). Progress on stderr, one JSON line
on stdout. Exit 77 without a CUDA device.
"""

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_attn_torch: no CUDA device: nothing measured", file=sys.stderr)
        return 77
    from torch.nn.attention import SDPBackend, sdpa_kernel

    B, T, NH, HS = a.batch, a.seq_len, a.heads, a.head_size
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(1)
    qkv = (torch.rand(B, T, 3, NH, HS, device=dev, generator=gen) * 2 - 1).to(torch.bfloat16)
    qkv.requires_grad_(True)
    dout = torch.rand(B, T, NH, HS, device=dev, generator=gen).to(torch.bfloat16)

    def forward():
        # unbind: one stacked gradient for qkv in backward, as tessera writes dqkv in place
        q, k, v = (x.transpose(1, 2) for x in qkv.unbind(2))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)

    print(f"gpu_attn_torch: SDPA (flash backend) on {torch.cuda.get_device_name()}, "
          f"B={B} T={T} NH={NH} HS={HS}, torch {torch.__version__}", file=sys.stderr)
    fwd, both = [], []
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        for it in range(a.warmup + a.iters):
            qkv.grad = None
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = forward()
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            out.backward(dout)
            torch.cuda.synchronize()
            t2 = time.perf_counter()
            if it >= a.warmup:
                fwd.append((t1 - t0) * 1e3)
                both.append((t2 - t0) * 1e3)
    fwd_ms, both_ms = statistics.median(fwd), statistics.median(both)
    fwd_flops = 4.0 * B * NH * T * T * HS / 2
    both_flops = 3.5 * fwd_flops
    print(f"gpu_attn_torch: forward {fwd_ms:.3f} ms ({fwd_flops / fwd_ms / 1e9:.1f} TFLOP/s), "
          f"forward+backward {both_ms:.3f} ms ({both_flops / both_ms / 1e9:.1f} TFLOP/s)",
          file=sys.stderr)
    print(json.dumps({"impl": "torch-sdpa-flash", "device": torch.cuda.get_device_name(),
                      "torch": torch.__version__, "batch": B, "seq_len": T, "heads": NH,
                      "head_size": HS, "iters": a.iters, "ms_forward": round(fwd_ms, 4),
                      "ms_forward_backward": round(both_ms, 4),
                      "tflops_forward": round(fwd_flops / fwd_ms / 1e9, 2),
                      "tflops_forward_backward": round(both_flops / both_ms / 1e9, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
