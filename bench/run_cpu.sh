#!/bin/sh
# run_cpu.sh — the CPU benchmark: tessera against PyTorch, full training steps, side by side.
#
#   bench/run_cpu.sh                      # both shapes, 1 and 2 threads, 5 alternated runs each
#   bench/run_cpu.sh --shapes demo --reps 7
#   bench/run_cpu.sh --torch-config tune  # first try PyTorch's set-ups, keep the fastest
#   bench/run_cpu.sh --commit HEAD        # measure a commit (git archive), not the working tree
#   bench/run_cpu.sh --help               # every option (bench/bench_cpu.py)
#
# Builds tessera in Release mode in BUILD (default build-bench), then runs bench/bench_cpu.py
# with Debian's python3 (the one that imports torch). Progress lines go to the terminal; the
# table and every run's figures also go to BUILD/bench-work/cpu-<date>.{txt,json}.
# With --commit REF (first argument), the tessera measured is REF's: its tree is exported with
# `git archive` into BUILD/src-REF and built in BUILD/commit-REF; the working tree is left alone.
# Run it by hand on a machine with nothing else running: it is not a test and not for CI.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$repo/build-bench}
python=${TORCH_PYTHON:-/usr/bin/python3}

case "${1:-}" in
-h | --help)
    echo "usage: bench/run_cpu.sh [--commit REF] [options of bench_cpu.py, below]"
    echo "  --commit REF: measure commit REF (git archive, built apart), not the working tree"
    echo
    exec "$python" "$repo/bench/bench_cpu.py" --help
    ;;
esac
if ! "$python" -c 'import torch' 2>/dev/null; then
    echo "run_cpu.sh: $python cannot import torch (Debian: apt-get install python3-torch," \
         "or set TORCH_PYTHON to a python that has it)" >&2
    exit 2
fi

# sets src, tbuild, label; takes --commit REF off the arguments
. "$repo/bench/build_tessera.sh"

stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p "$build/bench-work"
out="$build/bench-work/cpu-$stamp"
echo "[bench] machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
# the exit status of the benchmark, not of tee
{
    "$python" "$repo/bench/bench_cpu.py" --tessera "$tbuild/tessera" --python "$python" \
        --work "$build/bench-work" --clock-probe "$build/clock_probe" --json "$out.json" \
        ${label:+--source-label "$label"} "$@"
    echo $? >"$out.rc"
} | tee "$out.txt"
rc=$(cat "$out.rc")
rm -f "$out.rc"
echo "[bench] load average at the end $(cut -d' ' -f1-3 /proc/loadavg); results in $out.txt"
exit "$rc"
