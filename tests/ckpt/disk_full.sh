#!/bin/sh
# disk_full.sh TESSERA OUT_DIR NAME TRAIN_ARGS...
#
# Checkpoint writes that fail (the disk is "full"): a file-size limit (ulimit -f, in 512-byte
# blocks) of 300 KiB lets the run's small files and model.h5 (~150 KiB for the tiny model) through
# but not a checkpoint's state.h5 (~600 KiB); tessera ignores SIGXFSZ, so the write fails with
# EFBIG. (A size-limited tmpfs would be closer to a full disk but needs root and mount rights.)
#   1. a normal run leaves step-5 and step-10;
#   2. limited, resumed to 20 steps with a save every 2 and ckpt.max_failures = 3: the saves at
#      12, 14, 16 fail, each logged, training goes on; when the third failure is known (the save
#      at 18 waits for it) the run stops with exit 1 and one clear error line;
#   3. the same with ckpt.max_failures = 100: the run finishes (exit 0);
# after each, step-10 is intact (it verifies and is byte-identical) and no .tmp is left.
set -u
bin=$1 out=$2 name=$3
shift 3
run=$out/$name
root=$run/ckpt/h
common="--run.out_dir=$out --run.name=$name --log.every=1 --eval.every=0 --log.sample_tokens=0"
fail() {
    echo "disk_full: $*" >&2
    exit 1
}
rm -rf "$run"
"$bin" train "$@" $common --train.steps=10 --ckpt.every=5 > "$run.1.out" 2>&1 ||
    { cat "$run.1.out"; fail "the first run failed"; }
[ -f "$root/step-00000010/MANIFEST" ] || fail "no step-10 checkpoint"
cp "$root/step-00000010/state.h5" "$run.step10.h5"

intact() {
    "$bin" ckpt verify "$root/step-00000010" || fail "$1: step-10 does not verify"
    cmp "$root/step-00000010/state.h5" "$run.step10.h5" || fail "$1: step-10 changed"
    [ -z "$(ls -d "$root"/*.tmp 2>/dev/null)" ] || fail "$1: a .tmp directory is left"
    [ "$(ls "$root" | tr '\n' ' ')" = "step-00000005 step-00000010 " ] ||
        fail "$1: unexpected checkpoints: $(ls "$root")"
}

(ulimit -f 600 && exec "$bin" train "$@" $common --train.steps=20 --ckpt.every=2 \
    --run.resume=auto --ckpt.max_failures=3) > "$run.2.out" 2>&1
rc=$?
cat "$run.2.out"
[ $rc -eq 1 ] || fail "limited run with max_failures 3: exit $rc, expected 1"
grep -q "resumed from step 10 " "$run.2.out" || fail "did not resume from step 10"
[ "$(grep -c 'checkpoint at step 1[246] not written' "$run.2.out")" -eq 3 ] ||
    fail "expected three logged failures (steps 12, 14, 16)"
grep -q 'error: checkpoint: 3 consecutive saves to .* failed (ckpt.max_failures = 3); stopping the run' \
    "$run.2.out" || fail "no clear error line for max_failures"
grep -q '"step": 17,' "$run/metrics.jsonl" || fail "training did not go on after the failures"
grep -q '"step": 19,' "$run/metrics.jsonl" && fail "training went on past the stop"
intact "max_failures 3"

(ulimit -f 600 && exec "$bin" train "$@" $common --train.steps=20 --ckpt.every=2 \
    --run.resume=auto --ckpt.max_failures=100) > "$run.3.out" 2>&1
rc=$?
cat "$run.3.out"
[ $rc -eq 0 ] || fail "limited run with max_failures 100: exit $rc, expected 0"
[ "$(grep -c 'checkpoint at step [0-9]* not written' "$run.3.out")" -eq 5 ] ||
    fail "expected five logged failures (steps 12..20)"
grep -q '"step": 20,' "$run/metrics.jsonl" || fail "the run did not reach step 20"
intact "max_failures 100"
echo "disk_full: failures logged, training went on, stopped at max_failures (exit 1), finished with a high limit (exit 0), step-10 intact"
