#!/usr/bin/python3
"""bench_cpu.py — training-step throughput of tessera against PyTorch on the CPU, side by side.

For each model shape and thread count it runs `tessera train` (A) and bench/torch_gpt2.py (B)
alternately, A B A B ..., one process per run, each run a handful of training steps. A run's
figure is the median ms/step of its timed steps (the first steps are warm-up; tessera's last
step also validates, so it is left out too); the table shows the median over the runs of each
side and the median of the per-pair ratios tessera/PyTorch (tokens/s).

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the environment of every benchmarked
command, on both sides: they pin OpenBLAS to older kernels. Where OpenBLAS then does not
recognise the CPU and falls back to its generic kernels, one explicit core type is set for both
sides instead (pick_coretype; docs/benchmarks.md).

Normally started by bench/run_cpu.sh, which builds tessera first. Standard library only.
"""

import argparse
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The two shapes. A tessera run is `warmup` steps, then `timed` ones, then a last step (which
# validates); a PyTorch run is warmup + timed steps.
SHAPES = {
    "demo": dict(label="demo (L4 H4 C128 T128 V256, B8)", layers=4, heads=4, width=128,
                 seq_len=128, vocab=256, batch=8, warmup=3, timed=10),
    "gpt2": dict(label="GPT-2 124M (L12 H12 C768 T256 V50257, B4)", layers=12, heads=12,
                 width=768, seq_len=256, vocab=50257, batch=4, warmup=1, timed=1),
}

SHARD_MAGIC_U16, SHARD_VERSION_U16, HEADER_INTS = 20240520, 1, 256


def source_version():
    """The commit measured, and the source files that differ from it (tessera's own code)."""
    def git(*a):
        r = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else ""
    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = git("status", "--porcelain", "--", "kernels", "models", "runtime", "collectives",
                "CMakeLists.txt")
    files = [line[3:] for line in dirty.splitlines() if line.strip()]
    return head + (f" + uncommitted changes in {', '.join(files)}" if files else "")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bench_env(extra=None):
    """The environment of a benchmarked command: OpenBLAS's core pinning (OPENBLAS_CORETYPE,
    OPENBLAS_L2_SIZE) and thread variables removed, then the benchmark's own settings added
    (BENCH_ENV: the OpenBLAS core chosen for both sides, see pick_coretype)."""
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "ATEN_CPU_CAPABILITY"):
        env.pop(k, None)
    env.update(BENCH_ENV)
    env.update(extra or {})
    return env


BENCH_ENV = {}

PROBE_CORE = ("import ctypes; l = ctypes.CDLL('libopenblas.so.0'); "
              "l.openblas_get_corename.restype = ctypes.c_char_p; "
              "print(l.openblas_get_corename().decode())")


def openblas_core(env):
    """The kernel set OpenBLAS picks when it loads with this environment."""
    res = subprocess.run([sys.executable, "-c", PROBE_CORE], env=env, capture_output=True,
                         text=True)
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def pick_coretype(choice):
    """OPENBLAS_CORETYPE for both sides. 'auto': none, unless OpenBLAS does not recognise the
    CPU and falls back to its generic Prescott (SSE3) kernels, several times slower; then the
    newest kernel set the CPU can run that this OpenBLAS has (SkylakeX on AVX-512, else
    Haswell). 'none': always unset. Anything else: that name."""
    BENCH_ENV.clear()
    detected = openblas_core(bench_env())
    if choice == "auto":
        flags = Path("/proc/cpuinfo").read_text()
        if detected == "Prescott" and " avx2" in flags:
            choice = "SkylakeX" if " avx512f" in flags else "Haswell"
        else:
            choice = "none"
    if choice != "none":
        BENCH_ENV["OPENBLAS_CORETYPE"] = choice
    return detected, openblas_core(bench_env())


# ---------------------------------------------------------------------------------------------
# data

def write_shard(path, tokens):
    """llm.c's uint16 shard: int32 header[256] (magic, version, count, zeros), then tokens."""
    header = [0] * HEADER_INTS
    header[0], header[1], header[2] = SHARD_MAGIC_U16, SHARD_VERSION_U16, len(tokens)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack(f"<{HEADER_INTS}i", *header))
        f.write(struct.pack(f"<{len(tokens)}H", *tokens))
    tmp.replace(path)


def synthetic_tokens(n, vocab, seed):
    """n tokens in [0, vocab) from a 64-bit LCG: reproducible, no numpy needed."""
    out, s = [], seed
    for _ in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        out.append((s >> 33) % vocab)
    return out


