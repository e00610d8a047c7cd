#!/bin/sh
# codec_resume.sh [--comm.KEY=VALUE ...] CODEC TESSERA WEIGHTS_CLOSE RUNS CORPUS MPIRUN... — a 2-rank
# training with a stateful gradient codec (error feedback): the loss falls (and ends within 5% of
# the same run without a codec), and a run killed after its checkpoint
# of step 10 resumes (codec state restored from the checkpoint, per rank) to the same weights, bit
# for bit, as the run that was never interrupted. Options before CODEC (the codec's parameters)
# go to every run with it.
set -u
opts=
while [ "${1#--}" != "$1" ]; do
    opts="$opts $1"
    shift
done
codec=$1 tessera=$2 close=$3 runs=$4 corpus=$5
shift 5
cfg="$(dirname "$0")/../../configs/tiny.ini"
args="--data.train=$corpus/train_*.bin --data.val=$corpus/val_*.bin --run.out_dir=$runs \
--train.steps=20 --train.global_batch=12 --train.micro_batch=2 --comm.bucket_mb=0.02 \
--ckpt.every=5 --log.every=1 --eval.every=0 --log.sample_tokens=0 --train.eps=1e-6 \
--comm.codec=$codec --run.overwrite=true --balance.on=false$opts" # (bit for bit: fixed shares)
fail=0
# shellcheck disable=SC2086
"$@" -np 2 "$tessera" train "$cfg" $args --run.name="${codec}_whole" > "$runs/${codec}_whole.out" 2>&1 ||
    { cat "$runs/${codec}_whole.out"; echo "codec_resume: the whole run failed"; exit 1; }
# the same run without compression: the codec's final loss stays near it
# shellcheck disable=SC2086
"$@" -np 2 "$tessera" train "$cfg" $args --comm.codec=none --run.name="${codec}_none" \
    > "$runs/${codec}_none.out" 2>&1 ||
    { cat "$runs/${codec}_none.out"; echo "codec_resume: the run without a codec failed"; exit 1; }
loss_of() { sed 's/.*"loss": \([0-9.]*\).*/\1/' "$1"; }
first=$(head -n 1 "$runs/${codec}_whole/metrics.jsonl" | loss_of /dev/stdin)
last=$(tail -n 1 "$runs/${codec}_whole/metrics.jsonl" | loss_of /dev/stdin)
plain=$(tail -n 1 "$runs/${codec}_none/metrics.jsonl" | loss_of /dev/stdin)
echo "codec_resume: $codec: loss $first -> $last (without a codec: $plain)"
awk -v a="$first" -v b="$last" -v p="$plain" 'BEGIN { exit !(b < 0.95 * a && b < 1.05 * p) }' ||
    { echo "codec_resume: expected the loss to fall by 5% and end within 5% of $plain"; fail=1; }
# the same run, rank 1 killed at the start of step 12 (after the checkpoint of step 10)
rm -rf "$runs/${codec}_cut"
# shellcheck disable=SC2086
"$@" -np 2 -x TESSERA_FAULT=1:12:before:kill "$tessera" train "$cfg" $args \
    --run.name="${codec}_cut" > "$runs/${codec}_cut.out" 2>&1 &&
    { cat "$runs/${codec}_cut.out"; echo "codec_resume: the run with a killed rank succeeded"; exit 1; }
# shellcheck disable=SC2086
"$@" -np 2 "$tessera" train "$cfg" $args --run.overwrite=false --run.name="${codec}_cut" \
    --resume auto > "$runs/${codec}_cut2.out" 2>&1 ||
    { cat "$runs/${codec}_cut2.out"; echo "codec_resume: the resume failed"; exit 1; }
grep -q 'resumed from step 10' "$runs/${codec}_cut2.out" ||
    { cat "$runs/${codec}_cut2.out"; echo "codec_resume: not resumed from step 10"; fail=1; }
if grep -q 'starts afresh' "$runs/${codec}_cut2.out"; then
    cat "$runs/${codec}_cut2.out"
    echo "codec_resume: the codec state was not restored"
    fail=1
fi
"$close" "$runs/${codec}_whole/model.h5" "$runs/${codec}_cut/model.h5" 0 ||
    { echo "codec_resume: resumed weights differ from the whole run's"; fail=1; }
exit $fail
