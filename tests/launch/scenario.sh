#!/bin/bash
# scenario.sh NAME [ARGS] — the launcher (scripts/launch run --local) through one real failure or
# request, with real mpirun, real ranks and real signals. Several "hosts" share this machine:
# each rank runs with TESSERA_HOST=<host of the hostfile>, and the probe is a command this script
# controls. Environment: TESSERA (binary), CORPUS (shards), RUNS (parent of run directories),
# WEIGHTS_CLOSE, CHECK_LINEAGE; the uninterrupted 2-rank reference is $RUNS/launch_ref.
#
#   ref                     the reference run (plain mpirun, 2 ranks) — a CTest fixture
#   crash SPEC STEP [KEY]   TESSERA_FAULT=SPEC kills a rank; one restart, resumed from STEP,
#                           weights bit-identical to the reference, losses equal (KEY: one more
#                           override)
#   hung                    a rank SIGSTOPs itself; detected by the deadline, restarted, identical
#   host_lost               3 hosts; host c's rank dies and the probe declares c dead: the run ends
#                           on 2 ranks and the committed lineage uses every sequence once
#   host_back               as host_lost, then c answers again: re-admitted at a planned stop
#   stop                    SIGTERM to the launcher: exit 0, a checkpoint at the stopping step; a
#                           new launcher continues and ends identical to the reference
#   interrupt               a rank hangs, so a planned stop cannot complete; SIGINT twice: the
#                           job is gone at once (not at the 30 s deadline), checkpoints verify
#   drain                   3 hosts; `launch drain b` mid-run: b leaves at a planned stop, the run
#                           resumes from that very step and finishes; lineage intact
#   join                    2 hosts; c is added to the hostfile mid-run: it joins at a planned stop
#                           and receives the checkpoint from a holder; lineage intact
#   bad_input               a missing data path: exit 2 after one attempt, no retry
#   not_retried SPEC WHY    TESSERA_FAULT=SPEC makes a rank end as a bug (panic: status
#                           "internal" and exit 70; exit70: exit 70 without a status file, its
#                           host still answering): exit 70 after one attempt, no retry, and the
#                           launcher's line about the attempt's end matches WHY
#   stale_pid               launcher.pid names a live process that is no launcher of the run (with
#                           and without a start time): `launch status` says none runs, and `launch
#                           run` starts and finishes instead of refusing
#   stop_dir                RUN_DIR/STOP is a directory (no stop request: it cannot be served by
#                           removing it): the launcher warns once, the run finishes in one attempt
#   remote                  not --local: mpirun starts each host's daemon through an rsh agent
#                           (uts_rsh.sh: this machine in a UTS namespace named after the host), the
#                           cleanup runs through --remote; a rank killed, restart, identical
#                           (skipped where UTS namespaces cannot be made)
#   node_sigterm            as remote; every process of host b gets SIGTERM (a node shut down
#                           without a drain): a node loss, restarted, identical to the reference
#   host_frozen             as remote; every process of host b is SIGSTOPped and b never answers
#                           again: found by the deadline, mpirun ended, finished on host a alone
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
launch="$root/scripts/launch"
scenario=$1
shift
STEPS=300
name=launch_$scenario${1:+_$(printf '%s' "$1" | tr ':' '_')}
dir="$RUNS/$name"
ref="$RUNS/launch_ref"
work="$RUNS/$name.work"
out="$work/out"
job=""
others=""
cleanup() {
    [ -z "$others" ] || kill $others 2>/dev/null
    if [ -n "$job" ] && kill -0 "$job" 2>/dev/null; then
        kill -KILL "$job" 2>/dev/null
        # the job's ranks carry the launch id: nothing may outlive a failed test
        pkill -KILL -f -- "--run.name=$name( |$)" 2>/dev/null
    fi
}
trap cleanup EXIT
fail() {
    echo "--- launcher output (tail) ---"
    tail -n 40 "$out" 2>/dev/null
    echo "scenario $scenario: FAIL: $*"
    exit 1
}
train_args() {
    printf '%s\n' "$root/configs/tiny.ini" "--data.train=$CORPUS/train_*.bin" \
        "--data.val=$CORPUS/val_*.bin" "--run.out_dir=$RUNS" "--run.name=$1" \
        "--train.steps=$STEPS" --train.global_batch=12 --train.micro_batch=2 --ckpt.every=5 \
        --log.every=1 --eval.every=0 --log.sample_tokens=0 --train.eps=1e-6 \
        --comm.timeout_s=3 --data.log_samples=true --balance.on=false
}
# (balance.on = false: restarts are compared with the reference run bit for bit, which shares
# that follow timing would not allow)
mapfile -t ARGS < <(train_args "$name")