def prepare_data(tessera, work):
    """Byte shards of the fortunes corpus (demo shape) and synthetic GPT-2 token shards."""
    fortunes = work / "fortunes"
    if not (fortunes / "val_000.bin").exists():
        log(f"tessera prepare --out {fortunes}")
        subprocess.run([str(tessera), "prepare", "--out", str(fortunes)], check=True,
                       stdout=subprocess.DEVNULL)
    gpt2 = work / "gpt2tok"
    if not (gpt2 / "val_000.bin").exists():
        log(f"writing synthetic uint16 token shards to {gpt2}")
        gpt2.mkdir(parents=True, exist_ok=True)
        write_shard(gpt2 / "train_000.bin", synthetic_tokens(1 << 17, 50257, 1))
        write_shard(gpt2 / "val_000.bin", synthetic_tokens(1 << 14, 50257, 2))
    return {"demo": fortunes, "gpt2": gpt2}


# ---------------------------------------------------------------------------------------------
# one run of each side

def run_tessera(args, shape, threads, data_dir, run_name):
    s = SHAPES[shape]
    # warm-up, timed steps, and the last step, which also validates (not timed)
    steps = s["warmup"] + s["timed"] + 1
    out_dir = args.work / "runs"
    cmd = [str(args.tessera), "train", str(REPO / "configs/demo.ini"),
           f"--run.out_dir={out_dir}", f"--run.name={run_name}", "--run.backend=cpu",
           f"--run.threads={threads}",
           f"--model.layers={s['layers']}", f"--model.heads={s['heads']}",
           f"--model.width={s['width']}", f"--model.seq_len={s['seq_len']}",
           f"--model.vocab={s['vocab']}",
           f"--data.train={data_dir}/train_*.bin", f"--data.val={data_dir}/val_*.bin",
           "--data.tokenizer=byte",
           f"--train.steps={steps}", f"--train.global_batch={s['batch']}",
           f"--train.micro_batch={s['batch']}",
           "--log.every=1", "--eval.every=1000000000", "--eval.batches=1",
           "--log.sample_tokens=0"]
    res = subprocess.run(cmd, env=bench_env(), capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"tessera failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    rows = [json.loads(line) for line in open(out_dir / run_name / "metrics.jsonl")]
    (out_dir / run_name / "model.h5").unlink(missing_ok=True)  # 500 MB at 124M, not needed
    ms = [r["ms_per_step"] for r in rows]
    assert len(ms) == steps, f"expected {steps} metric rows, got {len(ms)}"
    params = re.search(r"(\d+) parameters", res.stderr + res.stdout)
    return {"ms": ms[s["warmup"]:s["warmup"] + s["timed"]], "all_ms": ms,
            "params": int(params.group(1)) if params else None}


def torch_env_and_args(threads, cfg):
    """PyTorch's set-ups. Threads 'blas': torch.set_num_threads(1), OPENBLAS_NUM_THREADS=N
    (the matmuls threaded, everything else not); 'torch': torch.set_num_threads(N) with
    OpenBLAS following the OpenMP pool. cap 'avx512': ATEN_CPU_CAPABILITY=avx512 (Debian's
    torch runs its own kernels with AVX2 by default)."""
    env = {"ATEN_CPU_CAPABILITY": "avx512"} if cfg["cap"] == "avx512" else {}
    if cfg["threads_mode"] == "blas":
        env["OPENBLAS_NUM_THREADS"] = str(threads)
        return env, ["--torch-threads", "1"]
    return env, ["--torch-threads", str(threads)]


def run_torch(args, shape, threads, cfg):
    s = SHAPES[shape]
    extra_env, thread_args = torch_env_and_args(threads, cfg)
    cmd = [args.python, str(REPO / "bench/torch_gpt2.py"),
           "--layers", str(s["layers"]), "--heads", str(s["heads"]), "--width", str(s["width"]),
           "--seq-len", str(s["seq_len"]), "--vocab", str(s["vocab"]), "--batch", str(s["batch"]),
           "--steps", str(s["warmup"] + s["timed"]), "--attention", cfg["attention"],
           "--foreach", str(cfg["foreach"])] + thread_args
    res = subprocess.run(cmd, env=bench_env(extra_env), capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"torch_gpt2.py failed ({res.returncode}): {' '.join(cmd)}\n"
                 f"{res.stderr[-2000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return {"ms": out["ms_per_step"][s["warmup"]:], "all_ms": out["ms_per_step"],
            "params": out["params"]}


# ---------------------------------------------------------------------------------------------
# figures

def flops_per_token(s, n_params):
    """6 N + 12 L H Q T, N without the position embedding (the tied wte counts once)."""
    n = n_params - s["seq_len"] * s["width"]
    q = s["width"] // s["heads"]
    return 6 * n + 12 * s["layers"] * s["heads"] * q * s["seq_len"]


def cpu_clock_ghz():
    """The clock assumed for the peak: the nominal frequency in the model name if it has one,
    else /proc/cpuinfo's 'cpu MHz' (what the hypervisor reports)."""
    text = Path("/proc/cpuinfo").read_text()
    name = re.search(r"model name\s*:\s*(.*)", text)
    m = re.search(r"@\s*([\d.]+)GHz", name.group(1)) if name else None
    if m:
        return float(m.group(1)), "model name"
    mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", text)
    return (float(mhz.group(1)) / 1000, "/proc/cpuinfo cpu MHz") if mhz else (None, "unknown")


def measured_clock_ghz(probe, runs=3):
    """The best of a few runs of bench/clock_probe.c (the scalar clock of a core, turbo
    included), or None without the probe. Another process on the core makes it read low, so the
    benchmark samples it between runs and keeps the highest figure."""
    if not probe or not probe.exists():
        return None
    return max(float(subprocess.run([str(probe)], capture_output=True, text=True,
                                    check=True).stdout) for _ in range(runs))


def peak_flops(threads, ghz):
    """cores x 2 FMA pipes x 16 fp32 lanes (AVX-512) x 2 flops per FMA x clock."""
    return threads * 2 * 16 * 2 * ghz * 1e9


def others_busy(seconds=0.3):
    """Cores kept busy by other processes, sampled from /proc/stat while this benchmark runs
    nothing (between two runs): the noise a run is about to meet."""
    def sample():
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = f[3] + (f[4] if len(f) > 4 else 0)
        return sum(f), idle
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(t1 - t0, 1))


