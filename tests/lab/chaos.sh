#!/bin/bash
# chaos.sh check|chaos — the lab's own CTests (label lab). Both need root and network
# namespaces; where they cannot be made the test is skipped (exit 77). The lab of the tests has
# its own state folder and name prefix, so a lab a person has up is left alone.
#   check   2 hosts: throughput across a link capped at 10 and 50 Mbit/s matches the cap (both
#           directions), and the bytes the trainer reports sending match the veth counters
#   chaos   4 hosts at 100 Mbit/s: a fault-free run, then the same run under a schedule with a
#           node loss, its return, a partition and its healing, a paused host, a kill during a
#           checkpoint write and a host joining; scripts/lab report asserts completion, no wait
#           past deadline + grace, every sequence once, at most one interval redone per fault,
#           final validation loss within 1% of the fault-free run
# Environment: CORPUS (token shards), RUNS (parent of run directories).
set -u
here=$(cd "$(dirname "$0")" && pwd)
lab="$here/../../scripts/lab"
export TESSERA_LAB_STATE=/run/tessera-lab-test TESSERA_LAB_PREFIX=tlt
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mode=$1
if [ "$(id -u)" -ne 0 ] || ! ip netns add tlt-probe 2>/dev/null; then
    echo "lab $mode: SKIP: network namespaces cannot be made here (root with CAP_NET_ADMIN needed)"
    exit 77
fi
ip netns del tlt-probe
trap '"$lab" down >/dev/null 2>&1' EXIT
fail() { echo "lab $mode: FAIL: $*"; exit 1; }
args() { # NAME
    printf '%s\n' "$here/../../configs/tiny.ini" "--data.train=$CORPUS/train_*.bin" \
        "--data.val=$CORPUS/val_*.bin" "--run.out_dir=$RUNS" "--run.name=$1" \
        --train.steps=2000 --ckpt.every=10 --log.every=1 --eval.every=0 --log.sample_tokens=0 \
        --comm.timeout_s=3 --data.log_samples=true --train.eps=1e-6
}
case $mode in
check)
    "$lab" up 2 || fail "lab up"
    "$lab" check --rates 10 50 --seconds 2 --train "$here/../../configs/tiny.ini" -- \
        "--data.train=$CORPUS/train_*.bin" "--data.val=$CORPUS/val_*.bin" --train.steps=20 ||
        fail "the shaping check"
    ;;
chaos)
    mkdir -p "$RUNS"
    "$lab" up 4 --rate 100 || fail "lab up"
    rm -rf "$RUNS/lab_ref" "$RUNS/lab_chaos"
    mapfile -t REF < <(args lab_ref)
    "$lab" chaos --run-dir "$RUNS/lab_ref" --log "$RUNS/lab_ref.log" -- "${REF[@]}" ||
        { tail -30 "$RUNS/lab_ref.log"; fail "the fault-free run"; }
    cat >"$RUNS/lab_schedule" <<'SCHED'
# seconds after the start, action, host
3 kill h2
7 revive h2
11 partition h3
14 heal h3
19 pause h4
25 ckpt-kill h1
29 add
SCHED
    mapfile -t RUN < <(args lab_chaos)
    "$lab" chaos --schedule "$RUNS/lab_schedule" --run-dir "$RUNS/lab_chaos" \
        --log "$RUNS/lab_chaos.log" -- "${RUN[@]}" ||
        { tail -40 "$RUNS/lab_chaos.log"; fail "the chaos run"; }
    grep 'launch [0-9]' "$RUNS/lab_chaos.log"
    n=$(grep -c . "$RUNS/lab_chaos/launch/faults.jsonl")
    [ "$n" -eq 7 ] || fail "$n of 7 faults were injected before the run ended"
    "$lab" report "$RUNS/lab_chaos" --reference "$RUNS/lab_ref" || fail "the report"
    ;;
*)
    echo "chaos.sh: unknown mode '$mode'" >&2
    exit 2
    ;;
esac
