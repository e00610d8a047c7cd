#!/usr/bin/env bash
# bench/launch_recovery.sh — how long the launcher takes from a fault to the first new training
# step, per kind of fault, on the demo model (2-3 ranks on this machine, scripts/launch --local).
#
#   bench/launch_recovery.sh [TRIALS] [DEADLINE_S]     (defaults 3 and 5; needs data/fortunes)
#
# Kinds: a rank killed (SIGKILL inside the gradient reduction: a crashed node), a rank hung
# (SIGSTOP: found by the collective deadline DEADLINE_S), a host lost (its rank killed and the
# probe failing afterwards: the restart runs on fewer ranks), and a drain (a planned stop and a
# restart without one host). The times come from the launcher's events.jsonl:
#   fault -> detected    the rank's "fault injection" line (or the drain request) to the first sign
#                        the launcher acts on (a rank's exit line, mpirun's signal report)
#   detected -> restart  until the next mpirun starts (includes the job's end, the cleanup of every
#                        host and the probes)
#   restart -> step      until the new job prints its first step (start-up, checkpoint read, one step)
# Prints a Markdown table of medians (min-max) over TRIALS.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${1:-3}
DEADLINE=${2:-5}
[ -d data/fortunes ] || build/tessera prepare --out data/fortunes >/dev/null
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=1

run() { # KIND TRIAL
  local kind=$1 name="$1_$2" hosts="$OUT/hosts_$1_$2" extra=()
  local args=(configs/demo.ini --run.out_dir="$OUT" --run.name="$name" --run.threads=1
              --train.steps=30 --ckpt.every=10 --log.every=1 --eval.every=0 --eval.batches=1
              --log.sample_tokens=0 --comm.timeout_s="$DEADLINE")
  printf 'a\nb\n' >"$hosts"
  case $kind in
  kill) export TESSERA_FAULT=1:12:inside:kill ;;
  hang) export TESSERA_FAULT=1:12:inside:stop ;;
  host_lost)
    printf 'a\nb\nc\n' >"$hosts"
    export TESSERA_FAULT=2:12:inside:kill
    extra=(--probe "[ {host} != c ] || [ ! -d '$OUT/$name/launch/attempt-1' ]") ;;
  drain)
    printf 'a\nb\nc\n' >"$hosts"
    unset TESSERA_FAULT ;;
  esac
  scripts/launch run --local --hostfile "$hosts" --grace 3 "${extra[@]}" -- "${args[@]}" \
    >"$OUT/$name.log" 2>&1 &
  local job=$!
  if [ "$kind" = drain ]; then
    until grep -q '"step": 12,' "$OUT/$name/metrics.jsonl" 2>/dev/null; do sleep 0.05; done
    scripts/launch drain b "$OUT/$name"
  fi
  wait "$job" || { tail -20 "$OUT/$name.log"; echo "launch_recovery: $name failed" >&2; exit 1; }
  unset TESSERA_FAULT
  python3 - "$OUT/$name/launch/events.jsonl" "$kind" >>"$OUT/times" <<'EOF'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
def first(name, after=0.0, **kw):
    for e in ev:
        if e["event"] == name and e["t"] >= after and all(e.get(k) == v for k, v in kw.items()):
            return e["t"]
    raise SystemExit(f"{sys.argv[1]}: no {name} event")
if sys.argv[2] == "drain":
    t0 = first("stop_requested")
    t1 = first("end", attempt=1)
else:
    t0 = first("fault")
    t1 = first("detected")
t2 = first("start", attempt=2)
t3 = first("first_step", attempt=2)
print(sys.argv[2], t1 - t0, t2 - t1, t3 - t2, t3 - t0)
EOF
}

for kind in kill hang host_lost drain; do
  for trial in $(seq 1 "$TRIALS"); do
    echo "launch_recovery: $kind, trial $trial/$TRIALS ..." >&2
    run "$kind" "$trial"
  done
done
echo "| fault | fault -> detected s | detected -> restart s | restart -> first step s | fault -> first new step s |"
echo "| --- | --- | --- | --- | --- |"
python3 - "$OUT/times" "$DEADLINE" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    k, *v = line.split()
    rows.setdefault(k, []).append([float(x) for x in v])
names = {"kill": "rank killed (SIGKILL)", "hang": f"rank hung (SIGSTOP; deadline {sys.argv[2]} s)",
         "host_lost": "host lost (3 -> 2 ranks)", "drain": "drain (planned; request -> stopped)"}
for k, vals in rows.items():
    cols = []
    for i in range(4):
        xs = [v[i] for v in vals]
        cols.append(f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})")
    print(f"| {names[k]} | " + " | ".join(cols) + " |")
EOF
