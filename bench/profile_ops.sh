#!/bin/sh
# profile_ops.sh — build bench/op_profile.c against tessera's libraries and print the time of
# every op of a CPU training step (see the header of op_profile.c). Run by hand:
#
#   bench/profile_ops.sh                          # GPT-2 124M shape, T=256, B=4, 1 thread
#   bench/profile_ops.sh 4 4 128 128 256 8 1 5    # layers heads width seq_len vocab batch threads steps
#   bench/profile_ops.sh --commit HEAD [...]       # a commit's code (see build_tessera.sh)
#
# Builds tessera (Release) in BUILD (default build-bench), then op_profile against its libraries.
# OpenBLAS gets the environment bench/run_cpu.sh gives both sides: OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE removed, then OPENBLAS_CORETYPE set only where OpenBLAS would otherwise fall
# back to its generic kernels (bench_cpu.py --print-openblas-env says what it sets).
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$repo/build-bench}
# sets src, tbuild; takes --commit REF off the arguments
. "$repo/bench/build_tessera.sh" >&2
# the link line of tessera itself (MPI, HDF5, inih, OpenBLAS, OpenMP), taken from its build rule
libs=$(sed -n '/^build tessera:/,/^$/p' "$tbuild/build.ninja" | sed -n 's/^ *LINK_LIBRARIES = //p')
# shellcheck disable=SC2046 # one word per library
cc -O2 -march=native -fopenmp -Wall -Wextra -I"$src" -o "$tbuild/op_profile" \
    "$repo/bench/op_profile.c" "$repo/bench/op_timer.c" $(for l in $libs; do
        case $l in /*|-*) echo "$l" ;; *) echo "$tbuild/$l" ;; esac; done)
blas_env=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${TORCH_PYTHON:-/usr/bin/python3}" \
    "$repo/bench/bench_cpu.py" --print-openblas-env)
echo "[profile] OpenBLAS environment: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset ${blas_env:+, then $blas_env}"
# shellcheck disable=SC2086 # blas_env is NAME=VALUE words (or nothing)
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $blas_env "$tbuild/op_profile" "$@"
