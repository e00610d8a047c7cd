#!/bin/sh
# run_dir.sh SCENARIO TESSERA TEST_CKPT_DIR EXPECT_ERROR OUT_DIR TRAIN_ARGS...
#
# What a start may do to a run directory and its checkpoints, with real `tessera train` runs
# (TESSERA_HOST=h, so the checkpoint root is RUN_DIR/ckpt/h). TRAIN_ARGS: the config and data
# arguments. Scenarios:
#   failed_start   a finished run's directory; starts that fail (bad shard pattern, bad tokenizer,
#                  a fresh start without run.overwrite, a bad resume path, --resume auto with a
#                  changed learning rate) each exit 2 with one error line and leave model.h5,
#                  metrics.jsonl, train.log, config.toml and the checkpoints byte-identical
#   fresh_over_ckpt  only another run's checkpoints in ckpt/ (this host's root, or a root of a
#                  host outside the job): a fresh start is refused before anything is written;
#                  run.overwrite removes them
#   stray          an empty step-99999999 (fresh start) and another run's step-99999999 (resume):
#                  every new save is kept (ckpt.keep = 1), the stray one too
#   keep_lineage   another run's step directories among this run's: keep-K counts and deletes
#                  only this run's; the resume skips the other run's newer one
#   symlink        a link to another run's step directory and a .tmp link: never resumed,
#                  pruned or followed; run.overwrite removes the link, not its target
#   half_deleted   a half-deleted step-N.del: never resumed, removed at the next start
#   overwrite      run.overwrite = true replaces a finished run: new lineage, old checkpoints gone
#   legacy         checkpoints written before run identities (no IDENTITY) resume and are pruned as
#                  the continued run's own (lineage 0)
#   by_path        --resume PATH with a changed learning rate: a warning naming it, the lineage
#                  continues
set -u
scenario=$1 bin=$2 ckpt_tool=$3 expect_error=$4 out=$5
shift 5
export TESSERA_HOST=h OMP_NUM_THREADS=1
dir=$out/$scenario
root=$dir/ckpt/h
fail() {
    echo "run_dir $scenario: $*" >&2
    exit 1
}
train() { # NAME ARGS...: one run, output in $out/$scenario.log (ARGS override the defaults here)
    name=$1
    shift
    "$bin" train --run.out_dir="$out" --run.name="$name" --log.every=1 --eval.every=0 \
        --log.sample_tokens=0 "$@" > "$out/$scenario.log" 2>&1
}
train_ok() {
    train "$@" || { cat "$out/$scenario.log"; fail "training $* failed"; }
}
# a fresh run directory NAME: 2 per step, STEPS steps, a checkpoint every EVERY, keep KEEP
fresh_run() { # NAME STEPS EVERY KEEP [ARGS...]
    n=$1 s=$2 e=$3 k=$4
    shift 4
    rm -rf "${out:?}/$n"
    train_ok "$n" "$@" --train.steps="$s" --ckpt.every="$e" --ckpt.keep="$k"
}
listing() { ls "$1" | tr '\n' ' ' | sed 's/ $//'; }
lineage_of() { sed -n 's/^lineage //p' "$1/IDENTITY"; }
snapshot() { # a listing with sizes and hashes of everything under the run directory
    (cd "$dir" && find . -path ./rank-0.status -prune -o -type f -print | sort | xargs md5sum)
}
expect_refused() { # REGEX ARGS...: exit 2, one error line matching REGEX, nothing changed
    re=$1
    shift
    before=$(snapshot)
    sh "$expect_error" 2 "$re" -- "$bin" train --run.out_dir="$out" --run.name="$scenario" \
        --log.every=1 --eval.every=0 --log.sample_tokens=0 "$@" ||
        fail "not refused as expected: $*"
    [ "$(snapshot)" = "$before" ] || fail "the run directory changed after: $*"
}
mkdir -p "$out"

case $scenario in
failed_start)
    fresh_run "$scenario" 4 2 5 "$@"
    for f in model.h5 metrics.jsonl train.log config.toml; do
        [ -f "$dir/$f" ] || fail "the first run left no $f"
    done
    first=$(snapshot)
    expect_refused "no_such/train_\\*\\.bin: no file matches this pattern" "$@" \
        "--data.train=$out/no_such/train_*.bin" --run.overwrite=true
    expect_refused "nonexistent_tokenizer\\.bin: cannot open tokenizer file" "$@" \
        --log.sample_tokens=5 "--data.tokenizer=$out/nonexistent_tokenizer.bin" \
        --run.overwrite=true
    expect_refused "ckpt/h: holds checkpoints of an earlier run \\(step-00000004\\); a fresh start does not mix with them: continue that run with --resume auto, start this one under another run.name, remove .*/ckpt, or set run.overwrite = true" "$@"
    expect_refused "resume: .*no_such_step is not an intact checkpoint" "$@" \
        "--run.resume=$out/no_such_step"
    expect_refused "step-00000004: written by another run \\(\\[train\\] lr = 0\\.001 in the checkpoint, 0\\.002 here\\); --resume auto continues only checkpoints of this run" \
        "$@" --train.lr=0.002 --run.resume=auto --train.steps=8
    [ "$(snapshot)" = "$first" ] || fail "the finished run's files changed"
    # without the checkpoints, the run directory's own results still stop a fresh start
    mv "$dir/ckpt" "$out/$scenario.ckpt"
    expect_refused "$scenario: holds the results of an earlier run \\(model\\.h5\\); a fresh start would replace them: continue that run with --resume auto, start this one under another run.name, or set run.overwrite = true to replace them" "$@"
    mv "$out/$scenario.ckpt" "$dir/ckpt"
    ;;
