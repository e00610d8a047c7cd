#!/usr/bin/env bash
# bench/dp_breakdown.sh — the trainer's step time split (compute, communication, waiting) and
# optimizer memory per rank, for 1, 2 and 4 ranks, with and without ZeRO-1, on the demo model.
#
#   bench/dp_breakdown.sh [STEPS]        (default 40; needs data/fortunes from `tessera prepare`)
#
# Prints one table row per configuration: medians over the logged steps after the first window.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-40}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
MPI=(mpirun --oversubscribe -x OMP_NUM_THREADS=1)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
[ -n "${OPENBLAS_CORETYPE:-}" ] && MPI+=(-x OPENBLAS_CORETYPE)
echo "| ranks | ZeRO | ms/step | compute ms | comm ms (bucket span) | wait ms | bytes sent/step/rank | optimizer state MiB/rank | peak RSS MiB/rank |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for np in 1 2 4; do
  for zero in 0 1; do
    [ "$np" -eq 1 ] && [ "$zero" -eq 1 ] && continue
    name=np${np}_z${zero}
    echo "bench: $name ..." >&2
    "${MPI[@]}" -np "$np" /usr/bin/time -f "%M" -o "$OUT/rss_%q{OMPI_COMM_WORLD_RANK}" \
      build/tessera train configs/demo.ini --run.out_dir="$OUT" --run.name="$name" \
      --run.threads=1 --train.steps="$STEPS" --log.every=5 --eval.every=0 --eval.batches=1 \
      --log.sample_tokens=0 --comm.zero_stage="$zero" > "$OUT/$name.log" 2>&1
    state=$(grep -o 'optimizer state [0-9.]* MiB' "$OUT/$name.log" | head -1 | awk '{print $3}')
    rss=$(cat "$OUT"/rss_* 2>/dev/null | sort -n | tail -1)
    rm -f "$OUT"/rss_*
    awk -v np="$np" -v zero="$zero" -v state="$state" -v rss="$rss" '
      function med(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
      function get(k,   s) { s = $0; if (!match(s, "\"" k "\": [0-9.e+-]+")) return 0; s = substr(s, RSTART, RLENGTH); sub(/.*: /, "", s); return s + 0 }
      NR > 1 { n++; ms[n] = get("ms_per_step"); c[n] = get("compute_ms"); m[n] = get("comm_ms"); w[n] = get("wait_ms"); b[n] = get("bytes_sent") }
      END { printf "| %d | %s | %.1f | %.1f | %.1f | %.1f | %.0f | %s | %.0f |\n", np, zero ? "1" : "0", med(ms, n), med(c, n), med(m, n), med(w, n), med(b, n), state, rss / 1024 }
    ' "$OUT/$name/metrics.jsonl"
  done
done
