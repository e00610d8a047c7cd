#!/bin/sh
# comm_ab.sh — two builds of comm_bench (bench/comm_bench.c) on this machine, alternated, to see
# whether a change to the communicator made the all-reduce faster or slower.
#
#   bench/comm_ab.sh A_COMM_BENCH B_COMM_BENCH [RUNS] [NP] [ENV_B]
#
# Runs A, B, A, B, ... RUNS times each (default 5), each under mpirun -np NP (default 2) on this
# host (shared memory), and prints per message size from 256 KiB the median of "ours us" of
# each side and the median of the per-pair ratios A / B (above 1: B is faster). ENV_B, e.g.
# "TESSERA_COMM_SEGMENT=64512 TESSERA_COMM_WINDOW=8", is passed to B's ranks only. Before each
# run it waits up to QUIET_WAIT seconds (default 60) for the machine to be quiet (other
# processes below a tenth of a core for a second) and prints how busy it was. On a machine that
# is never quiet, `nice -n -10 bench/comm_ab.sh ...` with QUIET_WAIT=0 gives both sides the
# cores first. MAX_BYTES (default comm_bench's, 64 MiB) is the largest size.
set -eu
a=$1 b=$2 runs=${3:-5} np=${4:-2} envb=${5:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# shellcheck disable=SC2046 # the fields of /proc/stat's first line, split on purpose
busy() { # cores kept busy over one second, from /proc/stat
    set -- $(head -1 /proc/stat)
    t0=$(($2 + $3 + $4 + $5 + $6 + $7 + $8)) i0=$(($5 + $6))
    sleep 1
    set -- $(head -1 /proc/stat)
    t1=$(($2 + $3 + $4 + $5 + $6 + $7 + $8)) i1=$(($5 + $6))
    echo "$(nproc) $((t1 - t0)) $((i1 - i0))" | awk '{ printf "%.2f", $1 * (1 - $3 / $2) }'
}

for k in $(seq 1 "$runs"); do
    for side in A B; do
        waited=0
        while [ $waited -lt "${QUIET_WAIT:-60}" ] && [ "$(busy | awk '{ print ($1 < 0.1) }')" = 0 ]; do
            waited=$((waited + 1))
        done
        bin=$a extra=
        if [ $side = B ]; then
            bin=$b
            for v in $envb; do extra="$extra -x $v"; done
        fi
        echo "comm_ab: run $k/$runs $side (busy $(busy) cores before)" >&2
        # shellcheck disable=SC2086 # extra: "-x NAME=VALUE" words
        mpirun --oversubscribe --mca btl self,tcp,vader -x OMP_NUM_THREADS=1 $extra -np "$np" \
            "$bin" ${MAX_BYTES:-} >"$out/$side.$k"
    done
done
for k in $(seq 1 "$runs"); do
    for side in A B; do
        awk -v s=$side -v k="$k" '$1 ~ /^[0-9]+$/ && $1 >= 262144 { print s, k, $1, $3 }' \
            "$out/$side.$k"
    done
done | awk '
    { t[$1, $2, $3] = $4; sizes[$3] = 1; if ($2 > runs) runs = $2 }
    function median(v, n,   i, j, x) {
        for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    END {
        for (s in sizes) {
            for (k = 1; k <= runs; k++) { va[k] = t["A", k, s]; vb[k] = t["B", k, s]; vr[k] = t["A", k, s] / t["B", k, s] }
            printf "| %d | %.1f | %.1f | %.2f |\n", s, median(va, runs), median(vb, runs), median(vr, runs)
        }
    }' | sort -t'|' -k2 -n >"$out/table"
echo "| bytes | A us | B us | A / B |"
echo "| ---: | ---: | ---: | ---: |"
cat "$out/table"
