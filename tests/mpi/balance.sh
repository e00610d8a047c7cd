#!/bin/sh
# balance.sh CHECK TESSERA RUNS CORPUS MPIRUN... — work that follows measured speed, with real
# ranks whose speeds are set by real CPU limits: each rank joins a cgroup (the v1 cpu
# controller's cfs_quota_us) before it starts, so a rank at 0.1 of a core computes at a quarter
# of the speed of one at 0.4. The quotas sum to less than this machine's two cores and each stays
# under one, so the quotas, not the cores, set the speeds. CHECK is one of:
#
#   converge   4 ranks at 0.4, 0.4, 0.2 and 0.1 of a core (speeds 1, 1, 0.5, 0.25) start from
#              equal shares; within 30 steps the shares follow the measured speeds (each within
#              a third of its ideal 16/16/8/4 of 44), the measured speeds keep their order and
#              their ratios are within a factor of 2 of the quotas' (a rank that waits for the
#              others spends its quota polling Open MPI, which slows its next forward pass: the
#              fast ranks measure slower than their quota, by up to a third here); the lineage
#              of samples is exact.
#   slowed     4 equal ranks; rank 1 drops to half its quota after step 10: within 10 steps
#              its share falls to at most 0.7 of the others' mean.
#   drop       balance.policy = drop, micro-batches of one sequence, rank 2 flapping between
#              0.4 and 0.05 of a core: late ranks give sequences back, none is lost or trained
#              twice (the lineage check replays the queue), and every rank ends with the same
#              weights (the trainer's own check).
#   drop_diloco  the same in local SGD (4 inner steps): the pseudo-gradients weighted by the
#              samples each rank trained, the lineage exact.
#   resume     the drop run's setting with a checkpoint every 5 steps and rank 3 killed at
#              step 13: the resume on 4 ranks keeps the checkpoint's speeds and shares, the one
#              on 3 ranks measures again; both continue the sample queue (lineage exact).
#
# Exit 77 (skipped) where cgroup v1's cpu controller cannot be written (not root, cgroup v2).
set -u
check=$1 tessera=$2 runs=$3 corpus=$4
shift 4
MPIRUN="$*"
here=$(cd "$(dirname "$0")" && pwd)
cfg="$here/../../configs/tiny.ini"
lineage="$here/../ckpt/check_lineage.sh"
cpu=/sys/fs/cgroup/cpu
if [ ! -w "$cpu" ] || [ ! -e "$cpu/cpu.cfs_quota_us" ]; then
    echo "balance: no writable cgroup v1 cpu controller at $cpu: skipped"
    exit 77
fi
group="$cpu/tessera-balance-$$"
mkdir -p "$runs"
cleanup() {
    # a flapping quota stops first (it would make its group again)
    [ -n "${flap_stop:-}" ] && touch "$flap_stop"
    wait
    for g in "$group"/rank-*; do
        [ -d "$g" ] || continue
        # what is left inside goes back to the root group first (rmdir needs it empty)
        while read -r p; do echo "$p" > "$cpu/cgroup.procs" 2>/dev/null; done < "$g/cgroup.procs"
        rmdir "$g" 2>/dev/null
    done
    rmdir "$group" 2>/dev/null
}
trap cleanup EXIT INT TERM
PERIOD=20000 # us: short periods keep a quota's bursts small beside a step (as the lab's)
quota() { # RANK FRACTION_OF_A_CORE
    mkdir -p "$group/rank-$1"
    echo "$PERIOD" > "$group/rank-$1/cpu.cfs_period_us"
    awk -v f="$2" -v p="$PERIOD" 'BEGIN { q = int(f * p); if (q < 1000) q = 1000; print q }' \
        > "$group/rank-$1/cpu.cfs_quota_us"
}
# each rank joins its rank's cgroup, then becomes tessera
wrap="$runs/join-cgroup.sh"
cat > "$wrap" <<EOF
#!/bin/sh
echo \$\$ > "$group/rank-\${OMPI_COMM_WORLD_RANK:-0}/cgroup.procs" || exit 1
exec "\$@"
EOF
chmod +x "$wrap"

