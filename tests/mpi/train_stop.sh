#!/bin/bash
# train_stop.sh signal|file TESSERA RUNS CORPUS MPIRUN... — a planned stop: a 2-rank training is
# asked to stop (SIGUSR1 to mpirun, which forwards it to the ranks, or a STOP file in the run
# directory); every rank must finish the step, write a checkpoint, and exit 0; the checkpoint
# must verify, and a run with --resume auto must continue from exactly that step.
set -u
mode=$1
tessera=$2
parent=$3
corpus=$4
shift 4
name=stop_$mode
dir="$parent/$name"
rm -rf "$dir"
mkdir -p "$parent"
out=$(mktemp)
trap 'rm -f "$out"; [ -n "${job:-}" ] && kill -KILL "$job" 2>/dev/null' EXIT
args=("$(dirname "$0")/../../configs/tiny.ini" "--data.train=$corpus/train_*.bin"
      "--data.val=$corpus/val_*.bin" --run.out_dir="$parent" --run.name=$name --log.every=1
      --eval.every=0 --log.sample_tokens=0)

setsid "$@" -np 2 "$tessera" train "${args[@]}" --train.steps=1000000 >"$out" 2>&1 &
job=$!
for _ in $(seq 1 300); do
    [ -s "$dir/metrics.jsonl" ] && [ "$(wc -l < "$dir/metrics.jsonl")" -ge 5 ] && break
    sleep 0.1
done
if [ "$mode" = signal ]; then kill -USR1 "$job"; else touch "$dir/STOP"; fi
for _ in $(seq 1 300); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$job" 2>/dev/null; then cat "$out"; echo "train_stop: still running 30 s after the request"; exit 1; fi
wait "$job"
rc=$?
job=""
grep -E "stop requested|checkpoint step|error" "$out"
[ "$rc" -eq 0 ] || { cat "$out"; echo "train_stop: exit $rc, want 0"; exit 1; }
step=$(sed -n 's/.*stopping after step \([0-9]*\) with a checkpoint.*/\1/p' "$out" | head -1)
[ -n "$step" ] || { echo "train_stop: no 'stopping after step N' line"; exit 1; }
ck=$(printf '%s/ckpt/%s/step-%08d' "$dir" "${TESSERA_HOST:-$(hostname)}" "$step")
"$tessera" ckpt verify "$ck" || { echo "train_stop: no intact checkpoint at step $step"; exit 1; }
[ ! -e "$dir/STOP" ] || { echo "train_stop: the STOP file was not consumed"; exit 1; }

# continue: the resumed run starts at exactly that step
"$@" -np 2 "$tessera" train "${args[@]}" --train.steps=$((step + 3)) --resume auto >"$out" 2>&1
rc=$?
grep -E "resumed from step" "$out"
[ "$rc" -eq 0 ] || { cat "$out"; echo "train_stop: resumed run exit $rc"; exit 1; }
grep -q "resumed from step $step " "$out" || { echo "train_stop: did not resume from step $step"; exit 1; }
tail -n 1 "$dir/metrics.jsonl" | grep -q "\"step\": $((step + 3))," ||
    { echo "train_stop: the resumed run did not reach step $((step + 3))"; exit 1; }
echo "train_stop: stopped after step $step, checkpoint intact, resumed to step $((step + 3))"
