#!/usr/bin/env python3
"""attn_summary.py — the Markdown table of attention benchmark runs (JSON lines of
bench/gpu_attn_bench and bench/gpu_attn_torch.py): medians per implementation and the speed of
tessera's flash kernels relative to PyTorch's SDPA flash backend (their time / ours).
    python3 bench/attn_summary.py attn.jsonl
"""
import json
import statistics
import sys

runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = {}
for r in runs:
    by.setdefault(r["impl"], []).append(r)
x = runs[0]
print("Causal attention, B=%s T=%s NH=%s HS=%s, bf16; figure = median over runs of each run's "
      "median:" % (x["batch"], x["seq_len"], x["heads"], x["head_size"]))
print()
print("| impl | runs | forward ms | forward TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |")
print("| --- | --- | --- | --- | --- | --- |")
med = {}
for impl, rs in by.items():
    f = statistics.median(r["ms_forward"] for r in rs)
    b = statistics.median(r["ms_forward_backward"] for r in rs)
    med[impl] = (f, b)
    print("| %s | %d | %.3f | %.1f | %.3f | %.1f |" % (
        impl, len(rs), f, statistics.median(r["tflops_forward"] for r in rs), b,
        statistics.median(r["tflops_forward_backward"] for r in rs)))
if "tessera-flash" in med and "torch-sdpa-flash" in med:
    (tf, tb), (pf, pb) = med["tessera-flash"], med["torch-sdpa-flash"]
    print()
    print("tessera flash speed / SDPA flash speed: forward **%.3f**, forward+backward **%.3f**"
          % (pf / tf, pb / tb))
