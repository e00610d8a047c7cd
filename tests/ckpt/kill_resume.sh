#!/bin/sh
# kill_resume.sh TESSERA OUT_DIR NAME DELAY TRAIN_ARGS...
#
# A writer killed in the middle of a save. Trains with a checkpoint after every step (the
# background writer is then busy nearly all the time), waits until three checkpoints exist,
# sleeps DELAY seconds and SIGKILLs the process. Then: the resume must pick the newest step
# directory whose manifest verifies (`tessera ckpt verify`), never a partial one, and the
# leftover step-*.tmp of the interrupted save must be gone after the resumed run.
set -u
bin=$1 out=$2 name=$3 delay=$4
shift 4
run=$out/$name
root=$run/ckpt/h
rm -rf "$run" "$run".*.out
mkdir -p "$out"
"$bin" train "$@" --run.out_dir="$out" --run.name="$name" --train.steps=1000000 \
    --ckpt.every=1 --ckpt.keep=3 --log.every=1000 --eval.every=0 --log.sample_tokens=0 \
    > "$run.kill.out" 2>&1 &
pid=$!
i=0
while [ "$(ls -d "$root"/step-???????? 2>/dev/null | wc -l)" -lt 3 ]; do
    i=$((i + 1))
    if ! kill -0 "$pid" 2>/dev/null || [ $i -gt 1000 ]; then
        echo "kill_resume: no three checkpoints within 10 s" >&2
        kill -9 "$pid" 2>/dev/null
        cat "$run.kill.out"
        exit 1
    fi
    sleep 0.01
done
sleep "$delay"
kill -9 "$pid"
wait "$pid" 2>/dev/null
echo "after SIGKILL ($delay s after the third checkpoint): $(ls "$root" | tr '\n' ' ')"
partial=$(ls -d "$root"/*.tmp "$root"/*.del 2>/dev/null | wc -l)

# the newest step directory that verifies is what the resume must use
expect=""
for d in $(ls -d "$root"/step-???????? | sort -r); do
    if "$bin" ckpt verify "$d" > /dev/null 2>&1; then
        expect=$d
        break
    fi
    echo "kill_resume: $d does not verify (a resume must skip it)"
done
if [ -z "$expect" ]; then
    echo "kill_resume: no step directory verifies after the kill" >&2
    exit 1
fi
base=${expect##*/}
step=$(expr "${base#step-}" + 0)

"$bin" train "$@" --run.out_dir="$out" --run.name="$name" --train.steps=$((step + 2)) \
    --ckpt.every=1 --ckpt.keep=3 --log.every=1 --eval.every=0 --log.sample_tokens=0 \
    --run.resume=auto > "$run.resume.out" 2>&1
rc=$?
cat "$run.resume.out"
if [ $rc -ne 0 ]; then
    echo "kill_resume: the resumed run exited $rc" >&2
    exit 1
fi
if ! grep -q "resumed from step $step (.*/$base)" "$run.resume.out"; then
    echo "kill_resume: expected the resume from $base (the newest intact checkpoint)" >&2
    exit 1
fi
left=$(ls -d "$root"/*.tmp "$root"/*.del "$root"/*.old 2>/dev/null)
if [ -n "$left" ]; then
    echo "kill_resume: leftovers of the interrupted save remain: $left" >&2
    exit 1
fi
for d in "$root"/step-????????; do
    "$bin" ckpt verify "$d" > /dev/null || { echo "kill_resume: $d does not verify" >&2; exit 1; }
done
echo "kill_resume: killed with $partial partial director$([ "$partial" = 1 ] && echo y || echo ies) left; resumed from $base, leftovers cleaned"