# the launcher in the background; its output in $out
start_launcher() {
    setsid "$launch" run --local --hostfile "$work/hosts" --grace 3 --probe-timeout 5 "$@" \
        -- "${ARGS[@]}" >"$out" 2>&1 &
    job=$!
}
host_signal() { # HOST SIG: signal SIG (TERM, STOP) to every process in the UTS namespace of
    # HOST's rank, found and signalled by one process (a short run may end while a search that
    # forks per process goes on, on a loaded machine); prints their pids
    python3 - "$name" "$1" "$2" <<'PY'
import os, signal, sys
name, host, sig = sys.argv[1], sys.argv[2], getattr(signal, "SIG" + sys.argv[3])
def read(p, what):
    try:
        with open(f"/proc/{p}/{what}", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []
def uts(p):
    try:
        return os.readlink(f"/proc/{p}/ns/uts")
    except OSError:
        return None
pids = [p for p in os.listdir("/proc") if p.isdigit()]
rank = next((p for p in pids if f"--run.name={name}".encode() in read(p, "cmdline")
             and f"TESSERA_HOST={host}".encode() in read(p, "environ")), None)
if rank is None:
    sys.exit(f"the rank of host {host} was not found")
ns = uts(rank)
if ns is None or ns == uts("self"):
    sys.exit(f"the rank of host {host} is not in a UTS namespace of its own")
victims = [int(p) for p in pids if uts(p) == ns]
for p in victims:
    try:
        os.kill(p, sig)
    except OSError:
        pass
print(" ".join(map(str, victims)))
PY
}
# not --local: each host's daemon through the rsh agent, in a UTS namespace of its own
start_remote_launcher() {
    unshare --uts true 2>/dev/null || { echo "scenario $scenario: SKIP: unshare --uts fails here"; exit 77; }
    setsid "$launch" run --hostfile "$work/hosts" --grace 3 --probe true "$@" \
        --remote "$here/uts_rsh.sh {host}" \
        --mpirun-args "--mca plm_rsh_agent $here/uts_rsh.sh --mca btl self,tcp" \
        -- "${ARGS[@]}" >"$out" 2>&1 &
    job=$!
}
wait_launcher() { # SECONDS: the launcher's exit code in $rc
    local i
    for i in $(seq 1 $(($1 * 10))); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$job" 2>/dev/null && fail "the launcher still runs after $1 s"
    wait "$job"
    rc=$?
    job=""
}
wait_step() { # N: until the run's metrics reach step N
    local i last
    for i in $(seq 1 600); do
        last=$(tail -n 1 "$dir/metrics.jsonl" 2>/dev/null | sed -n 's/.*"step": \([0-9]*\),.*/\1/p')
        [ -n "$last" ] && [ "$last" -ge "$1" ] && return 0
        kill -0 "$job" 2>/dev/null || fail "the launcher ended before step $1"
        sleep 0.1
    done
    fail "step $1 not reached in 60 s"
}
same_as_ref() {
    "$WEIGHTS_CLOSE" "$ref/model.h5" "$dir/model.h5" 0 || fail "weights differ from the reference"
    sh "$root/tests/ckpt/losses.sh" "$ref/metrics.jsonl" "$dir/metrics.jsonl" 1 $STEPS ||
        fail "the losses differ from the reference"
}
expect() { grep -q -- "$1" "$out" || fail "$2"; } # REGEX WHY: the launcher's output has REGEX
stop_step() { sed -n 's/.*stopping after step \([0-9]*\) with a checkpoint.*/\1/p' "$out" | head -1; }
attempts() { grep -c '"event": "start"' "$dir/launch/events.jsonl"; }
lineage() { sh "$CHECK_LINEAGE" "$dir" $STEPS 12 || fail "committed lineage"; }
finished_ok() {
    [ "$rc" -eq 0 ] || fail "launcher exit $rc, want 0"
    expect "the run finished" "no 'the run finished'"
    [ "$(tail -n 1 "$dir/metrics.jsonl" | sed -n 's/.*"step": \([0-9]*\),.*/\1/p')" = $STEPS ] ||
        fail "the metrics do not end at step $STEPS"
}

rm -rf "$dir" "$work"
mkdir -p "$work"
printf 'a\nb\n' >"$work/hosts"

case $scenario in
ref)
    mapfile -t ARGS < <(train_args launch_ref)
    rm -rf "$ref"
    TESSERA_HOST=a $TESSERA_MPIRUN -np 2 "$TESSERA" train "${ARGS[@]}" >"$out" 2>&1 ||
        fail "reference run"
    echo "scenario ref: $STEPS steps on 2 ranks"
    ;;
