#!/bin/sh
# check_lineage.sh RUN_DIR STEPS GLOBAL_BATCH — design invariant 1 across crashes and resumes.
#
# The run directory's samples.rank-R.txt files (data.log_samples) hold, per run, a line
# "run <first step> <world size>" and then "<step> <global sample index>" for every sample the
# rank trained on. Runs are told apart by their first step (a resumed run starts where its
# checkpoint ended). The committed lineage takes each step from the last run that started before
# it; along it, every planned sample 0 .. STEPS*GLOBAL_BATCH-1 must appear exactly once, in its
# own step (sample g belongs to step g / GLOBAL_BATCH + 1), whatever the world sizes were.
set -eu
dir=$1
steps=$2
gb=$3
cat "$dir"/samples.rank-*.txt | awk -v steps="$steps" -v gb="$gb" '
$1 == "run" { run = $2 + 0; world[run] = $3; runs[run] = 1; next }
{ seen[run, $1 + 0, $2 + 0]++; }
END {
  bad = 0
  # the run each step is committed from: the latest start below the step
  for (s = 1; s <= steps; s++) {
    best = -1
    for (r in runs) if (r + 0 < s && r + 0 > best) best = r + 0
    from[s] = best
  }
  for (g = 0; g < steps * gb; g++) {
    s = int(g / gb) + 1
    n = seen[from[s], s, g]
    if (n != 1) { printf "sample %d (step %d, run from step %d): seen %d times\n", g, s, from[s], n; bad++ }
  }
  # nothing else in the lineage: count every committed line
  total = 0
  for (k in seen) { split(k, f, SUBSEP); if (f[1] + 0 == from[f[2] + 0]) total += seen[k] }
  if (total != steps * gb) { printf "lineage holds %d samples, want %d\n", total, steps * gb; bad++ }
  nr = 0; for (r in runs) { nr++; printf "run from step %d on %d ranks\n", r, world[r] }
  printf "%d planned samples over %d steps, %d runs: %s\n", steps * gb, steps, nr, bad ? "FAIL" : "each once, in its step"
  exit bad ? 1 : 0
}'
