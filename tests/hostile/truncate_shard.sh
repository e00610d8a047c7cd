#!/bin/sh
# truncate_shard.sh — a real training run whose shards are truncated while it runs: the rank must
# end with exit 2, one error line naming the shard and what happened, and a status file that says
# bad_input (a shard read through a mapping would die of SIGBUS instead: exit 135, no status).
#
#   truncate_shard.sh TESSERA_BIN CONFIG CORPUS_DIR WORK_DIR
set -u
bin=$1
config=$2
corpus=$3
work=$4
rm -rf "$work"
mkdir -p "$work/shards"
cp "$corpus"/train_*.bin "$work/shards/" # copies of the fixture's shards: these get cut
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# far more steps than will run: the truncation comes after the first one
"$bin" train "$config" "--data.train=$work/shards/train_*.bin" "--data.val=$corpus/val_*.bin" \
    "--run.out_dir=$work/runs" --run.name=cut --train.steps=100000000 --log.every=1 \
    --eval.every=0 >"$work/out" 2>&1 &
pid=$!
i=0
until grep -q "step *1/" "$work/out" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 $pid 2>/dev/null; then
        kill $pid 2>/dev/null
        cat "$work/out"
        fail "the run did not reach its first step"
    fi
    sleep 0.1
done
for f in "$work"/shards/train_*.bin; do
    truncate -s 2048 "$f"
done
i=0
while kill -0 $pid 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 600 ]; then
        kill $pid
        cat "$work/out"
        fail "still running 60 s after its shards were truncated"
    fi
    sleep 0.1
done
wait $pid
rc=$?
cat "$work/out"
[ $rc -eq 2 ] || fail "exit status $rc, want 2 (bad input)"
n=$(grep -c "error: " "$work/out")
[ "$n" -eq 1 ] || fail "$n error lines, want 1"
grep -Eq "error: $work/shards/train_[0-9]+\.bin: the file ends at byte 2048, expected [0-9]+ bytes: the shard was truncated while tessera was using it \(reading byte offset [0-9]+\)$" \
    "$work/out" || fail "the error line does not name the shard, its sizes and the offset"
status=$work/runs/cut/rank-0.status
[ -f "$status" ] || fail "no status file $status"
cat "$status"
grep -qx "reason bad_input" "$status" || fail "status file reason is not bad_input"
grep -qx "exit_code 2" "$status" || fail "status file exit code is not 2"
echo "truncated shards: exit 2, one error line, status bad_input"
