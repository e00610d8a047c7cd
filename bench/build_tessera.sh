# build_tessera.sh — sourced by run_cpu.sh and profile_ops.sh: builds the tessera to measure.
#
# In: repo (the checkout), build (the benchmark's build folder), and optionally the arguments
# `--commit REF` first in "$@". Out: src (the source tree built), tbuild (its build folder),
# label (what was built, for the record; empty for the working tree); "$@" loses --commit REF.
# With --commit, REF's tree is exported with `git archive` into $build/src-REV and built in
# $build/commit-REV, so a benchmark measures committed code while others edit the checkout.
# shellcheck shell=sh disable=SC2154,SC2034 # sourced: repo and build come from the caller, label goes back to it
src=$repo
tbuild=$build
label=
bench_commit=
if [ "${1:-}" = "--commit" ]; then
    [ $# -ge 2 ] || { echo "--commit needs a git revision" >&2; exit 2; }
    bench_commit=$(git -C "$repo" rev-parse --short "$2^{commit}") || exit 2
    shift 2
    src=$build/src-$bench_commit
    tbuild=$build/commit-$bench_commit
    label="$bench_commit (git archive of the commit)"
    if [ ! -f "$src/CMakeLists.txt" ]; then
        echo "[bench] exporting commit $bench_commit to $src"
        mkdir -p "$src"
        git -C "$repo" archive "$bench_commit" | tar -x -C "$src"
    fi
fi

echo "[bench] building tessera (Release) from $src in $tbuild"
mkdir -p "$build" "$tbuild"
{
    # CPU only: the CUDA backend is not measured here and takes minutes to compile
    if ! grep -q '^TESSERA_CUDA:STRING=off' "$tbuild/CMakeCache.txt" 2>/dev/null; then
        cmake -S "$src" -B "$tbuild" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTESSERA_CUDA=off
    fi
    cmake --build "$tbuild" --target tessera -- -j2
    cc -O2 -o "$build/clock_probe" "$repo/bench/clock_probe.c"
} >"$build/bench-build.log" 2>&1 || {
    cat "$build/bench-build.log" >&2
    echo "the build failed (log above, also in $build/bench-build.log); in a checkout others" \
         "are editing, try --commit HEAD" >&2
    exit 1
}