base="--data.train=$corpus/train_*.bin --data.val=$corpus/val_*.bin --run.out_dir=$runs \
--model.width=128 --model.seq_len=64 --train.global_batch=44 --train.micro_batch=4 \
--log.every=1 --eval.every=0 --eval.batches=1 --log.sample_tokens=0 --run.overwrite=true \
--data.log_samples=true"
fault=""
train() { # NAME NP STEPS OPTIONS...: one run, its output in RUNS/NAME.out
    name=$1 np=$2 steps=$3
    shift 3
    # shellcheck disable=SC2086
    $MPIRUN -np "$np" $fault "$wrap" "$tessera" train "$cfg" $base --train.steps="$steps" \
        --run.name="$name" "$@" > "$runs/$name.out" 2>&1
}
fail() {
    echo "balance $check: $*"
    exit 1
}
# the last metrics record's field (an array as "a b c")
field() { # RUN_DIR FIELD [LINE]
    tail -n 1 "$1/metrics.jsonl" | python3 -c "import json,sys; v=json.loads(sys.stdin.read())['$2']; print(' '.join(str(x) for x in v) if isinstance(v, list) else v)"
}
# the step a run's metrics first show a condition (python expression on r: the record)
first_step() { # RUN_DIR EXPR
    python3 - "$1/metrics.jsonl" "$2" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "shares" in r and eval(sys.argv[2]):
        print(r["step"]); break
else:
    print(-1)
EOF
}
# raise QUOTA for RANK once the run's metrics show STEP (in the background); prints the step seen
slow_at() { # RUN_DIR STEP RANK FRACTION
    (
        while :; do
            s=$(tail -n 1 "$1/metrics.jsonl" 2>/dev/null | sed -n 's/^{"step": \([0-9]*\),.*/\1/p')
            if [ -n "$s" ] && [ "$s" -ge "$2" ]; then
                awk -v f="$4" -v p="$PERIOD" 'BEGIN { q = int(f * p); if (q < 1000) q = 1000; print q }' \
                    > "$group/rank-$3/cpu.cfs_quota_us"
                echo "$s" > "$1.slowed"
                exit 0
            fi
            sleep 0.01
        done
    ) &
}

# a flapping node: RANK's quota alternates between FAST and SLOW every 250 ms until STOP_FILE
# exists (an intermittent straggler: each slow spell is a surprise to the estimates)
flap() { # RANK FAST SLOW STOP_FILE
    flap_stop=$4
    (
        while [ ! -e "$4" ]; do
            quota "$1" "$3"
            sleep 0.25
            quota "$1" "$2"
            sleep 0.25
        done
    ) &
}

case $check in
converge)
    for r in 0 1 2 3; do quota $r 0.4; done
    quota 2 0.2
    quota 3 0.1
    train converge 4 30 || { cat "$runs/converge.out"; fail "the run failed"; }
    shares=$(field "$runs/converge" shares)
    speeds=$(field "$runs/converge" speeds)
    echo "shares at the end: $shares (ideal 16 16 8 4); measured speeds: $speeds samples/s"
    python3 - "$shares" "$speeds" <<'EOF' || fail "shares or speeds off"
import sys
shares = [int(x) for x in sys.argv[1].split()]
speeds = [float(x) for x in sys.argv[2].split()]
ideal, rel = [16, 16, 8, 4], [1, 1, 0.5, 0.25]
ok = all(abs(s - i) <= i / 3 for s, i in zip(shares, ideal))
ref = (speeds[0] + speeds[1]) / 2
ok &= all(w / 2 <= v / ref <= w * 2 for v, w in zip(speeds, rel))
ok &= speeds[1] > speeds[2] > speeds[3] and speeds[0] > speeds[2]
print("speeds relative to the fast ranks:", " ".join(f"{v / ref:.2f}" for v in speeds))
sys.exit(0 if ok else 1)
EOF
    sh "$lineage" "$runs/converge" 30 44 || fail "lineage"
    ;;
