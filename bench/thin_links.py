#!/usr/bin/env python3
"""bench/thin_links.py — fp32 data parallelism against the gradient codecs and local SGD
(DiLoCo, with and without codecs, streaming) on 4 ranks, same seed, equal tokens.

  bench/thin_links.py trajectories MODEL [CONFIG...]   loss and bytes: 4 ranks on this machine
  bench/thin_links.py timing MODEL RATE [CONFIG...]    step time: 4 lab hosts at RATE Mbit/s
  bench/thin_links.py report MODEL [RATE...]           Markdown table and SVG plots

MODEL is `demo` (configs/demo.ini, 0.8 M parameters, 600 steps) or `m10` (the demo's data with
6 blocks of width 384: 10.7 M parameters, seq_len 64, 240 steps). Results go to
runs/thin_links/MODEL/ (trajectories/<config>/, timing-<rate>/<config>/); `report` writes
docs/img/thin-links-MODEL-{tokens,wallclock,bytes}.svg and prints the table.

Why two phases: the trajectory of a run (its losses and bytes) does not depend on the link, only
its wall-clock does, and every run is deterministic for a seed and a world size. So each
configuration trains once over loopback for its whole length (4 ranks on this machine's cores),
and once in the lab per link rate for a few sync periods, which measures its step time, compute
share and wire time at that rate. Wall-clock to a loss = the steps the trajectory needs to reach
it x the step time measured at the rate. Needs root for the lab (scripts/lab) and data/fortunes
(`build/tessera prepare --out data/fortunes`). Prints progress to stderr.
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESSERA = os.path.join(ROOT, "build", "tessera")

MODELS = {
    "demo": {"args": [], "steps": 600, "warmup": 60, "eval_every": 50},
    "m10": {"args": ["--model.layers=6", "--model.width=384", "--model.heads=6",
                     "--model.seq_len=64", "--train.micro_batch=8", "--train.lr=1e-3"],
            "steps": 240, "warmup": 24, "eval_every": 20},
}

# name -> options; the order is the table's
CONFIGS = [
    ("dp-fp32", []),
    ("bf16", ["--comm.codec=bf16"]),
    ("int8", ["--comm.codec=int8"]),
    ("int4", ["--comm.codec=int4"]),
    ("int2", ["--comm.codec=int2"]),
    ("topk1%", ["--comm.codec=topk", "--comm.topk_fraction=0.01"]),
    ("topk1%+int2", ["--comm.codec=topk", "--comm.topk_fraction=0.01", "--comm.topk_values=int2"]),
    ("powersgd-r4", ["--comm.codec=powersgd", "--comm.powersgd_rank=4"]),
    ("H10", ["--diloco.inner_steps=10"]),
    ("H50", ["--diloco.inner_steps=50"]),
    ("H100", ["--diloco.inner_steps=100"]),
    ("H10+int8", ["--diloco.inner_steps=10", "--comm.codec=int8"]),
    ("H50 lr1 m0.5", ["--diloco.inner_steps=50", "--diloco.outer_lr=1",
                      "--diloco.outer_momentum=0.5"]),
    ("H50+int8", ["--diloco.inner_steps=50", "--comm.codec=int8"]),
    ("H100+int4", ["--diloco.inner_steps=100", "--comm.codec=int4"]),
    ("H100+topk10%+int2", ["--diloco.inner_steps=100", "--comm.codec=topk",
                           "--comm.topk_fraction=0.1", "--comm.topk_values=int2"]),
    ("H50/F5 stream+int8", ["--diloco.inner_steps=50", "--diloco.fragments=5",
                            "--comm.codec=int8"]),
]
CONFIG_ARGS = dict(CONFIGS)


def inner_steps(args):
    for a in args:
        if a.startswith("--diloco.inner_steps="):
            return int(a.split("=")[1])
    return 0


def slug(name):
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def base_args(model, out_dir, run_name, steps, log_every, eval_every):
    m = MODELS[model]
    return [TESSERA, "train", os.path.join(ROOT, "configs", "demo.ini"), *m["args"],
            f"--run.out_dir={out_dir}", f"--run.name={run_name}", "--run.threads=1",
            "--run.overwrite=true", f"--train.steps={steps}",
            f"--train.warmup_steps={m['warmup']}", f"--log.every={log_every}",
            f"--eval.every={eval_every}", "--eval.batches=4", "--log.sample_tokens=0",
            "--ckpt.every=0", "--comm.timeout_s=600", "--comm.bucket_mb=0.5"]


def results(model):
    return os.path.join(ROOT, "runs", "thin_links", model)


def run(cmd, log):
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        sys.stderr.write(open(log).read()[-3000:])
        sys.exit(f"thin_links: {' '.join(cmd[:3])}... failed (exit {rc}), log {log}")
    return time.time() - t0


def pick(names):
    if not names:
        return CONFIGS
    unknown = [n for n in names if n not in CONFIG_ARGS]
    if unknown:
        sys.exit(f"thin_links: unknown config {unknown[0]} (known: {', '.join(CONFIG_ARGS)})")
    return [(n, CONFIG_ARGS[n]) for n in names]


def env():
    e = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
             OMP_NUM_THREADS="1")
    return e


def trajectories(model, names):
    m = MODELS[model]
    out = os.path.join(results(model), "trajectories")
    os.makedirs(out, exist_ok=True)
    os.environ.update(env())
    todo = pick(names)
    for i, (name, args) in enumerate(todo):
        sys.stderr.write(f"thin_links: {model} trajectory {i + 1}/{len(todo)}: {name} "
                         f"({m['steps']} steps, 4 ranks) ...\n")
        cmd = ["mpirun", "--oversubscribe", "-np", "4", "-x", "OMP_NUM_THREADS=1",
               *base_args(model, out, slug(name), m["steps"], 10, m["eval_every"]), *args]
        dt = run(cmd, os.path.join(out, slug(name) + ".log"))
        sys.stderr.write(f"thin_links:   done in {dt:.0f} s\n")


def timing(model, rate, names):
    out = os.path.join(results(model), f"timing-{rate}")
    os.makedirs(out, exist_ok=True)
    os.environ.update(env())
    os.environ.update(TESSERA_LAB_STATE="/run/tessera-lab-thin", TESSERA_LAB_PREFIX="ttl")
    lab = os.path.join(ROOT, "scripts", "lab")
    subprocess.check_call([lab, "up", "4", "--rate", str(rate)], stdout=subprocess.DEVNULL)
    try:
        hostfile = subprocess.check_output([lab, "hostfile"], text=True).strip()
        mpiargs = subprocess.check_output([lab, "mpirun-args"], text=True).split()
        todo = pick(names)
        for i, (name, args) in enumerate(todo):
            H = inner_steps(args)
            # two sync periods and a step (the first period warms up, the last step validates and
            # syncs everything), or 12 steps of data parallelism
            steps = 2 * H + 1 if H else 12
            log_every = H if H else 1
            sys.stderr.write(f"thin_links: {model} at {rate} Mbit/s {i + 1}/{len(todo)}: {name} "
                             f"({steps} steps) ...\n")
            cmd = ["mpirun", "--hostfile", hostfile, "-np", "4", *mpiargs, "-x",
                   "OMP_NUM_THREADS=1",
                   *base_args(model, out, slug(name), steps, log_every, 0), *args]
            dt = run(cmd, os.path.join(out, slug(name) + ".log"))
            sys.stderr.write(f"thin_links:   done in {dt:.0f} s\n")
    finally:
        subprocess.call([lab, "down"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def metrics(path):
    recs = {}
    for line in open(path):
        r = json.loads(line)
        recs[r["step"]] = r  # a later line for a step wins
    return [recs[k] for k in sorted(recs)]


def curve(recs):
    """(step, val_loss, cumulative bytes sent by rank 0) at each evaluation."""
    out, total, prev = [], 0.0, 0
    for r in recs:
        total += r["bytes_sent"] * (r["step"] - prev)
        prev = r["step"]
        if "val_loss" in r:
            out.append((r["step"], r["val_loss"], total))
    return out, total


def steps_to(points, target):
    """The first step (interpolated between evaluations) whose validation loss is <= target."""
    prev = None
    for s, v, _ in points:
        if v <= target:
            if prev is None or prev[1] == v:
                return float(s)
            return prev[0] + (s - prev[0]) * (prev[1] - target) / (prev[1] - v)
        prev = (s, v)
    return None


def step_time(model, rate, name):
    path = os.path.join(results(model), f"timing-{rate}", slug(name), "metrics.jsonl")
    if not os.path.exists(path):
        return None
    # the first window warms up, the last one validates (and in local SGD syncs everything); the
    # median of the others (local SGD: the one whole sync period between them)
    recs = metrics(path)[1:-1]
    if not recs:
        return None
    med = lambda k: sorted(r[k] for r in recs)[len(recs) // 2]
    return med("ms_per_step"), med("compute_ms")


def svg_lines(path, title, xlabel, series, logx=False):
    """series: [(name, [(x, y)...])]; a plain SVG line chart."""
    import math
    W, H, x0, y0, pw, ph = 760, 420, 70, 40, 500, 320
    xs = [x for _, pts in series for x, _ in pts if (x > 0 or not logx)]
    ys = [y for _, pts in series for _, y in pts]
    if not xs:
        return
    fx = (lambda v: math.log10(v)) if logx else (lambda v: v)
    xmin, xmax = fx(min(xs)), fx(max(xs))
    ymin, ymax = min(ys), max(ys)
    ymax = min(ymax, ymin + 1.5 * (sorted(ys)[len(ys) // 2] - ymin) + 0.3)
    if xmax == xmin:
        xmax = xmin + 1
    sx = lambda v: x0 + pw * (fx(v) - xmin) / (xmax - xmin)
    sy = lambda v: y0 + ph - ph * (min(v, ymax) - ymin) / (ymax - ymin)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
              "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8", "#ffbb78", "#98df8a"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           'font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{x0}" y="20" font-size="14">{title}</text>']
    for k in range(6):
        v = ymin + (ymax - ymin) * k / 5
        y = sy(v)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    for k in range(6):
        f = xmin + (xmax - xmin) * k / 5
        v = 10 ** f if logx else f
        x = x0 + pw * k / 5
        label = f"{v:.3g}"
        out.append(f'<text x="{x:.1f}" y="{y0 + ph + 16}" text-anchor="middle">{label}</text>')
    out.append(f'<text x="{x0 + pw / 2}" y="{y0 + ph + 34}" text-anchor="middle">{xlabel}</text>')
    out.append(f'<text x="16" y="{y0 + ph / 2}" transform="rotate(-90 16 {y0 + ph / 2})" '
               'text-anchor="middle">validation loss (nats/byte)</text>')
    for i, (name, pts) in enumerate(series):
        pts = [(x, y) for x, y in pts if x > 0 or not logx]
        if not pts:
            continue
        c = colors[i % len(colors)]
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="1.5"/>')
        ly = y0 + 12 + 15 * i
        out.append(f'<line x1="{x0 + pw + 12}" y1="{ly - 4}" x2="{x0 + pw + 30}" y2="{ly - 4}" '
                   f'stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{x0 + pw + 34}" y="{ly}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def report(model, rates):
    m = MODELS[model]
    trj = os.path.join(results(model), "trajectories")
    tokens_per_step = None
    rows = []
    for name, args in CONFIGS:
        path = os.path.join(trj, slug(name), "metrics.jsonl")
        if not os.path.exists(path):
            continue
        recs = metrics(path)
        if tokens_per_step is None:
            r = recs[-1]
            tokens_per_step = r["tokens_per_s"] * r["ms_per_step"] / 1e3
        pts, total = curve(recs)
        rows.append((name, args, pts, total))
    if not rows or rows[0][0] != "dp-fp32":
        sys.exit("thin_links: report needs the dp-fp32 trajectory")
    base_pts, base_total = rows[0][2], rows[0][3]
    target = base_pts[-1][1]
    steps = m["steps"]
    tokens = steps * tokens_per_step
    head = ["config", "final val loss", "vs fp32", "bytes/token (rank 0 sent)", "fewer bytes",
            "steps to fp32's final loss", "steps to within 1%"]
    for rate in rates:
        head += [f"ms/step @{rate}", f"compute util @{rate}",
                 f"wall-clock to within 1% of fp32's final loss @{rate}"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    base_time = {rate: step_time(model, rate, "dp-fp32") for rate in rates}
    for name, args, pts, total in rows:
        final = pts[-1][1]
        strict = steps_to(pts, target)
        reach = steps_to(pts, target * 1.01)
        cells = [name, f"{final:.4f}", f"{100 * (final / target - 1):+.2f}%",
                 f"{total / tokens:.3f}", f"{base_total / total:.0f}x" if total else "-",
                 f"{strict:.0f}" if strict is not None else "not reached",
                 f"{reach:.0f}" if reach is not None else "not reached"]
        for rate in rates:
            t = step_time(model, rate, name)
            if t is None:
                cells += ["-", "-", "-"]
                continue
            ms, comp = t
            cells += [f"{ms:.0f}", f"{100 * comp / ms:.0f}%"]
            bt = base_time[rate]
            base_reach = steps_to(base_pts, target * 1.01)
            if reach is None or bt is None:
                cells.append("-")
            else:
                mine = reach * ms / 1e3
                theirs = base_reach * bt[0] / 1e3
                cells.append(f"{mine:.0f} s ({theirs / mine:.1f}x sooner)")
        print("| " + " | ".join(cells) + " |")
    img = os.path.join(ROOT, "docs", "img")
    os.makedirs(img, exist_ok=True)
    svg_lines(os.path.join(img, f"thin-links-{model}-tokens.svg"),
              f"{model}: validation loss against tokens (4 ranks)", "tokens",
              [(n, [(s * tokens_per_step, v) for s, v, _ in p]) for n, _, p, _ in rows])
    svg_lines(os.path.join(img, f"thin-links-{model}-bytes.svg"),
              f"{model}: validation loss against bytes sent per rank", "bytes sent (log scale)",
              [(n, [(b, v) for _, v, b in p]) for n, _, p, _ in rows], logx=True)
    for rate in rates:
        series = []
        for n, _, p, _ in rows:
            t = step_time(model, rate, n)
            if t:
                series.append((n, [(s * t[0] / 1e3, v) for s, v, _ in p]))
        svg_lines(os.path.join(img, f"thin-links-{model}-wallclock-{rate}.svg"),
                  f"{model}: validation loss against wall-clock at {rate} Mbit/s per host",
                  "seconds (log scale)", series, logx=True)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("trajectories", "timing", "report") \
            or sys.argv[2] not in MODELS:
        sys.exit(__doc__)
    if not os.path.exists(TESSERA):
        sys.exit(f"thin_links: {TESSERA} is missing: build first (scripts/setup)")
    cmd, model = sys.argv[1], sys.argv[2]
    if cmd == "trajectories":
        trajectories(model, sys.argv[3:])
    elif cmd == "timing":
        if len(sys.argv) < 4:
            sys.exit(__doc__)
        timing(model, int(sys.argv[3]), sys.argv[4:])
    else:
        report(model, [int(r) for r in sys.argv[3:]])


if __name__ == "__main__":
    main()
