#!/bin/bash
# train_crash.sh SPEC RESUME_STEP TESSERA RUNS CORPUS MPIRUN... — a rank dies for real
# (TESSERA_FAULT=SPEC: it SIGKILLs itself at a chosen step and moment) in a 2-rank run with a
# checkpoint every 5 steps; mpirun must end with an error; a restart with --resume auto must
# resume from step RESUME_STEP (the newest checkpoint committed before the crash) and reach the
# uninterrupted run's weights bit for bit and its losses exactly.
set -u
spec=$1
want=$2
tessera=$3
parent=$4
corpus=$5
shift 5
tag=$(printf '%s' "$spec" | tr ':' '_')
ref="$parent/crash_ref_$(printf '%s' "$spec" | tr ':' '_')"
dir="$parent/crash_$tag"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
args=("$(dirname "$0")/../../configs/tiny.ini" "--data.train=$corpus/train_*.bin"
      "--data.val=$corpus/val_*.bin" --run.out_dir="$parent" --train.steps=20 --ckpt.every=5
      --log.every=1 --eval.every=0 --log.sample_tokens=0 --train.eps=1e-6)
# the uninterrupted run
rm -rf "$ref"
"$@" -np 2 "$tessera" train "${args[@]}" --run.name="$(basename "$ref")" >"$out" 2>&1 ||
    { cat "$out"; echo "train_crash: reference run failed"; exit 1; }
rm -rf "$dir"
TESSERA_FAULT=$spec timeout 120 "$@" -x TESSERA_FAULT -np 2 "$tessera" train "${args[@]}" \
    --run.name="crash_$tag" >"$out" 2>&1
rc=$?
grep -E "fault injection|error" "$out" | head -5
[ "$rc" -ne 0 ] || { echo "train_crash: the run with a fault exited 0"; exit 1; }
grep -q "fault injection: rank" "$out" || { echo "train_crash: the fault did not fire"; exit 1; }
"$@" -np 2 "$tessera" train "${args[@]}" --run.name="crash_$tag" --resume auto >"$out" 2>&1
rc=$?
grep -E "skipping|resumed from step" "$out"
[ "$rc" -eq 0 ] || { cat "$out"; echo "train_crash: restart exited $rc"; exit 1; }
grep -q "resumed from step $want " "$out" || { echo "train_crash: did not resume from step $want"; exit 1; }
"$WEIGHTS_CLOSE" "$ref/model.h5" "$dir/model.h5" 0 || exit 1
for s in $(seq $((want + 1)) 20); do
    a=$(grep "\"step\": $s," "$ref/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
    b=$(grep "\"step\": $s," "$dir/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
    [ "$a" = "$b" ] || { echo "train_crash: step $s loss $b, uninterrupted $a"; exit 1; }
done
echo "train_crash: $spec: resumed from step $want, weights and losses equal the uninterrupted run"
