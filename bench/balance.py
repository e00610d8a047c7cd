#!/usr/bin/env python3
"""bench/balance.py — mixed and slow nodes: work that follows measured speed, in the lab.

  bench/balance.py run [--steps N]     every measurement below (about 6 minutes on 2 cores)
  bench/balance.py report              the table and plots from the runs kept in runs/balance

Four lab hosts (scripts/lab up 4 --cpu 0.4,0.4,0.2,0.1: speeds 1, 1, 0.5, 0.25 set by cgroup CPU
quotas, links unlimited), one rank each, the demo model (configs/demo.ini, 0.8M parameters) with a
global batch of 44 sequences in micro-batches of 4:

  standalone   each host alone (1 rank, the whole batch): its tokens/s; their sum is what the
               four hosts could give at best
  dp           data parallelism with balancing (the default) and with equal shares
               (balance.on = false)
  diloco       local SGD (8 inner steps) with balancing and with equal shares
  slowed       data parallelism with balancing; h1 drops to half its quota after step 20
               (scripts/lab slow h1 0.5): tokens/s before and after, and the steps until the
               shares follow
  equal        the same data-parallel run on 4 equal hosts (0.4 cores each): its final
               validation loss against the mixed run's at equal tokens

Throughput is the median of the per-step tokens/s in metrics.jsonl after the first 10 steps (the
warm-up and the first re-balances). Needs root (the lab), data/fortunes (scripts/demo prepares
it) and a built tessera (build/tessera). Writes runs/balance/ and docs/img/balance-*.svg.
"""

import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
TESSERA = os.path.join(ROOT, "build", "tessera")
LAB = os.path.join(ROOT, "scripts", "lab")
OUT = os.path.join(ROOT, "runs", "balance")
CPUS = [0.4, 0.4, 0.2, 0.1]
GB = 44


def env():
    e = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
             OMP_NUM_THREADS="1", TESSERA_LAB_STATE="/run/tessera-lab-balance",
             TESSERA_LAB_PREFIX="tbal")
    return e


def lab(*args, capture=False):
    if capture:
        return subprocess.check_output([LAB, *args], text=True, env=env()).strip()
    subprocess.check_call([LAB, *args], env=env(), stdout=subprocess.DEVNULL)


def train_cmd(name, steps, hosts, extra):
    hostfile = lab("hostfile", capture=True)
    mpiargs = lab("mpirun-args", capture=True).split()
    return ["mpirun", "--hostfile", hostfile, "-np", str(len(hosts)), "--host", ",".join(hosts),
            *mpiargs, "-x", "OMP_NUM_THREADS=1", TESSERA, "train",
            os.path.join(ROOT, "configs", "demo.ini"), f"--run.out_dir={OUT}",
            f"--run.name={name}", "--run.threads=1", "--run.overwrite=true",
            f"--train.steps={steps}", f"--train.global_batch={GB}", "--train.micro_batch=4",
            "--train.warmup_steps=5", "--log.every=1", "--eval.every=0", "--eval.batches=4",
            "--log.sample_tokens=0", "--ckpt.every=0", "--comm.timeout_s=600", *extra]


def run(name, steps, hosts, extra, during=None):
    cmd = train_cmd(name, steps, hosts, extra)
    log = os.path.join(OUT, name + ".log")
    sys.stderr.write(f"balance: {name} ({steps} steps on {', '.join(hosts)}) ...\n")
    t0 = time.time()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env())
        if during:
            threading.Thread(target=during, daemon=True).start()
        rc = p.wait()
    if rc != 0:
        sys.stderr.write(open(log).read()[-3000:])
        sys.exit(f"balance: {name} failed (exit {rc}), log {log}")
    sys.stderr.write(f"balance:   done in {time.time() - t0:.0f} s\n")


def records(name):
    path = os.path.join(OUT, name, "metrics.jsonl")
    return [json.loads(line) for line in open(path)]


