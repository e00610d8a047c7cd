#!/bin/sh
# expect_exit.sh — run a command, then check its exit status and its output.
#
#   expect_exit.sh STATUS [REGEX ...] -- COMMAND [ARG ...]
#
# Passes when COMMAND exits with STATUS and its output (stdout and stderr together) matches
# every extended REGEX. The output is echoed so ctest -V shows it.
set -u
want=$1
shift
n=0
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    n=$((n + 1))
    eval "re_$n=\$1"
    shift
done
if [ $# -lt 2 ]; then
    echo "usage: expect_exit.sh STATUS [REGEX ...] -- COMMAND [ARG ...]" >&2
    exit 2
fi
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" >"$out" 2>&1
got=$?
cat "$out"
fail=0
if [ "$got" -ne "$want" ]; then
    echo "expect_exit: exit status $got, want $want" >&2
    fail=1
fi
i=1
while [ $i -le $n ]; do
    eval "re=\$re_$i"
    if ! grep -Eq -- "$re" "$out"; then
        echo "expect_exit: no output line matches: $re" >&2
        fail=1
    fi
    i=$((i + 1))
done
exit $fail
