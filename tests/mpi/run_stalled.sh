#!/bin/bash
# run_stalled.sh — run an mpirun job in which a rank stops answering, then check how it ended.
#
#   run_stalled.sh --exit N --within S [--match REGEX]... [--status FILE=REGEX]...
#                  [--no-status FILE]... -- COMMAND [ARG ...]
#
# Every "@DIR@" in COMMAND is replaced by a fresh directory: the job leaves its status files
# (rank-R.status) there, and a rank that stops itself writes its pid to rank-R.pid first. The
# check passes when COMMAND exits with N within S seconds, its output (stdout and stderr) matches
# every extended REGEX, each named status file exists and matches its REGEX (the file's lines
# joined with '|'), and each --no-status file does not exist. Whatever the outcome, ranks that
# are still there (a stopped process ignores everything but SIGKILL) are killed with SIGKILL,
# and the whole COMMAND is killed after S + 30 s.
set -u
want=""
within=""
matches=()
statuses=()
absent=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case $1 in
    --exit) want=$2; shift 2 ;;
    --within) within=$2; shift 2 ;;
    --match) matches+=("$2"); shift 2 ;;
    --status) statuses+=("$2"); shift 2 ;;
    --no-status) absent+=("$2"); shift 2 ;;
    *) echo "run_stalled: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$want" ] || [ -z "$within" ] || [ $# -lt 2 ]; then
    echo "usage: run_stalled.sh --exit N --within S [--match RE]... [--status FILE=RE]... -- CMD" >&2
    exit 2
fi
shift
dir=$(mktemp -d)
out="$dir/output"
cleanup() {
    for f in "$dir"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            echo "run_stalled: killing stopped rank pid $pid ($(basename "$f"))"
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    rm -rf "$dir"
}
trap cleanup EXIT

cmd=()
for a in "$@"; do cmd+=("${a//@DIR@/$dir}"); done
start=$(date +%s.%N)
timeout -s KILL $((within + 30)) "${cmd[@]}" >"$out" 2>&1
got=$?
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
cat "$out"
echo "run_stalled: exit status $got after $elapsed s"

fail=0
if [ "$got" -ne "$want" ]; then
    echo "run_stalled: exit status $got, want $want" >&2
    fail=1
fi
if awk -v e="$elapsed" -v w="$within" 'BEGIN { exit !(e > w) }'; then
    echo "run_stalled: took $elapsed s, want at most $within s" >&2
    fail=1
fi
for re in "${matches[@]}"; do
    if ! grep -Eq -- "$re" "$out"; then
        echo "run_stalled: no output line matches: $re" >&2
        fail=1
    fi
done
for s in "${statuses[@]}"; do
    file=${s%%=*}
    re=${s#*=}
    if [ ! -f "$dir/$file" ]; then
        echo "run_stalled: no status file $file" >&2
        fail=1
        continue
    fi
    text=$(paste -sd'|' "$dir/$file")
    echo "run_stalled: $file: $text"
    if ! echo "$text" | grep -Eq -- "$re"; then
        echo "run_stalled: $file does not match: $re" >&2
        fail=1
    fi
done
for f in "${absent[@]}"; do
    if [ -e "$dir/$f" ]; then
        echo "run_stalled: $f exists, want none" >&2
        fail=1
    fi
done
exit $fail