fresh_over_ckpt)
    fresh_run "$scenario" 4 2 5 "$@"
    rm "$dir/model.h5" "$dir/metrics.jsonl" "$dir/train.log" "$dir/config.toml"
    expect_refused "ckpt/h: holds checkpoints of an earlier run \\(step-00000004\\)" "$@"
    for f in model.h5 metrics.jsonl train.log config.toml; do
        [ -e "$dir/$f" ] && fail "a refused start wrote $f"
    done
    # the root of a host outside the job (one machine playing hosts, or a shared disk) counts too
    mv "$root" "$dir/ckpt/b"
    expect_refused "ckpt/b: holds checkpoints of an earlier run \\(step-00000004\\)" "$@"
    train_ok "$scenario" "$@" --train.steps=2 --ckpt.every=2 --run.overwrite=true
    grep -q "run.overwrite: removed 2 checkpoints of an earlier run from .*/ckpt/b" \
        "$out/$scenario.log" || fail "run.overwrite left host b's checkpoints"
    [ -z "$(listing "$dir/ckpt/b")" ] && [ "$(listing "$root")" = "step-00000002" ] ||
        fail "after run.overwrite: b: $(listing "$dir/ckpt/b"), h: $(listing "$root")"
    ;;
stray)
    # an empty stray directory: a fresh start is allowed, every save kept with ckpt.keep = 1
    rm -rf "$dir"
    mkdir -p "$root/step-99999999"
    train_ok "$scenario" "$@" --train.steps=6 --ckpt.every=2 --ckpt.keep=1
    [ "$(listing "$root")" = "step-00000006 step-99999999" ] || fail "after the fresh run: $(listing "$root")"
    [ "$(grep -c 'written in the background' "$out/$scenario.log")" -eq 3 ] || fail "three saves"
    # another run's checkpoint as step-99999999: skipped by the resume, never pruned
    fresh_run "$scenario.other" 2 2 1 "$@" --run.seed=2
    rmdir "$root/step-99999999"
    cp -r "$out/$scenario.other/ckpt/h/step-00000002" "$root/step-99999999"
    train_ok "$scenario" "$@" --train.steps=10 --ckpt.every=2 --ckpt.keep=1 --run.resume=auto
    grep -q "skipping step-99999999: written by another run" "$out/$scenario.log" ||
        fail "the other run's checkpoint was not skipped"
    grep -q "resumed from step 6 " "$out/$scenario.log" || fail "did not resume from step 6"
    [ "$(listing "$root")" = "step-00000010 step-99999999" ] || fail "after the resume: $(listing "$root")"
    "$bin" ckpt verify "$root/step-99999999" > /dev/null || fail "the other run's checkpoint changed"
    ;;
keep_lineage)
    fresh_run "$scenario" 10 2 5 "$@"
    fresh_run "$scenario.other" 3 1 3 "$@" --run.seed=2
    for m in 1:3 2:5 3:13; do
        cp -r "$out/$scenario.other/ckpt/h/step-0000000${m%%:*}" \
            "$root/$(printf 'step-%08d' "${m##*:}")"
    done
    train_ok "$scenario" "$@" --train.steps=14 --ckpt.every=2 --ckpt.keep=2 --run.resume=auto
    grep -q "resumed from step 10 " "$out/$scenario.log" || fail "did not resume from step 10"
    want="step-00000003 step-00000005 step-00000012 step-00000013 step-00000014"
    [ "$(listing "$root")" = "$want" ] || fail "kept $(listing "$root"), want $want"
    for s in 3 5 13; do
        "$bin" ckpt verify "$root/$(printf 'step-%08d' $s)" > /dev/null || fail "step $s changed"
    done
    ;;
symlink)
    fresh_run "$scenario" 4 2 5 "$@"
    fresh_run "$scenario.other" 2 2 1 "$@" --run.seed=2
    other=$out/$scenario.other/ckpt/h/step-00000002
    sums=$(cd "$other" && md5sum *)
    mkdir -p "$out/$scenario.victim" && echo precious > "$out/$scenario.victim/file"
    ln -s "$other" "$root/step-00000050"
    ln -s "$out/$scenario.victim" "$root/step-00000001.tmp"
    # a fresh start is refused over the link
    expect_refused "ckpt/h: holds checkpoints of an earlier run \\(step-00000050\\)" "$@"
    train_ok "$scenario" "$@" --train.steps=8 --ckpt.every=2 --ckpt.keep=1 --run.resume=auto
    grep -q "skipping step-00000050: not a directory" "$out/$scenario.log" || fail "link not skipped"
    grep -q "resumed from step 4 " "$out/$scenario.log" || fail "did not resume from step 4"
    [ "$(listing "$root")" = "step-00000008 step-00000050" ] || fail "root: $(listing "$root")"
    [ -L "$root/step-00000050" ] || fail "the linked step directory is gone"
    [ "$(cd "$other" && md5sum *)" = "$sums" ] || fail "the linked checkpoint's files changed"
    [ "$(cat "$out/$scenario.victim/file")" = precious ] || fail "the .tmp link's target changed"
    # run.overwrite: the link goes, its target stays
    train_ok "$scenario" "$@" --train.steps=2 --ckpt.every=2 --run.overwrite=true
    [ "$(listing "$root")" = "step-00000002" ] || fail "after run.overwrite: $(listing "$root")"
    [ "$(cd "$other" && md5sum *)" = "$sums" ] || fail "run.overwrite followed the link"
    ;;
