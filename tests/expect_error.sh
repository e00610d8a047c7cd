#!/bin/sh
# expect_error.sh — run a command that must fail with exactly one clear error line.
#
#   expect_error.sh EXPECTED_CODE REGEX -- COMMAND [ARG ...]
#
# Passes when COMMAND exits with EXPECTED_CODE, exactly one line of its stderr matches the
# extended REGEX (and none of its stdout), and its output holds exactly one tessera error line
# ("tessera: error: ...", under mpirun "tessera[R]: error: ...", or the launcher's
# "launch: error: ..."): one rank reports, once.
# The output is echoed so ctest -V shows it.
set -u
if [ $# -lt 4 ] || [ "$3" != "--" ]; then
    echo "usage: expect_error.sh EXPECTED_CODE REGEX -- COMMAND [ARG ...]" >&2
    exit 2
fi
want=$1
re=$2
shift 3
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$@" >"$out" 2>"$err"
got=$?
echo "--- stdout"
cat "$out"
echo "--- stderr"
cat "$err"
echo "---"
fail=0
if [ "$got" -ne "$want" ]; then
    echo "expect_error: exit status $got, want $want" >&2
    fail=1
fi
n_err=$(grep -Ec -- "$re" "$err")
n_out=$(grep -Ec -- "$re" "$out")
if [ "$n_err" -ne 1 ] || [ "$n_out" -ne 0 ]; then
    echo "expect_error: $n_err stderr and $n_out stdout lines match, want 1 and 0: $re" >&2
    fail=1
fi
n_tagged=$(cat "$out" "$err" | grep -Ec '^(tessera(\[[0-9]+\])?|launch): error: ')
if [ "$n_tagged" -ne 1 ]; then
    echo "expect_error: $n_tagged tessera error lines, want exactly 1" >&2
    fail=1
fi
exit $fail