def median_tps(name, first=11, last=None):
    recs = [r for r in records(name) if r["step"] >= first and (last is None or r["step"] <= last)
            and "val_loss" not in r]
    v = sorted(r["tokens_per_s"] for r in recs)
    return v[len(v) // 2] if v else 0.0


def final_val(name):
    return [r for r in records(name) if "val_loss" in r][-1]["val_loss"]


def cmd_run(steps):
    os.makedirs(OUT, exist_ok=True)
    subprocess.call([LAB, "down"], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lab("up", "4", "--cpu", ",".join(str(c) for c in CPUS))
    try:
        hosts = ["h1", "h2", "h3", "h4"]
        speeds = lab("speeds", "--seconds", "5", capture=True)
        with open(os.path.join(OUT, "speeds.txt"), "w") as f:
            f.write(speeds + "\n")
        sys.stderr.write(speeds + "\n")
        for h in hosts:
            run(f"standalone_{h}", 8 if h != "h4" else 6, [h], [])
        run("dp_balanced", steps, hosts, [])
        run("dp_equal", steps, hosts, ["--balance.on=false"])
        run("diloco_balanced", steps, hosts, ["--diloco.inner_steps=8"])
        run("diloco_equal", steps, hosts, ["--diloco.inner_steps=8", "--balance.on=false"])

        def slow_h1():
            path = os.path.join(OUT, "slowed", "metrics.jsonl")
            while True:
                try:
                    last = open(path).read().strip().split("\n")[-1]
                    step = json.loads(last)["step"]
                except (OSError, ValueError, KeyError, IndexError):
                    step = 0
                if step >= 20:
                    lab("slow", "h1", "0.5")
                    with open(os.path.join(OUT, "slowed.at"), "w") as f:
                        f.write(f"{step} {time.time()}\n")
                    return
                time.sleep(0.01)
        try:
            os.unlink(os.path.join(OUT, "slowed", "metrics.jsonl"))
        except OSError:
            pass
        run("slowed", steps + 20, hosts, [], during=slow_h1)
        lab("slow", "h1", "1")
        for h in hosts:
            lab("cpu", h, "0.4")
        run("equal_speed", steps, hosts, [])
    finally:
        subprocess.call([LAB, "down"], env=env(), stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    cmd_report()


def svg_begin(W, H, x0, title):
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            'font-family="sans-serif" font-size="11">',
            '<rect width="100%" height="100%" fill="white"/>',
            f'<text x="{x0}" y="20" font-size="14">{title}</text>']


def svg_end(path, out):
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def svg_bars(path, title, groups):
    """groups: [(label, [(name, value, color)])]: a plain SVG bar chart"""
    W, H, x0, y0, pw, ph = 760, 360, 70, 40, 640, 250
    vmax = max(v for _, bars in groups for _, v, _ in bars) * 1.15
    out = svg_begin(W, H, x0, title)
    for k in range(6):
        v = vmax * k / 5
        y = y0 + ph - ph * v / vmax
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    gw = pw / len(groups)
    for g, (label, bars) in enumerate(groups):
        bw = gw * 0.8 / len(bars)
        for i, (name, v, color) in enumerate(bars):
            x = x0 + g * gw + gw * 0.1 + i * bw
            h = ph * v / vmax
            out.append(f'<rect x="{x:.1f}" y="{y0 + ph - h:.1f}" width="{bw - 2:.1f}" '
                       f'height="{h:.1f}" fill="{color}"/>')
            out.append(f'<text x="{x + bw / 2:.1f}" y="{y0 + ph - h - 4:.1f}" '
                       f'text-anchor="middle">{v:.0f}</text>')
            out.append(f'<text x="{x + bw / 2:.1f}" y="{y0 + ph + 14 + 12 * (i % 2):.1f}" '
                       f'text-anchor="middle" font-size="10">{name}</text>')
        out.append(f'<text x="{x0 + g * gw + gw / 2:.1f}" y="{y0 + ph + 48}" '
                   f'text-anchor="middle">{label}</text>')
    out.append(f'<text x="16" y="{y0 + ph / 2}" transform="rotate(-90 16 {y0 + ph / 2})" '
               'text-anchor="middle">tokens/s</text>')
    svg_end(path, out)


def svg_timeline(path, title, recs, at):
    """tokens/s per step (line) and rank 0's share (dashed, right axis) of the slowed run"""
    W, H, x0, y0, pw, ph = 760, 360, 70, 40, 600, 260
    steps = [r["step"] for r in recs]
    tps = [r["tokens_per_s"] for r in recs]
    shares = [r["shares"] for r in recs]
    smax, tmax = max(steps), max(tps) * 1.1
    sx = lambda s: x0 + pw * (s - 1) / max(1, smax - 1)
    sy = lambda v: y0 + ph - ph * v / tmax
    qy = lambda q: y0 + ph - ph * q / 24
    out = svg_begin(W, H, x0, title)
    for k in range(6):
        v = tmax * k / 5
        out.append(f'<line x1="{x0}" y1="{sy(v):.1f}" x2="{x0 + pw}" y2="{sy(v):.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        q = 24 * k / 5
        out.append(f'<text x="{x0 + pw + 6}" y="{qy(q) + 4:.1f}">{q:.0f}</text>')
    for k in range(0, smax + 1, 10):
        out.append(f'<text x="{sx(max(k, 1)):.1f}" y="{y0 + ph + 16}" '
                   f'text-anchor="middle">{k}</text>')
    out.append(f'<text x="{x0 + pw / 2}" y="{y0 + ph + 34}" text-anchor="middle">step</text>')
    out.append(f'<line x1="{sx(at):.1f}" y1="{y0}" x2="{sx(at):.1f}" y2="{y0 + ph}" '
               'stroke="#d62728" stroke-dasharray="4,3"/>')
    out.append(f'<text x="{sx(at) + 4:.1f}" y="{y0 + 12}" fill="#d62728">h1 at half speed</text>')
    d = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in zip(steps, tps))
    out.append(f'<polyline points="{d}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    colors = ["#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
    for rank in range(4):
        d = " ".join(f"{sx(s):.1f},{qy(q[rank]):.1f}" for s, q in zip(steps, shares))
        out.append(f'<polyline points="{d}" fill="none" stroke="{colors[rank]}" '
                   'stroke-width="1.2" stroke-dasharray="5,3"/>')
        out.append(f'<text x="{x0 + 8 + 90 * rank}" y="{y0 + ph + 50}" '
                   f'fill="{colors[rank]}">share of h{rank + 1}</text>')
    out.append(f'<text x="{x0 + 380}" y="{y0 + ph + 50}" fill="#1f77b4">tokens/s</text>')
    out.append(f'<text x="16" y="{y0 + ph / 2}" transform="rotate(-90 16 {y0 + ph / 2})" '
               'text-anchor="middle">tokens/s</text>')
    out.append(f'<text x="{W - 12}" y="{y0 + ph / 2}" transform="rotate(90 {W - 12} '
               f'{y0 + ph / 2})" text-anchor="middle">sequences per step</text>')
    svg_end(path, out)


def cmd_report():
    solo = {h: median_tps(f"standalone_{h}", first=3) for h in ["h1", "h2", "h3", "h4"]}
    total = sum(solo.values())
    rows = [("standalone sum", total)]
    for name in ["dp_balanced", "dp_equal", "diloco_balanced", "diloco_equal", "equal_speed"]:
        rows.append((name, median_tps(name)))
    print("standalone tokens/s: " + ", ".join(f"{h} {v:.0f}" for h, v in solo.items()) +
          f" (sum {total:.0f})")
    sp = [r for r in records("dp_balanced") if "speeds" in r][-1]["speeds"]
    print("speeds tessera measured (dp_balanced, samples/s of forward and backward): " +
          ", ".join(f"h{i + 1} {v:.1f} ({v / max(sp):.2f})" for i, v in enumerate(sp)))
    print("| run | tokens/s | of the standalone sum |")
    print("|---|---|---|")
    for name, v in rows:
        print(f"| {name} | {v:.0f} | {100 * v / total:.1f}% |")
    at_step = int(open(os.path.join(OUT, "slowed.at")).read().split()[0])
    recs = [r for r in records("slowed") if "shares" in r]
    before = median_tps("slowed", first=11, last=at_step)
    after = median_tps("slowed", first=at_step + 11)
    base = recs[[r["step"] for r in recs].index(at_step)]["shares"]
    moved = next((r["step"] for r in recs if r["step"] > at_step and r["shares"][0] < base[0]),
                 None)
    # what the hosts could give after the slow-down: h1 at half its standalone speed
    total_after = total - solo["h1"] / 2
    print(f"slowed: h1 to half after step {at_step}: {before:.0f} tokens/s before "
          f"({100 * before / total:.1f}% of the standalone sum), {after:.0f} after "
          f"({100 * after / total_after:.1f}% of the sum with h1 halved); global tokens/s "
          f"{100 * (after / before - 1):+.1f}% (the hosts' summed speed "
          f"{100 * (total_after / total - 1):+.1f}%); h1's share first fell at step {moved} "
          f"({'-' if moved is None else moved - at_step} steps later)")
    vb, ve = final_val("dp_balanced"), final_val("equal_speed")
    print(f"final validation loss: mixed hosts {vb:.4f}, equal hosts {ve:.4f} "
          f"({100 * (vb / ve - 1):+.3f}%)")
    img = os.path.join(ROOT, "docs", "img")
    os.makedirs(img, exist_ok=True)
    b, e, s = "#1f77b4", "#ff7f0e", "#7f7f7f"
    svg_bars(os.path.join(img, "balance-throughput.svg"),
             "4 lab hosts at speeds 1, 1, 0.5, 0.25: tokens/s",
             [("hosts alone", [("sum", total, s)]),
              ("data parallel", [("balanced", rows[1][1], b), ("equal shares", rows[2][1], e)]),
              ("local SGD (H=8)", [("balanced", rows[3][1], b), ("equal shares", rows[4][1], e)])])
    svg_timeline(os.path.join(img, "balance-slowed.svg"),
                 "h1 slowed to half mid-run: tokens/s and shares (data parallel, balanced)", recs,
                 at_step)


def main(argv):
    if not argv or argv[0] not in ("run", "report"):
        sys.exit(__doc__)
    if argv[0] == "report":
        cmd_report()
        return 0
    steps = 40
    if len(argv) == 3 and argv[1] == "--steps":
        steps = int(argv[2])
    cmd_run(steps)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
