#!/usr/bin/env bash
# bench/lab_bandwidth.sh — step time, its breakdown and compute utilization of data-parallel
# training across 2 lab hosts (scripts/lab) whose links are capped at 10, 100 and 1000 Mbit/s,
# with fp32 gradients, with and without the reducer's overlap of communication and backward.
#
#   bench/lab_bandwidth.sh [STEPS] [SVG]     (default 12 steps; needs root and data/fortunes)
#
# The demo model (0.8 M parameters: 3.2 MB of fp32 gradients per step), 1 rank x 1 thread per host
# (2 hosts on a 2-core machine: one core each), buckets of 0.5 MiB (7 per step, so that overlap
# can start before backward ends). Medians over the logged steps after the first.
# compute utilization = compute time / wall time of a step. Writes a bar chart to SVG (default
# docs/img/lab-bandwidth.svg) and prints a Markdown table. RANK_ENV="NAME=VALUE ..." is passed to
# every rank (mpirun -x), e.g. the ring's cut: RANK_ENV="TESSERA_COMM_SEGMENT=524288
# TESSERA_COMM_WINDOW=2".
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-12}
SVG=${2:-docs/img/lab-bandwidth.svg}
export TESSERA_LAB_STATE=/run/tessera-lab-bench TESSERA_LAB_PREFIX=tlb
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -d data/fortunes ] || build/tessera prepare --out data/fortunes >/dev/null
OUT=$(mktemp -d)
trap 'scripts/lab down >/dev/null 2>&1; rm -rf "$OUT"' EXIT
scripts/lab up 2 >/dev/null
printf 'h1 slots=1\nh2 slots=1\n' >"$OUT/hosts"
read -r -a MPIARGS <<<"$(scripts/lab mpirun-args)"
for v in ${RANK_ENV:-}; do MPIARGS+=(-x "$v"); done
for rate in 10 100 1000; do
  scripts/lab rate h1 "$rate" >/dev/null 2>&1
  scripts/lab rate h2 "$rate" >/dev/null 2>&1
  for overlap in true false; do
    name=r${rate}_o${overlap}
    echo "lab_bandwidth: $rate Mbit/s, overlap $overlap ..." >&2
    mpirun --hostfile "$OUT/hosts" -np 2 "${MPIARGS[@]}" -x OMP_NUM_THREADS=1 \
      ${OPENBLAS_CORETYPE:+-x OPENBLAS_CORETYPE} \
      build/tessera train configs/demo.ini --run.out_dir="$OUT" --run.name="$name" \
      --run.threads=1 --train.steps="$STEPS" --log.every=1 --eval.every=0 --eval.batches=1 \
      --log.sample_tokens=0 --ckpt.every=0 --comm.overlap="$overlap" --comm.timeout_s=120 \
      --comm.bucket_mb=0.5 \
      >"$OUT/$name.log" 2>&1 || { tail -20 "$OUT/$name.log"; exit 1; }
    echo "$rate $overlap $OUT/$name/metrics.jsonl" >>"$OUT/list"
  done
done
mkdir -p "$(dirname "$SVG")"
python3 - "$OUT/list" "$SVG" <<'EOF'
import json, statistics, sys
rows = []
for line in open(sys.argv[1]):
    rate, overlap, path = line.split()
    recs = [json.loads(l) for l in open(path)][1:]  # the first step warms up
    med = lambda k: statistics.median(r[k] for r in recs)
    step, comp, comm, wait = med("ms_per_step"), med("compute_ms"), med("comm_ms"), med("wait_ms")
    sent = med("bytes_sent")
    rows.append((int(rate), overlap == "true", step, comp, comm, wait, sent))
print("| link Mbit/s | overlap | ms/step | compute ms | comm ms (bucket span) | wait ms (exposed) | compute utilization | MB sent/step/rank | overlap gain (off / on) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
by = {(r[0], r[1]): r for r in rows}
for r in rows:
    gain = by[(r[0], False)][2] / by[(r[0], True)][2] if r[1] else None
    print(f"| {r[0]} | {'on' if r[1] else 'off'} | {r[2]:.0f} | {r[3]:.0f} | {r[4]:.0f} | {r[5]:.0f} | "
          f"{100 * r[3] / r[2]:.0f}% | {r[6] / 1e6:.2f} | {f'{gain:.2f}x' if gain else ''} |")
# bars: compute (blue) and the rest of the step (orange), per rate and overlap, log-free linear
W, H, x0, y0, ph = 640, 360, 70, 30, 260
top = max(r[2] for r in rows) * 1.1
bw = 36
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       '<rect width="100%" height="100%" fill="white"/>',
       f'<text x="{x0}" y="18" font-size="14">step time across 2 lab hosts (demo model, fp32 gradients)</text>']
for k in range(6):
    v = top * k / 5
    y = y0 + ph - ph * k / 5
    out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{W - 20}" y2="{y:.1f}" stroke="#ddd"/>')
    out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.0f}</text>')
out.append(f'<text x="14" y="{y0 + ph / 2}" transform="rotate(-90 14 {y0 + ph / 2})" text-anchor="middle">ms per step</text>')
x = x0 + 20
for rate in sorted({r[0] for r in rows}):
    for ov in (True, False):
        r = by[(rate, ov)]
        hc, hs = ph * r[3] / top, ph * (r[2] - r[3]) / top
        yb = y0 + ph
        out.append(f'<rect x="{x}" y="{yb - hc:.1f}" width="{bw}" height="{hc:.1f}" fill="#1f77b4"/>')
        out.append(f'<rect x="{x}" y="{yb - hc - hs:.1f}" width="{bw}" height="{hs:.1f}" fill="#ff7f0e"/>')
        out.append(f'<text x="{x + bw / 2}" y="{yb + 14}" text-anchor="middle">{"on" if ov else "off"}</text>')
        x += bw + 8
    out.append(f'<text x="{x - bw - 30}" y="{y0 + ph + 30}" text-anchor="middle">{rate} Mbit/s</text>')
    x += 50
out.append(f'<rect x="{W - 230}" y="{y0 + 4}" width="12" height="12" fill="#1f77b4"/><text x="{W - 212}" y="{y0 + 14}">compute</text>')
out.append(f'<rect x="{W - 230}" y="{y0 + 22}" width="12" height="12" fill="#ff7f0e"/><text x="{W - 212}" y="{y0 + 32}">rest of the step (communication not hidden)</text>')
out.append(f'<text x="{x0}" y="{H - 8}">bars per rate: overlap on, off</text>')
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print(f"\n(chart: {sys.argv[2]})")
EOF
