#!/usr/bin/env bash
# bench/lab_chaos_long.sh — a long chaos run: the launcher trains across 4 lab hosts (100 Mbit/s
# links) while a seeded random schedule injects at least FAULTS faults (node losses and returns,
# partitions and healing, paused hosts, kills during checkpoint writes, bandwidth changes, hosts
# joining); then `scripts/lab report` checks every assertion against a fault-free run of the same
# config and prints the per-fault times.
#
#   bench/lab_chaos_long.sh [FAULTS] [SEED] [OUT_DIR]     (defaults 60, 1, a temporary folder)
#
# Needs root. Takes about FAULTS x 6 s plus a fault-free run of FAULTS x 150 steps. The summary (report) is printed;
# docs/lab.md records one.
set -euo pipefail
cd "$(dirname "$0")/.."
FAULTS=${1:-60}
SEED=${2:-1}
OUT=${3:-$(mktemp -d)}
mkdir -p "$OUT"
export TESSERA_LAB_STATE=/run/tessera-lab-long TESSERA_LAB_PREFIX=tll
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
trap 'scripts/lab down >/dev/null 2>&1' EXIT
CORPUS=data/fortunes
[ -d $CORPUS ] || build/tessera prepare --out $CORPUS >/dev/null
STEPS=$((FAULTS * 150))
args() {
  printf '%s\n' configs/tiny.ini "--data.train=$CORPUS/train_*.bin" "--data.val=$CORPUS/val_*.bin" \
    "--run.out_dir=$OUT" "--run.name=$1" --train.steps=$STEPS --ckpt.every=20 --log.every=1 \
    --eval.every=0 --log.sample_tokens=0 --comm.timeout_s=3 --data.log_samples=true \
    --train.eps=1e-6
}
python3 - "$FAULTS" "$SEED" >"$OUT/schedule" <<'EOF'
import random, sys
n, rng = int(sys.argv[1]), random.Random(int(sys.argv[2]))
hosts, added, t, lines, count = ["h1", "h2", "h3", "h4"], 0, 4.0, [], 0
while count < n:
    kind = rng.choice(["loss", "loss", "partition", "partition", "pause", "ckpt", "rate", "add"])
    h = rng.choice(hosts[1:])  # h1 stays: at least one host always answers
    if kind == "loss":
        lines += [(t, f"kill {h}"), (t + rng.uniform(2, 6), f"revive {h}")]; count += 2
    elif kind == "partition":
        lines += [(t, f"partition {h}"), (t + rng.uniform(2, 6), f"heal {h}")]; count += 2
    elif kind == "pause":
        lines.append((t, f"pause {h}")); count += 1
    elif kind == "ckpt":
        # ranks 0 and 1 (h1, h2 while they live) write the checkpoint copies
        lines.append((t, f"ckpt-kill {rng.choice(hosts[:2])}")); count += 1
    elif kind == "rate":
        lines.append((t, f"rate {h} {rng.choice([20, 50, 100, 200])}")); count += 1
    elif kind == "add" and added < 1:  # 5 ranks at most on a 2-core machine
        added += 1; hosts.append(f"h{4 + added}"); lines.append((t, "add")); count += 1
    t += rng.uniform(5, 8)
for t, what in sorted(lines):
    print(f"{t:.1f} {what}")
EOF
echo "lab_chaos_long: $(grep -c . "$OUT/schedule") faults over $(tail -1 "$OUT/schedule" | cut -d' ' -f1) s; $STEPS steps" >&2
scripts/lab down >/dev/null 2>&1 || true
scripts/lab up 4 --rate 100 >/dev/null
mapfile -t REF < <(args ref)
echo "lab_chaos_long: the fault-free run ..." >&2
scripts/lab chaos --run-dir "$OUT/ref" --log "$OUT/ref.log" -- "${REF[@]}"
scripts/lab down >/dev/null
scripts/lab up 4 --rate 100 >/dev/null
mapfile -t RUN < <(args chaos)
echo "lab_chaos_long: the chaos run ..." >&2
scripts/lab chaos --schedule "$OUT/schedule" --run-dir "$OUT/chaos" --log "$OUT/chaos.log" \
  -- "${RUN[@]}"
echo "faults injected: $(grep -c . "$OUT/chaos/launch/faults.jsonl") of $(grep -c . "$OUT/schedule")"
scripts/lab report "$OUT/chaos" --reference "$OUT/ref" --svg "$OUT/recovery.svg"