def wait_quiet(max_wait, threshold=0.5):
    """Wait up to max_wait seconds for other processes to use less than `threshold` cores;
    return the cores they used at the last look."""
    t0 = time.time()
    busy = others_busy()
    while busy >= threshold and time.time() - t0 < max_wait:
        busy = others_busy(1.0)
    return busy


def median_run(run):
    return statistics.median(run["ms"])


# ---------------------------------------------------------------------------------------------
# PyTorch's best configuration, found by trying (short runs, alternated, median of each)

# the set-up to start from, then one change at a time (with one thread, "torch" and "blas" are
# the same thing and only the base is tried)
TORCH_BASE = {"threads_mode": "torch", "attention": "manual", "foreach": 1, "cap": "default"}
TORCH_VARIANTS = [{}, {"threads_mode": "blas"}, {"attention": "sdpa"}, {"foreach": 0},
                  {"cap": "avx512"}]


def torch_config(text):
    mode, attn, fe, cap = text.split(",")
    return {"threads_mode": mode, "attention": attn, "foreach": int(fe), "cap": cap}


def describe_torch(cfg, threads):
    t = (f"torch.set_num_threads(1) + OPENBLAS_NUM_THREADS={threads}"
         if cfg["threads_mode"] == "blas" else f"torch.set_num_threads({threads})")
    cap = "ATEN_CPU_CAPABILITY=avx512" if cfg["cap"] == "avx512" else "default ATen kernels (AVX2)"
    return f"{t}, attention {cfg['attention']}, AdamW foreach={cfg['foreach']}, {cap}"


def tune_torch(args, shape, threads):
    """Try the candidates (round robin, tune_reps runs each); return the fastest and the log."""
    cands = [dict(TORCH_BASE, **v) for v in TORCH_VARIANTS
             if threads > 1 or "threads_mode" not in v]
    times = [[] for _ in cands]
    for _ in range(args.tune_reps):
        for i, c in enumerate(cands):
            wait_quiet(args.wait_quiet)
            times[i].append(median_run(run_torch(args, shape, threads, c)))
    lines = []
    for c, t in zip(cands, times):
        lines.append(f"{describe_torch(c, threads)}: {statistics.median(t):.1f} ms/step "
                     f"(runs: {', '.join(f'{x:.1f}' for x in t)})")
        log(f"  tune {shape} x{threads}: {lines[-1]}")
    best = min(range(len(cands)), key=lambda i: statistics.median(times[i]))
    return cands[best], lines


