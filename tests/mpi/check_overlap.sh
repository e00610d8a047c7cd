#!/bin/sh
# check_overlap.sh TRACE some|none — from comm_trace.jsonl (one line per step: backward_end and
# [start, done] of each bucket, seconds since the step began), count the buckets whose reduction
# started before backward ended. "some": at least one step must have one; "none": no step may.
set -eu
trace=$1
want=$2
[ -s "$trace" ] || { echo "no trace: $trace"; exit 1; }
early=$(awk '
{
  be = $0; sub(/.*"backward_end": */, "", be); sub(/,.*/, "", be); be += 0
  b = $0; sub(/.*"buckets": *\[/, "", b); gsub(/\]/, "", b); gsub(/\[/, "", b)
  n = split(b, v, /, */)
  for (i = 1; i + 1 <= n; i += 2) if (v[i] + 0 > 0 && v[i] + 0 < be) early++
}
END { print early + 0 }' "$trace")
steps=$(wc -l < "$trace")
echo "$early bucket reductions started before backward ended, over $steps steps"
if [ "$want" = some ]; then [ "$early" -gt 0 ]; else [ "$early" -eq 0 ]; fi
