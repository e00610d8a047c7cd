#!/bin/sh
# lab_ring.sh — the ring all-reduce on thin links: 2 and 4 lab hosts (scripts/lab) at 10 and
# 100 Mbit/s, tessera's ring under the cut it had before (512 KiB segments, 2 in flight) and
# under the one it picks now, beside plain TCP, against the links' byte counters.
#
#   bench/lab_ring.sh                                 # 2 and 4 hosts, 10 and 100 Mbit/s
#   bench/lab_ring.sh --hosts 2 --rates 10 --cuts auto 64512x4 64512x16
#   bench/lab_ring.sh --help                          # every option (bench/lab_ring.py)
#
# Builds ring_bench (bench/ring_bench.c) in BUILD (default build), then runs bench/lab_ring.py,
# which prints a progress line per run and ends with a Markdown table. Needs root; the lab is
# its own (/run/tessera-lab-ring, prefix tlr) and is taken down at the end. About 12 minutes
# with the defaults.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$repo/build}
case "${1:-}" in
-h | --help) exec python3 "$repo/bench/lab_ring.py" --help ;;
esac
cmake --build "$build" --target ring_bench >/dev/null
echo "lab_ring: load average $(cut -d' ' -f1-3 /proc/loadavg), code $(git -C "$repo" describe --always --dirty)" >&2
exec python3 "$repo/bench/lab_ring.py" --ring-bench "$build/tests/ring_bench" "$@"