crash | hung)
    spec=${1:-1:12:inside:stop}
    want=${2:-10}
    [ $# -ge 3 ] && ARGS+=("$3")
    TESSERA_FAULT=$spec start_launcher
    wait_launcher 120
    finished_ok
    expect "fault injection: rank" "the fault did not fire"
    expect "failure detected" "no 'failure detected'"
    [ "$(attempts)" -eq 2 ] || fail "$(attempts) attempts, want 2"
    expect "attempt 2: training (step $((want + 1)), resumed from step $want)" "attempt 2 did not resume from step $want"
    same_as_ref
    lineage
    echo "scenario $scenario $spec: restarted once, resumed from step $want, identical to the reference"
    ;;
host_lost)
    printf 'a\nb\nc\n' >"$work/hosts"
    # c answers until the first attempt has ended (its statuses archived), then never again
    TESSERA_FAULT=2:12:after:kill start_launcher \
        --probe "[ {host} != c ] || [ ! -d '$dir/launch/attempt-1' ]"
    wait_launcher 120
    finished_ok
    expect "host c: does not answer the probe: dropped" "c was not dropped"
    expect "attempt 2: mpirun .* on 2 hosts (a, b), 2 ranks" "no restart on a, b"
    expect "attempt 2: training (step 11, resumed from step 10)" "resume step"
    lineage
    echo "scenario host_lost: c dropped, finished on 2 ranks, every sequence once"
    ;;
host_back)
    # c is lost (its rank killed, the probe failing) and comes back while the run goes on on a, b:
    # it is re-admitted and joins at a planned stop
    printf 'a\nb\nc\n' >"$work/hosts"
    TESSERA_FAULT=2:12:after:kill start_launcher --join-interval 0 --probe-interval 0 \
        --probe "[ {host} != c ] || [ ! -d '$dir/launch/attempt-1' ] || [ -e '$work/c-back' ]"
    for _ in $(seq 1 600); do grep -q "attempt 2: training" "$out" && break; sleep 0.1; done
    expect "attempt 2: mpirun .* on 2 hosts (a, b), 2 ranks" "no restart on a, b"
    touch "$work/c-back"
    wait_launcher 120
    finished_ok
    expect "host c: answers again: re-admitted" "c was not re-admitted"
    expect "attempt 3: mpirun .* on 3 hosts (a, b, c), 3 ranks" "c did not join again"
    lineage
    echo "scenario host_back: c lost, back, re-admitted at a planned stop; every sequence once"
    ;;
stop)
    start_launcher
    wait_step 20
    kill -TERM "$job"
    wait_launcher 60
    [ "$rc" -eq 0 ] || fail "exit $rc after SIGTERM, want 0"
    step=$(stop_step)
    [ -n "$step" ] || fail "no 'stopping after step N'"
    [ "$step" -lt $STEPS ] || fail "stopped only at the end"
    expect "stopped on request" "no 'stopped on request'"
    for h in a b; do
        "$TESSERA" ckpt verify "$(printf '%s/ckpt/%s/step-%08d' "$dir" $h "$step")" >/dev/null ||
            fail "no intact checkpoint of step $step on $h"
    done
    [ "$(attempts)" -eq 1 ] || fail "the launcher restarted after a planned stop"
    # the same command continues from exactly that step
    start_launcher
    wait_launcher 120
    finished_ok
    expect "resumed from step $step " "the second launcher did not resume from $step"
    same_as_ref
    echo "scenario stop: stopped after step $step with a checkpoint, continued, identical to the reference"
    ;;
