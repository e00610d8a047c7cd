#!/bin/bash
# train_stalled.sh TESSERA RUN_DIR_PARENT CORPUS MPIRUN... — a 3-rank training in which rank 2 is
# stopped with SIGSTOP mid-run (a hung node): ranks 0 and 1 must give up within the collective
# deadline + 5 s, say which collective and which peer they waited for, leave a status file with
# reason peer_lost, and mpirun must end with the peer-lost code 75.
set -u
tessera=$1
parent=$2
corpus=$3
shift 3
timeout_s=3
name=stalled
dir="$parent/$name"
rm -rf "$dir"
mkdir -p "$parent"
out=$(mktemp)
stopped=""
cleanup() {
    [ -n "$stopped" ] && kill -KILL "$stopped" 2>/dev/null
    [ -n "${job:-}" ] && kill -KILL "$job" 2>/dev/null
    rm -f "$out"
}
trap cleanup EXIT

"$@" -np 3 "$tessera" train "$(dirname "$0")/../../configs/tiny.ini" \
    "--data.train=$corpus/train_*.bin" "--data.val=$corpus/val_*.bin" \
    --run.out_dir="$parent" --run.name=$name --train.steps=1000000 --log.every=1 \
    --eval.every=0 --comm.timeout_s=$timeout_s >"$out" 2>&1 &
job=$!

# wait until training runs (metrics lines appear), then find rank 2 and stop it
for _ in $(seq 1 300); do
    [ -s "$dir/metrics.jsonl" ] && [ "$(wc -l < "$dir/metrics.jsonl")" -ge 3 ] && break
    sleep 0.1
done
for pid in $(pgrep -f "tessera train .*--run.name=$name"); do
    if tr '\0' '\n' < /proc/$pid/environ 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=2'; then
        stopped=$pid
    fi
done
if [ -z "$stopped" ]; then
    cat "$out"
    echo "train_stalled: rank 2 not found"
    exit 1
fi
kill -STOP "$stopped"
t0=$(date +%s.%N)
echo "train_stalled: stopped rank 2 (pid $stopped)"

# mpirun must end on its own; give it the deadline + 5 s (+ 30 s before we call it hung)
for _ in $(seq 1 350); do
    kill -0 "$job" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$job" 2>/dev/null; then
    cat "$out"
    echo "train_stalled: mpirun still running 35 s after the stop"
    exit 1
fi
wait "$job"
rc=$?
job=""
elapsed=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
tail -n 25 "$out"
echo "train_stalled: mpirun exited $rc, $elapsed s after the stop"

fail=0
[ "$rc" -eq 75 ] || { echo "train_stalled: exit $rc, want 75"; fail=1; }
awk -v e="$elapsed" -v w=$((timeout_s + 5)) 'BEGIN { exit !(e <= w) }' ||
    { echo "train_stalled: took $elapsed s, want at most $((timeout_s + 5)) s"; fail=1; }
grep -Eq 'at step [0-9]+: waited [0-9.]+ s for rank [0-9]' "$out" ||
    { echo "train_stalled: no error line naming the step and the peer"; fail=1; }
# The first of ranks 0 and 1 whose deadline expires writes its status file and exits 75; mpirun
# then ends the job, so the other one may be killed before its own deadline (on a loaded machine
# their deadlines start apart). At least one status file with reason peer_lost, and no other
# reason in either.
lost=0
for r in 0 1; do
    f="$dir/rank-$r.status"
    if [ -f "$f" ] && grep -q '^reason peer_lost' "$f" && grep -q '^exit_code 75' "$f"; then
        echo "train_stalled: $f: $(tr '\n' ' ' < "$f")"
        lost=$((lost + 1))
    elif [ -f "$f" ]; then
        echo "train_stalled: $f has another reason: $(tr '\n' ' ' < "$f")"
        fail=1
    else
        echo "train_stalled: $f missing (the rank was ended by mpirun before its deadline)"
    fi
done
[ "$lost" -ge 1 ] || { echo "train_stalled: no status file with reason peer_lost"; fail=1; }
exit $fail
