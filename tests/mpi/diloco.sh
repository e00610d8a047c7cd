#!/bin/sh
# diloco.sh CHECK ARGS TESSERA WEIGHTS_CLOSE RUNS CORPUS MPIRUN... — local SGD (diloco.*) end to
# end, with real ranks (ARGS: more options for every run, one word, "" for none). CHECK is one
# of:
#
#   plain      One inner step per sync, outer SGD with learning rate 1 and no momentum, inner
#              SGD: the new anchor is the samples-weighted mean of w - lr * g_r over the ranks,
#              which is plain data parallelism with SGD. 3 ranks with uneven shares (10
#              sequences: 4, 3, 3, or as ARGS' balance.speeds split them) against the
#              data-parallel run, weights within 1e-5: pseudo-gradients weighted by samples.
#   resume     3 ranks train 20 steps in local SGD (ARGS: more options, e.g. a codec or
#              streaming), a checkpoint every 5 or 10 steps; the same run with rank 1 killed at
#              the start of step 12 resumes from step 10 to the uninterrupted run's weights, bit
#              for bit; the lineage of samples (data.log_samples) is exact across the restart.
#   fragments  a streaming checkpoint (5 fragments) resumed by path without streaming, and one
#              without streaming resumed with 5 fragments: each says the ranks continue from the
#              anchor and trains to the end.
#   world      3 ranks in local SGD (int8 codec) die at step 12 and resume on 2: every rank
#              continues from the anchor with rank 0's inner optimizer state, the codec's error
#              feedback starts afresh; the lineage is exact and the final loss within 3% of the
#              uninterrupted run's.
set -u
check=$1 args=$2 tessera=$3 close=$4 runs=$5 corpus=$6
shift 6
cfg="$(dirname "$0")/../../configs/tiny.ini"
lineage="$(dirname "$0")/../ckpt/check_lineage.sh"
base="--data.train=$corpus/train_*.bin --data.val=$corpus/val_*.bin --run.out_dir=$runs \
--train.steps=20 --train.micro_batch=2 --log.every=1 --eval.every=0 --log.sample_tokens=0 \
--train.eps=1e-6 --run.overwrite=true --comm.bucket_mb=0.02 --balance.on=false"
# (balance.on = false: bit-for-bit comparisons need shares that do not follow timing; ARGS may
# declare uneven ones with balance.speeds)
mkdir -p "$runs"

fault="" # mpirun options of the next run (a fault to inject)
train() { # NAME NP OPTIONS... : one run, its output in RUNS/NAME.out
    name=$1 np=$2
    shift 2
    # shellcheck disable=SC2086
    $MPIRUN -np "$np" $fault "$tessera" train "$cfg" $base $args --run.name="$name" "$@" \
        > "$runs/$name.out" 2>&1
}
MPIRUN="$*"
loss_of() { tail -n 1 "$1" | sed 's/.*"loss": \([0-9.]*\).*/\1/'; }

case $check in
plain)
    common="--train.global_batch=10 --train.optimizer=sgd --train.lr=0.5 --train.grad_clip=0 \
--train.warmup_steps=0"
    # shellcheck disable=SC2086
    train diloco_dp 3 $common || { cat "$runs/diloco_dp.out"; echo "diloco: the data-parallel run failed"; exit 1; }
    # shellcheck disable=SC2086
    train diloco_h1 3 $common --diloco.inner_steps=1 --diloco.outer_lr=1 \
        --diloco.outer_momentum=0 ||
        { cat "$runs/diloco_h1.out"; echo "diloco: the local SGD run failed"; exit 1; }
    grep -q 'local SGD: 1 inner steps per sync' "$runs/diloco_h1.out" ||
        { cat "$runs/diloco_h1.out"; echo "diloco: local SGD was not on"; exit 1; }
    "$close" "$runs/diloco_dp/model.h5" "$runs/diloco_h1/model.h5" 1e-5 ||
        { echo "diloco: one inner step, outer lr 1, no momentum differs from data parallelism"; exit 1; }
    echo "diloco: H = 1, outer lr 1, momentum 0 equals data parallelism (3 ranks, shares 4/3/3)"
    ;;