interrupt)
    # rank 1 hangs at step 22, so the planned stop asked by the first SIGINT cannot complete (the
    # deadline is 30 s); the second SIGINT must end everything at once
    ARGS+=(--comm.timeout_s=30)
    TESSERA_FAULT=1:22:before:stop start_launcher
    wait_step 21
    sleep 0.5
    t0=$(date +%s)
    kill -INT "$job"
    sleep 1
    kill -INT "$job"
    wait_launcher 30
    [ $(($(date +%s) - t0)) -le 10 ] || fail "the second SIGINT did not stop the job at once"
    [ "$rc" -ne 0 ] || fail "exit 0 after a double interrupt"
    expect "stopping at once" "no 'stopping at once'"
    sleep 0.5
    pgrep -f -- "--run.name=$name( |$)" >/dev/null && fail "processes of the job survive"
    # check what a resume considers, no more: committed step-NNNNNNNN directories (8 digits, no
    # suffix) holding a MANIFEST. The SIGKILL may land inside a save or a prune: its leftovers
    # (.tmp, .old, a half-deleted .del) are no checkpoints, and the next start removes them
    n=0
    for ck in "$dir"/ckpt/*/step-*; do
        case ${ck##*/} in step-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]) ;; *) continue ;; esac
        [ -d "$ck" ] && [ -f "$ck/MANIFEST" ] || continue
        "$TESSERA" ckpt verify "$ck" >/dev/null || fail "$ck does not verify"
        n=$((n + 1))
    done
    [ "$n" -gt 0 ] || fail "no committed checkpoint to check"
    echo "scenario interrupt: exit $rc at once, $n committed checkpoints verify"
    ;;
drain)
    printf 'a\nb\nc\n' >"$work/hosts"
    start_launcher
    wait_step 20
    "$launch" drain b "$dir" || fail "launch drain"
    wait_launcher 120
    finished_ok
    step=$(stop_step)
    [ -n "$step" ] || fail "no planned stop"
    expect "host b: drained" "b was not drained"
    expect "attempt 2: mpirun .* on 2 hosts (a, c), 2 ranks" "no restart on a, c"
    expect "attempt 2: training (step $((step + 1)), resumed from step $step)" "attempt 2 did not resume from the stop (step $step)"
    lineage
    echo "scenario drain: b left after step $step; resumed there on a, c; every sequence once"
    ;;
join)
    start_launcher --join-interval 0 --probe-interval 0
    wait_step 20
    printf 'c slots=1\n' >>"$work/hosts"
    wait_launcher 120
    finished_ok
    step=$(stop_step)
    [ -n "$step" ] || fail "no planned stop for the join"
    expect "hostfile changed: added \['c'\]" "the new host was not noticed"
    expect "attempt 2: mpirun .* on 3 hosts (a, b, c), 3 ranks" "c did not join"
    expect "resumed from step $step (held by rank" "no resume from $step by a holder"
    lineage
    echo "scenario join: c joined after step $step and received the checkpoint; every sequence once"
    ;;
bad_input)
    mapfile -t ARGS < <(train_args "$name" | sed "s|^--data.train=.*|--data.train=$work/none/train_*.bin|")
    start_launcher
    wait_launcher 60
    [ "$rc" -eq 2 ] || fail "exit $rc, want 2"
    [ "$(attempts)" -eq 1 ] || fail "$(attempts) attempts: bad input was retried"
    expect "giving up: bad_input is not retried" "no 'not retried'"
    expect "none/train_\*.bin: no file matches" "the data error is not shown"
    echo "scenario bad_input: exit 2 after one attempt"
    ;;
not_retried)
    TESSERA_FAULT=$1 start_launcher --max-restarts 3 --backoff 0
    wait_launcher 60
    [ "$rc" -eq 70 ] || fail "exit $rc, want 70"
    expect "fault injection: rank" "the fault did not fire"
    [ "$(attempts)" -eq 1 ] || fail "$(attempts) attempts: a bug was retried"
    expect "attempt 1 ended: mpirun exit 70, bug: $2" "no line saying why (want: $2)"
    expect "giving up: bug is not retried (exit 70)" "no 'not retried'"
    grep -q "restarting" "$out" && fail "the launcher restarted"
    echo "scenario not_retried $1: exit 70 after one attempt"
    ;;