# ---------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tessera", type=Path, default=REPO / "build-bench/tessera",
                   help="the tessera binary to measure")
    p.add_argument("--python", default="/usr/bin/python3", help="a python that imports torch")
    p.add_argument("--work", type=Path, default=REPO / "build-bench/bench-work",
                   help="folder for the data shards and run directories")
    p.add_argument("--shapes", default="demo,gpt2", help="comma-separated: demo, gpt2")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts per process")
    p.add_argument("--reps", type=int, default=5, help="runs of each side (A B A B ...)")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="before each run, wait up to this long for other processes to use less "
                        "than half a core (a shared machine)")
    p.add_argument("--gpt2-batch", type=int, default=SHAPES["gpt2"]["batch"],
                   help="sequences per step of the 124M shape")
    p.add_argument("--torch-config", default="torch,manual,1,default",
                   help="THREADS,ATTENTION,FOREACH,CAP for PyTorch (blas|torch, manual|sdpa, 1|0, "
                        "default|avx512), or 'tune' to try the candidates first and keep the "
                        "fastest for each shape and thread count")
    p.add_argument("--tune-reps", type=int, default=2,
                   help="runs of each PyTorch candidate with --torch-config tune")
    p.add_argument("--openblas-coretype", default="auto",
                   help="OPENBLAS_CORETYPE for both sides: auto (see pick_coretype), none, or "
                        "a name such as SkylakeX")
    p.add_argument("--clock-probe", type=Path, help="bench/clock_probe.c, built: also gives MFU "
                   "against the clock it measures")
    p.add_argument("--source-label", help="what tessera binary this is, for the record (default: "
                   "the checkout's commit and its uncommitted changes)")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    p.add_argument("--print-openblas-env", action="store_true",
                   help="print the OpenBLAS variables the benchmark would set (NAME=VALUE, "
                        "possibly none) and exit; bench/profile_ops.sh uses it")
    return p.parse_args(argv)


def print_table(results, reps, ghz, ghz_run):
    def pct(x):
        return f"{100 * x:.0f}%" if x is not None else "n/a"

    print()
    print(f"tokens/s of full training steps (forward, backward, AdamW): median of {reps} "
          f"alternated runs per side; ratio = median over the pairs of tessera/PyTorch tokens/s "
          f"[min-max]; MFU = (6N + 12LHQT) flop/token x tokens/s / (threads x 64 flop/cycle x "
          f"clock), tessera / PyTorch, at {ghz} GHz (/proc/cpuinfo)"
          + (f" and at {ghz_run:.2f} GHz (measured)" if ghz_run else ""))
    cols = ["shape", "threads", "tessera tok/s", "PyTorch tok/s", "tessera ms/step",
            "PyTorch ms/step", "ratio tessera/PyTorch", f"MFU at {ghz} GHz"]
    if ghz_run:
        cols.append(f"MFU at {ghz_run:.2f} GHz")
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    for r in results:
        line = (f"| {r['label']} | {r['threads']} | {r['tessera_tok_s']:.0f} | "
                f"{r['torch_tok_s']:.0f} | {r['tessera_ms']:.1f} | {r['torch_ms']:.1f} | "
                f"**{r['ratio_pairs_median']:.2f}** [{r['ratio_pairs_min']:.2f}-"
                f"{r['ratio_pairs_max']:.2f}] | {pct(r['tessera_mfu'])} / {pct(r['torch_mfu'])} |")
        if ghz_run:
            line += (f" {pct(r['tessera_mfu_measured_clock'])} / "
                     f"{pct(r['torch_mfu_measured_clock'])} |")
        print(line)
    print()
    for r in results:
        busy = [x for pair in r["others_busy_cores"] for x in pair]
        print(f"- {r['shape']} x{r['threads']}: PyTorch as {r['torch_config']}; "
              f"{r['params']} parameters, {r['flops_per_token'] / 1e6:.1f} MFLOP/token; "
              f"other processes kept {statistics.median(busy):.1f} cores busy (median; max "
              f"{max(busy):.1f}) just before the runs")


