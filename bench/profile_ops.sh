#!/bin/sh
# profile_ops.sh — build bench/op_profile.c against tessera's libraries and print the time of
# every op of a CPU training step (see the header of op_profile.c). Run by hand:
#
#   bench/profile_ops.sh                          # GPT-2 124M shape, T=256, B=4, 1 thread
#   bench/profile_ops.sh 4 4 128 128 256 8 1 5    # layers heads width seq_len vocab batch threads steps
#
# BUILD (default build-bench) must hold a Release build of tessera (bench/run_cpu.sh makes one).
# OpenBLAS gets the environment bench/run_cpu.sh gives both sides: OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE removed, then OPENBLAS_CORETYPE set only where OpenBLAS would otherwise fall
# back to its generic kernels (bench_cpu.py --print-openblas-env says what it sets).
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$repo/build-bench}
if [ ! -f "$build/libtessera_core.a" ]; then
    cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" --target tessera -- -j2 >/dev/null 2>&1
# the link line of tessera itself (MPI, HDF5, inih, OpenBLAS, OpenMP), taken from its build rule
libs=$(sed -n '/^build tessera:/,/^$/p' "$build/build.ninja" | sed -n 's/^ *LINK_LIBRARIES = //p')
cc -O2 -march=native -fopenmp -Wall -Wextra -I"$repo" -o "$build/op_profile" \
    "$repo/bench/op_profile.c" -L"$build" $(cd "$build" && for l in $libs; do
        case $l in /*|-*) echo "$l" ;; *) echo "$build/$l" ;; esac; done)
blas_env=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${TORCH_PYTHON:-/usr/bin/python3}" \
    "$repo/bench/bench_cpu.py" --print-openblas-env)
echo "[profile] OpenBLAS environment: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset ${blas_env:+, then $blas_env}"
# shellcheck disable=SC2086 # blas_env is NAME=VALUE words (or nothing)
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $blas_env "$build/op_profile" "$@"