stale_pid)
    sleep 300 &
    others=$!
    mkdir -p "$dir/launch"
    for pidfile in "$others" "$others 1"; do
        echo "$pidfile" >"$dir/launch/launcher.pid"
        "$launch" status "$dir" 2>/dev/null | grep -qx "launcher: not running" ||
            fail "launch status takes pid file '$pidfile' (a sleep) for a launcher"
    done
    start_launcher
    wait_launcher 120
    finished_ok
    grep -q "another launcher" "$out" && fail "the stale pid file blocked the run"
    kill -0 "$others" || fail "the unrelated process is gone"
    echo "scenario stale_pid: a pid file naming an unrelated live process does not block the run"
    ;;
stop_dir)
    mkdir -p "$dir/STOP"
    start_launcher
    wait_launcher 120
    finished_ok
    [ "$(grep -c "warning: $dir/STOP is a directory, not a regular file: no stop request" "$out")" -eq 1 ] ||
        fail "not one launcher warning naming the STOP directory"
    expect "the run finished" "the STOP directory stopped the run"
    grep -q "stopped on request" "$out" && fail "the STOP directory was taken for a stop request"
    [ "$(attempts)" -eq 1 ] || fail "$(attempts) attempts, want 1"
    [ -d "$dir/STOP" ] || fail "the STOP directory was removed"
    echo "scenario stop_dir: a STOP directory is no stop request; the launcher warns, the run finishes"
    ;;
remote)
    TESSERA_FAULT=1:12:inside:kill start_remote_launcher
    wait_launcher 120
    finished_ok
    grep -q -- "--host a:1 env TESSERA_HOST=a" "$dir/launch/attempt-1.cmd" || fail "no --host a:1"
    expect "attempt 2: training (step 11, resumed from step 10)" "attempt 2 did not resume from 10"
    [ -f "$dir/launch/attempt-2/rank-1.status" ] || fail "the remote cleanup did not collect statuses"
    same_as_ref
    lineage
    echo "scenario remote: hosts through an rsh agent, restarted once, identical to the reference"
    ;;
node_sigterm)
    # a node shut down without a drain: every process of host b (its Open MPI daemon and its
    # rank) gets SIGTERM; a node loss: restart from the last checkpoint
    start_remote_launcher
    wait_step 20
    victims=$(host_signal b TERM) || fail "no processes of host b to signal"
    echo "SIGTERM to host b: $(echo $victims | wc -w) processes"
    wait_launcher 120
    finished_ok
    expect "failure detected" "the node loss was not detected"
    expect "restarting (peer_lost)" "no restart after the node loss"
    [ "$(attempts)" -eq 2 ] || fail "$(attempts) attempts, want 2"
    same_as_ref
    lineage
    echo "scenario node_sigterm: host b's processes got SIGTERM; restarted, identical to the reference"
    ;;
host_frozen)
    # host b freezes (every process of it SIGSTOPped: its daemon too) and never answers again:
    # rank 0 gives up at the deadline; mpirun, unable to reach b's daemon, is SIGKILLed by the
    # launcher if it has not ended by deadline + grace; the run finishes on host a alone
    start_remote_launcher --probe "[ {host} != b ] || [ ! -d '$dir/launch/attempt-1' ]"
    wait_step 20
    victims=$(host_signal b STOP) || fail "no processes of host b to signal"
    echo "SIGSTOP to host b: $(echo $victims | wc -w) processes"
    wait_launcher 120
    finished_ok
    expect "failure detected: rank 0 exits 75 (peer_lost)" "rank 0 did not report the lost peer"
    expect "host b: does not answer the probe: dropped" "b was not dropped"
    expect "attempt 2: mpirun .* on 1 host (a), 1 rank" "no restart on a alone"
    for p in $victims; do
        [ -d /proc/$p ] && [ "$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null)" = T ] &&
            fail "a stopped process of host b survives (pid $p)"
    done
    lineage
    echo "scenario host_frozen: b froze; detected by the deadline, finished on a alone"
    ;;
*)
    echo "scenario.sh: unknown scenario '$scenario'" >&2
    exit 2
    ;;
esac
rm -rf "$work"