def main(argv):
    args = parse_args(argv)
    if args.print_openblas_env:
        pick_coretype(args.openblas_coretype)
        print(" ".join(f"{k}={v}" for k, v in BENCH_ENV.items()))
        return 0
    SHAPES["gpt2"]["batch"] = args.gpt2_batch
    SHAPES["gpt2"]["label"] = re.sub(r"B\d+\)", f"B{args.gpt2_batch})", SHAPES["gpt2"]["label"])
    args.work.mkdir(parents=True, exist_ok=True)
    shapes = args.shapes.split(",")
    thread_counts = [int(t) for t in args.threads.split(",")]
    t_start = time.time()
    version = args.source_label or source_version()
    log(f"tessera source: {version}")
    ghz, ghz_src = cpu_clock_ghz()
    detected, core = pick_coretype(args.openblas_coretype)
    clocks = [measured_clock_ghz(args.clock_probe, 5)]
    log(f"clock for the MFU peak: {ghz} GHz ({ghz_src})"
        + (f"; measured clock of a core now: {clocks[0]:.2f} GHz" if clocks[0] else ""))
    log(f"environment of both sides: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset; OpenBLAS "
        f"then picks core '{detected}'"
        + (f"; set OPENBLAS_CORETYPE={BENCH_ENV['OPENBLAS_CORETYPE']} -> core '{core}'"
           if BENCH_ENV else ""))
    data = prepare_data(args.tessera, args.work)

    results, tuning = [], {}
    for shape in shapes:
        s = SHAPES[shape]
        for threads in thread_counts:
            if args.torch_config == "tune":
                log(f"{shape} x{threads}: trying PyTorch configurations")
                tcfg, tuning[f"{shape} x{threads}"] = tune_torch(args, shape, threads)
            else:
                tcfg = torch_config(args.torch_config)
            log(f"{shape} x{threads}: PyTorch as {describe_torch(tcfg, threads)}")
            runs_a, runs_b = [], []
            for r in range(args.reps):
                busy = wait_quiet(args.wait_quiet)
                a = run_tessera(args, shape, threads, data[shape], f"bench-{shape}-t{threads}")
                a["others_busy"] = busy
                log(f"{shape} x{threads} run {r + 1}/{args.reps}: tessera "
                    f"{median_run(a):.1f} ms/step (other processes: {busy:.1f} cores busy)")
                busy = wait_quiet(args.wait_quiet)
                b = run_torch(args, shape, threads, tcfg)
                b["others_busy"] = busy
                runs_a.append(a)
                runs_b.append(b)
                log(f"{shape} x{threads} run {r + 1}/{args.reps}: pytorch "
                    f"{median_run(b):.1f} ms/step (other processes: {busy:.1f} cores busy); "
                    f"ratio tessera/PyTorch {median_run(b) / median_run(a):.2f}")
                clocks.append(measured_clock_ghz(args.clock_probe, 1))
            if runs_a[0]["params"] != runs_b[0]["params"]:
                log(f"WARNING: parameter counts differ: tessera {runs_a[0]['params']}, "
                    f"pytorch {runs_b[0]['params']}")
            tokens = s["batch"] * s["seq_len"]
            ms_a = statistics.median(median_run(x) for x in runs_a)
            ms_b = statistics.median(median_run(x) for x in runs_b)
            ratios = [median_run(b) / median_run(a) for a, b in zip(runs_a, runs_b)]
            fpt = flops_per_token(s, runs_b[0]["params"])
            peak = peak_flops(threads, ghz) if ghz else None
            results.append({
                "shape": shape, "label": s["label"], "threads": threads,
                "torch_config": describe_torch(tcfg, threads), "tokens_per_step": tokens,
                "params": runs_b[0]["params"], "flops_per_token": fpt,
                "tessera_ms": ms_a, "torch_ms": ms_b,
                "tessera_tok_s": tokens / ms_a * 1e3, "torch_tok_s": tokens / ms_b * 1e3,
                "ratio_pairs_median": statistics.median(ratios),
                "ratio_pairs_min": min(ratios), "ratio_pairs_max": max(ratios),
                "tessera_mfu": fpt * tokens / ms_a * 1e3 / peak if peak else None,
                "torch_mfu": fpt * tokens / ms_b * 1e3 / peak if peak else None,

                "tessera_runs_ms": [x["all_ms"] for x in runs_a],
                "torch_runs_ms": [x["all_ms"] for x in runs_b],
                "others_busy_cores": [[a["others_busy"], b["others_busy"]]
                                      for a, b in zip(runs_a, runs_b)],
            })

    ghz_run = max(clocks) if clocks[0] else None
    for r in results:
        peak_run = peak_flops(r["threads"], ghz_run) if ghz_run else None
        for side in ("tessera", "torch"):
            r[f"{side}_mfu_measured_clock"] = (r["flops_per_token"] * r[f"{side}_tok_s"] / peak_run
                                               if peak_run else None)
    if ghz_run:
        log(f"measured clock: {ghz_run:.2f} GHz (highest of {len(clocks)} samples taken between "
            "runs)")
    print_table(results, args.reps, ghz, ghz_run)
    log(f"done in {time.time() - t_start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "argv": argv, "clock_ghz": ghz,
            "clock_measured_ghz": ghz_run, "source": version,
            "clock_source": ghz_src, "openblas_detected": detected, "openblas_core": core,
            "bench_env": BENCH_ENV, "tuning": tuning, "results": results}, indent=1))
        log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
