#!/bin/sh
# check_lineage.sh RUN_DIR STEPS GLOBAL_BATCH — design invariant 1 across crashes and resumes.
#
# The run directory's samples.rank-R.txt files (data.log_samples) hold, per run, a line
# "run <first step> <world size> <run id>" and then "<step> <global sample index>" for every
# sample the rank trained on. The run id (rank 0's start time in ns) tells runs apart and orders
# them in time; lines without one (older files) are ordered by their first step. Each run
# overrides the lineage from its first step on, so step s is committed from the latest run (in
# time) that started before s. Along that lineage every planned sample 0 .. STEPS*GLOBAL_BATCH-1
# must appear exactly once, in its own step (sample g belongs to step g / GLOBAL_BATCH + 1),
# whatever the world sizes were.
set -eu
dir=$1
steps=$2
gb=$3
cat "$dir"/samples.rank-*.txt | awk -v steps="$steps" -v gb="$gb" '
$1 == "run" { run = ($4 != "") ? $4 : $2; first[run] = $2 + 0; world[run] = $3; runs[run] = 1; next }
{ seen[run, $1 + 0, $2 + 0]++; }
END {
  bad = 0
  for (s = 1; s <= steps; s++) {
    best = ""
    for (r in runs) if (first[r] < s && (best == "" || r + 0 > best + 0)) best = r
    from[s] = best
  }
  for (g = 0; g < steps * gb; g++) {
    s = int(g / gb) + 1
    n = seen[from[s], s, g]
    if (n != 1) { printf "sample %d (step %d, run from step %d): seen %d times\n", g, s, first[from[s]], n; bad++ }
    if (bad > 20) break
  }
  # nothing else in the lineage: count every committed line
  total = 0
  for (k in seen) { split(k, f, SUBSEP); if (f[1] == from[f[2] + 0]) total += seen[k] }
  if (total != steps * gb) { printf "lineage holds %d samples, want %d\n", total, steps * gb; bad++ }
  nr = 0; for (r in runs) nr++
  if (nr <= 10) for (r in runs) printf "run from step %d on %d ranks\n", first[r], world[r]
  printf "%d planned samples over %d steps, %d runs: %s\n", steps * gb, steps, nr, bad ? "FAIL" : "each once, in its step"
  exit bad ? 1 : 0
}'