slowed)
    for r in 0 1 2 3; do quota $r 0.3; done
    rm -f "$runs/slowed.slowed"
    mkdir -p "$runs/slowed"
    rm -f "$runs/slowed/metrics.jsonl"
    slow_at "$runs/slowed" 10 1 0.15
    train slowed 4 40 || { cat "$runs/slowed.out"; fail "the run failed"; }
    wait
    at=$(cat "$runs/slowed.slowed" 2>/dev/null || echo -1)
    [ "$at" -ge 10 ] || fail "rank 1 was never slowed"
    seen=$(first_step "$runs/slowed" "r['step'] > $at and r['shares'][1] <= 0.7 * (r['shares'][0] + r['shares'][2] + r['shares'][3]) / 3")
    echo "rank 1 halved after step $at; its share fell to at most 0.7 of the others' at step $seen"
    [ "$seen" -gt 0 ] && [ $((seen - at)) -le 10 ] || fail "not re-balanced within 10 steps"
    ;;
drop | drop_diloco | resume)
    for r in 0 1 2 3; do quota $r 0.4; done
    opts="--balance.policy=drop --train.micro_batch=1 --balance.deadline=1.5"
    if [ "$check" != resume ]; then
        [ "$check" = drop_diloco ] && opts="$opts --diloco.inner_steps=4"
        rm -f "$runs/$check.done"
        flap 2 0.4 0.05 "$runs/$check.done"
        # shellcheck disable=SC2086
        train "$check" 4 30 $opts
        rc=$?
        touch "$runs/$check.done"
        wait
        [ $rc -eq 0 ] || { cat "$runs/$check.out"; fail "the run failed"; }
        grep -q "late:" "$runs/$check.out" || fail "no rank was late"
        grep "given back to the next step" "$runs/$check.out" || fail "no final balance report"
        grep -q "go to the next step" "$runs/$check.out" || fail "no sequence was given back"
        sh "$lineage" "$runs/$check" 30 44 || fail "lineage"
        # the check can fail: a copy with one given-back sample's later training removed
        rm -rf "$runs/damaged" && mkdir -p "$runs/damaged"
        cp "$runs/$check"/samples.rank-*.txt "$runs/damaged/"
        g=$(cat "$runs/damaged"/samples.rank-*.txt | awk '$3 == "dropped" { print $2; exit }')
        sed -i "/^[0-9]* $g\$/d" "$runs/damaged"/samples.rank-*.txt
        sh "$lineage" "$runs/damaged" 30 44 > /dev/null && fail "a lost sample passed the check"
        exit 0
    fi
    # resume: killed at the start of step 13 after the checkpoint of step 10
    mkdir -p "$runs/resume"
    rm -f "$runs/resume/metrics.jsonl" "$runs/resume.done"
    flap 2 0.4 0.05 "$runs/resume.done"
    fault="-x TESSERA_FAULT=3:13:before:kill"
    # shellcheck disable=SC2086
    train resume 4 20 $opts --ckpt.every=5 && fail "the killed run succeeded"
    fault=""
    before=$(python3 -c "import json; print(' '.join(str(x) for x in [json.loads(l) for l in open('$runs/resume/metrics.jsonl')][9]['shares']))")
    # shellcheck disable=SC2086
    train resume 4 20 $opts --ckpt.every=5 --run.resume=auto --run.overwrite=false ||
        { cat "$runs/resume.out"; fail "the resume on 4 ranks failed"; }
    grep -q "speeds and shares of the checkpoint kept" "$runs/resume.out" ||
        fail "the 4-rank resume did not keep the balancing state"
    after=$(python3 -c "import json; r=[json.loads(l) for l in open('$runs/resume/metrics.jsonl')]; print(' '.join(str(x) for x in [x for x in r if x['step'] == 11][-1]['shares']))")
    echo "shares after step 10: $before; after the resume's first step: $after"
    sh "$lineage" "$runs/resume" 20 44 || fail "lineage (4 ranks)"
    # again from step 15's checkpoint, on 3 ranks: measured again, the queue kept
    rm -f "$runs/resume/ckpt"/*/step-00000020 -r
    # shellcheck disable=SC2086
    train resume 3 20 $opts --ckpt.every=5 --run.resume=auto --run.overwrite=false ||
        { cat "$runs/resume.out"; fail "the resume on 3 ranks failed"; }
    grep -q "another world size: speeds measured again" "$runs/resume.out" ||
        fail "the 3-rank resume did not measure again"
    sh "$lineage" "$runs/resume" 20 44 || fail "lineage (3 ranks)"
    touch "$runs/resume.done"
    wait
    ;;
*)
    fail "unknown check"
    ;;
esac
