#!/usr/bin/env bash
# bench/step_ab.sh — the training step time of two tessera builds, A B B A ..., on the demo model
# over N MPI ranks (one thread each): is B slower than A beyond the noise?
#
#   bench/step_ab.sh A_BINARY B_BINARY [RUNS] [STEPS] [RANKS] [-- EXTRA TRAIN ARGS]
#     defaults: 5 runs a side, 40 steps, 2 ranks; needs data/fortunes (`tessera prepare`)
#
# A run's figure is the median ms_per_step of its logged windows after the first (warm-up), from
# metrics.jsonl (log.every = 5). Prints each run, then per side the median over its runs, and the
# median (min, max) of the per-pair ratios B/A: 1.00 is the same speed, above 1 B is slower.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,10p' "$0"; exit 2; }
A=$1
B=$2
shift 2
RUNS=5 STEPS=40 NP=2
[ $# -gt 0 ] && [ "$1" != "--" ] && { RUNS=$1; shift; }
[ $# -gt 0 ] && [ "$1" != "--" ] && { STEPS=$1; shift; }
[ $# -gt 0 ] && [ "$1" != "--" ] && { NP=$1; shift; }
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
MPI=(mpirun --oversubscribe -x OMP_NUM_THREADS=1)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)

median() { sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# one run: prints its median ms per step
run() {
    local bin=$1 name=$2
    shift 2
    "${MPI[@]}" -np "$NP" "$bin" train configs/demo.ini --run.out_dir="$OUT" --run.name="$name" \
        --run.threads=1 --train.steps="$STEPS" --log.every=5 --eval.every=0 --eval.batches=1 \
        --log.sample_tokens=0 "$@" > "$OUT/$name.log" 2>&1 || {
        cat "$OUT/$name.log" >&2
        return 1
    }
    tail -n +2 "$OUT/$name/metrics.jsonl" | grep -o '"ms_per_step": [0-9.e+-]*' |
        awk '{ print $2 }' | median
}

: > "$OUT/a"
: > "$OUT/b"
: > "$OUT/ratio"
for i in $(seq 1 "$RUNS"); do
    if [ $((i % 2)) -eq 1 ]; then # A B, then B A: a load that drifts during a pair cancels out
        a=$(run "$A" "a$i" "$@")
        b=$(run "$B" "b$i" "$@")
    else
        b=$(run "$B" "b$i" "$@")
        a=$(run "$A" "a$i" "$@")
    fi
    echo "$a" >> "$OUT/a"
    echo "$b" >> "$OUT/b"
    awk -v a="$a" -v b="$b" 'BEGIN { print b / a }' >> "$OUT/ratio"
    echo "run $i: A $a ms/step, B $b ms/step" >&2
done
echo "A: $(median < "$OUT/a") ms/step (median of $RUNS runs), $A"
echo "B: $(median < "$OUT/b") ms/step (median of $RUNS runs), $B"
echo "B/A: $(median < "$OUT/ratio") (min $(sort -g "$OUT/ratio" | head -1), max $(sort -g "$OUT/ratio" | tail -1))"
