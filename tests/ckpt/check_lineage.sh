#!/bin/sh
# check_lineage.sh RUN_DIR STEPS GLOBAL_BATCH — design invariant 1 across crashes, resumes and
# late ranks.
#
# The run directory's samples.rank-R.txt files (data.log_samples) hold, per run, a line
# "run <first step> <world size> <run id>" and then "<step> <global sample index>" for every
# sample the rank trained on, and "<step> <global sample index> dropped" for every sample of its
# share it gave back at the deadline (balance.policy = drop). The run id (rank 0's start time in
# ns) tells runs apart and orders them in time; lines without one (older files) are ordered by
# their first step. Each run overrides the lineage from its first step on, so step s is committed
# from the latest run (in time) that started before s.
#
# Along that lineage, step s must hold exactly the samples given back by step s - 1 and then the
# next fresh ones of the stream (GLOBAL_BATCH in all), each once, trained or given back again;
# without late ranks that is s*GLOBAL_BATCH .. (s+1)*GLOBAL_BATCH - 1, whatever the world sizes
# were. So no sample is ever lost or trained twice, and none is trained before its turn.
set -eu
dir=$1
steps=$2
gb=$3
cat "$dir"/samples.rank-*.txt | awk -v steps="$steps" -v gb="$gb" '
$1 == "run" { run = ($4 != "") ? $4 : $2; first[run] = $2 + 0; world[run] = $3; runs[run] = 1; next }
$3 != "" && $3 != "dropped" || NF > 3 || $1 !~ /^[0-9]+$/ || $2 !~ /^[0-9]+$/ {
  printf "line %d of the sample logs is not \"<step> <sample>[ dropped]\": %s\n", NR, $0; broken++; next
}
{
  k = (run SUBSEP ($1 + 0) SUBSEP ($2 + 0))
  if ($3 == "dropped") dropped[k]++; else trained[k]++
  lines[run, $1 + 0]++
}
END {
  bad = broken + 0
  for (s = 1; s <= steps; s++) {
    best = ""
    for (r in runs) if (first[r] < s && (best == "" || r + 0 > best + 0)) best = r
    from[s] = best
  }
  cursor = 0; nq = 0; total = 0; given = 0
  for (s = 1; s <= steps && bad <= 20; s++) {
    R = from[s]
    # the step expected: the queue, then fresh samples
    n = 0
    for (i = 0; i < nq; i++) want[n++] = queue[i]
    while (n < gb) want[n++] = cursor++
    nq = 0
    for (i = 0; i < n; i++) {
      g = want[i]; k = (R SUBSEP s SUBSEP g)
      t = trained[k] + 0; d = dropped[k] + 0
      if (t + d != 1) {
        printf "sample %d (step %d, run from step %d): trained %d, given back %d times\n", g, s, first[R], t, d
        bad++
      }
      if (d == 1 && t == 0) queue[nq++] = g
      total += t
    }
    given += nq
    if (lines[R, s] != n) {
      printf "step %d (run from step %d) holds %d sample lines, want %d\n", s, first[R], lines[R, s], n
      bad++
    }
  }
  nr = 0; for (r in runs) nr++
  if (nr <= 10) for (r in runs) printf "run from step %d on %d ranks\n", first[r], world[r]
  printf "%d samples trained over %d steps (%d times a sample was given back, %d waiting at the end), %d runs: %s\n", total, steps, given, nq, nr, bad ? "FAIL" : "each once, in its turn"
  exit bad ? 1 : 0
}'