half_deleted)
    fresh_run "$scenario" 6 2 5 "$@"
    # a pruning killed in the middle of deleting step 6: renamed, state.h5 already gone
    mv "$root/step-00000006" "$root/step-00000006.del"
    rm "$root/step-00000006.del/state.h5"
    train_ok "$scenario" "$@" --train.steps=8 --ckpt.every=2 --ckpt.keep=5 --run.resume=auto
    grep -q "resumed from step 4 " "$out/$scenario.log" || fail "did not resume from step 4"
    grep -q "step-00000006.del: removing the leftover of an interrupted save" "$out/$scenario.log" ||
        fail "the .del was not reported"
    want="step-00000002 step-00000004 step-00000006 step-00000008"
    [ "$(listing "$root")" = "$want" ] || fail "root: $(listing "$root"), want $want"
    ;;
overwrite)
    fresh_run "$scenario" 4 2 5 "$@" --data.log_samples=true
    old=$(lineage_of "$root/step-00000004")
    cp "$dir/model.h5" "$out/$scenario.old.h5"
    train_ok "$scenario" "$@" --train.steps=3 --ckpt.every=0 --run.overwrite=true
    grep -q "run.overwrite: removed 2 checkpoints of an earlier run from .*ckpt/h" \
        "$out/$scenario.log" || fail "no line about the removed checkpoints"
    [ "$(listing "$root")" = "step-00000003" ] || fail "root: $(listing "$root")"
    new=$(lineage_of "$root/step-00000003")
    [ -n "$new" ] && [ "$new" != "$old" ] || fail "lineage $new, the old one was $old"
    cmp -s "$dir/model.h5" "$out/$scenario.old.h5" && fail "model.h5 not replaced"
    [ -e "$dir/samples.rank-0.txt" ] && fail "the old run's sample audit is left"
    [ "$(grep -c '"step"' "$dir/metrics.jsonl")" -eq 3 ] || fail "metrics.jsonl not rewritten"
    ;;
legacy)
    fresh_run "$scenario" 10 5 5 "$@"
    for s in 5 10; do
        "$ckpt_tool" --make-legacy "$root/$(printf 'step-%08d' $s)" || fail "make-legacy $s"
    done
    train_ok "$scenario" "$@" --train.steps=14 --ckpt.every=2 --ckpt.keep=2 --run.resume=auto
    grep -q "resumed from step 10 " "$out/$scenario.log" || fail "did not resume from step 10"
    grep -q "lineage 0000000000000000 (continues checkpoints written before run identities)" \
        "$out/$scenario.log" || fail "no lineage 0 line"
    [ "$(listing "$root")" = "step-00000012 step-00000014" ] || fail "root: $(listing "$root")"
    [ "$(lineage_of "$root/step-00000014")" = 0000000000000000 ] || fail "lineage not continued"
    ;;
by_path)
    fresh_run "$scenario" 4 2 5 "$@"
    lin=$(lineage_of "$root/step-00000004")
    train_ok "$scenario" "$@" --train.steps=6 --ckpt.every=2 --train.lr=0.002 \
        "--run.resume=$root/step-00000004"
    grep -q "step-00000004: written with \\[train\\] lr = 0.001 in the checkpoint, 0.002 here; the run continues with this config" \
        "$out/$scenario.log" || fail "no warning naming the changed key"
    grep -q "resumed from step 4 " "$out/$scenario.log" || fail "did not resume from step 4"
    [ "$(lineage_of "$root/step-00000006")" = "$lin" ] || fail "the lineage did not continue"
    # --resume auto now continues the checkpoints of the changed config
    train_ok "$scenario" "$@" --train.steps=8 --ckpt.every=2 --train.lr=0.002 --run.resume=auto
    grep -q "resumed from step 6 " "$out/$scenario.log" || fail "auto did not resume from step 6"
    ;;
*)
    fail "unknown scenario"
    ;;
esac
echo "run_dir $scenario: ok"