resume)
    extra="--train.global_batch=12 --diloco.inner_steps=5 --data.log_samples=true"
    every=10
    case "$args" in *fragments*) every=5 ;; esac
    tag=$(echo "$args" | tr -c 'a-z0-9' '_' | cut -c1-40)
    whole="diloco_whole_$tag" cut="diloco_cut_$tag"
    # shellcheck disable=SC2086
    train "$whole" 3 $extra --ckpt.every=$every ||
        { cat "$runs/$whole.out"; echo "diloco: the whole run failed"; exit 1; }
    first=$(head -n 1 "$runs/$whole/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
    last=$(loss_of "$runs/$whole/metrics.jsonl")
    echo "diloco: $args: loss $first -> $last"
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.95 * a) }' ||
        { echo "diloco: expected the loss to fall by 5%"; exit 1; }
    rm -rf "${runs:?}/$cut"
    # shellcheck disable=SC2086
    fault="-x TESSERA_FAULT=1:12:before:kill"
    train "$cut" 3 $extra --ckpt.every=$every &&
        { cat "$runs/$cut.out"; echo "diloco: the run with a killed rank succeeded"; exit 1; }
    fault=""
    # shellcheck disable=SC2086
    train "$cut" 3 $extra --ckpt.every=$every --run.overwrite=false --resume auto ||
        { cat "$runs/$cut.out"; echo "diloco: the resume failed"; exit 1; }
    grep -q 'resumed from step 10' "$runs/$cut.out" ||
        { cat "$runs/$cut.out"; echo "diloco: not resumed from step 10"; exit 1; }
    if grep -q 'starts afresh\|holds no local SGD state' "$runs/$cut.out"; then
        cat "$runs/$cut.out"
        echo "diloco: state was not restored"
        exit 1
    fi
    "$close" "$runs/$whole/model.h5" "$runs/$cut/model.h5" 0 ||
        { echo "diloco: resumed weights differ from the whole run's"; exit 1; }
    "$lineage" "$runs/$cut" 20 12 || { echo "diloco: lineage not exact"; exit 1; }
    echo "diloco: $args: resumed bit for bit, lineage exact"
    ;;
world)
    extra="--train.global_batch=12 --diloco.inner_steps=5 --data.log_samples=true \
--comm.codec=int8 --ckpt.every=10"
    # shellcheck disable=SC2086
    train diloco_w3 3 $extra || { cat "$runs/diloco_w3.out"; echo "diloco: the whole run failed"; exit 1; }
    rm -rf "${runs:?}/diloco_w32"
    # shellcheck disable=SC2086
    fault="-x TESSERA_FAULT=1:12:before:kill"
    train diloco_w32 3 $extra &&
        { cat "$runs/diloco_w32.out"; echo "diloco: the run with a killed rank succeeded"; exit 1; }
    fault=""
    # shellcheck disable=SC2086
    train diloco_w32 2 $extra --run.overwrite=false --resume auto ||
        { cat "$runs/diloco_w32.out"; echo "diloco: the resume on 2 ranks failed"; exit 1; }
    grep -q 'resumed from step 10' "$runs/diloco_w32.out" &&
        grep -q "local SGD state of 3 ranks, this run has 2" "$runs/diloco_w32.out" ||
        { cat "$runs/diloco_w32.out"; echo "diloco: expected a resume from step 10 with rank 0's state"; exit 1; }
    "$lineage" "$runs/diloco_w32" 20 12 || { echo "diloco: lineage not exact"; exit 1; }
    a=$(loss_of "$runs/diloco_w3/metrics.jsonl") b=$(loss_of "$runs/diloco_w32/metrics.jsonl")
    echo "diloco: final loss $a on 3 ranks, $b after resuming on 2"
    awk -v a="$a" -v b="$b" 'BEGIN { d = b - a; if (d < 0) d = -d; exit !(d < 0.03 * a) }' ||
        { echo "diloco: expected the losses within 3%"; exit 1; }
    ;;
fragments)
    extra="--train.global_batch=12 --diloco.inner_steps=5"
    host_dir() { ls -d "$runs/$1"/ckpt/*/step-00000010; }
    # shellcheck disable=SC2086
    train diloco_f5 2 $extra --diloco.fragments=5 --ckpt.every=5 --train.steps=12 &&
        train diloco_f1 2 $extra --ckpt.every=10 --train.steps=12 ||
        { echo "diloco: the runs to resume failed"; exit 1; }
    # shellcheck disable=SC2086
    train diloco_f5to1 2 $extra --ckpt.every=10 --resume "$(host_dir diloco_f5)" &&
        grep -q "local SGD state of 5 fragments, this run syncs everything at once" \
            "$runs/diloco_f5to1.out" ||
        { cat "$runs/diloco_f5to1.out"; echo "diloco: 5 fragments resumed as 1"; exit 1; }
    # shellcheck disable=SC2086
    train diloco_f1to5 2 $extra --diloco.fragments=5 --resume "$(host_dir diloco_f1)" &&
        grep -q "local SGD state of 1 fragment, this run cuts 5" "$runs/diloco_f1to5.out" ||
        { cat "$runs/diloco_f1to5.out"; echo "diloco: 1 fragment resumed as 5"; exit 1; }
    echo "diloco: checkpoints resumed with another number of fragments"
    ;;
*)
    echo "diloco.sh: unknown check '$check' (expected plain, resume, fragments or world)"
    exit 2
    ;;
esac
exit 0
