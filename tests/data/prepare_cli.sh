#!/bin/sh
# prepare_cli.sh — `tessera prepare` as a user runs it: exit codes, messages and files.
#
#   prepare_cli.sh TESSERA_BIN CASE WORK_DIR
#
# CASE: corpus (a generated fortune-style file), too_small (the --min-bytes refusal), usage
# (command-line errors), fortunes (the default corpus; skipped with 77 when not installed).
set -u
bin=$1
case_=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
fail=0

check() { # check DESCRIPTION COMMAND...: record a failure when COMMAND fails
    what=$1
    shift
    if ! "$@"; then
        echo "FAIL: $what" >&2
        fail=1
    fi
}

# run: prepare with the given arguments; sets $rc and leaves the output in $work/out.log
run() {
    "$bin" prepare "$@" >"$work/out.log" 2>&1
    rc=$?
    cat "$work/out.log"
}

stat_of() { sed -n "s/^$1 //p" "$2/stats.txt"; }

# an error: exit 2, exactly one line with "error:", matching the given extended regex
expect_error() {
    re=$1
    shift
    run "$@"
    check "exit status $rc, expected 2 for: $*" [ "$rc" -eq 2 ]
    check "one error line for: $*" [ "$(grep -c 'error:' "$work/out.log")" -eq 1 ]
    check "message /$re/ for: $*" grep -Eq -- "$re" "$work/out.log"
}

case $case_ in
corpus)
    # 200 documents of 31-33 bytes (+1 for the blank line that separates documents)
    i=0
    while [ $i -lt 200 ]; do
        [ $i -gt 0 ] && echo "%"
        printf 'Fortune number %d.\n  -- the tests\n' $i
        i=$((i + 1))
    done >"$work/in.txt"
    out="$work/shards"
    run --out "$out" --min-bytes 0 --shard-tokens 2000 "$work/in.txt"
    check "exit status $rc, expected 0" [ "$rc" -eq 0 ]
    check "progress names the shards" grep -q "wrote $out/train_000.bin (2000 tokens)" "$work/out.log"
    check "summary gives the entropy" grep -Eq "unigram entropy of the training text [0-9.]+ nats/byte" "$work/out.log"
    check "train shard of 2000 tokens" [ "$(wc -c <"$out/train_000.bin")" -eq 5024 ]
    check "val shard" [ -f "$out/val_000.bin" ]
    train=$(stat_of bytes_train "$out")
    val=$(stat_of bytes_val "$out")
    # every 20th document (10 of 200) is held out; documents are the text plus one blank line
    total=$(($(wc -c <"$work/in.txt") - 199 * 2 + 200))
    check "bytes_train $train + bytes_val $val = $total" [ $((train + val)) -eq "$total" ]
    check "10 documents held out" [ "$(stat_of documents_val "$out")" -eq 10 ]
    check "entropy in stats.txt" grep -Eq '^unigram_entropy_nats [0-9]+\.[0-9]+$' "$out/stats.txt"
    run --out "$out" --min-bytes 0 --shard-tokens 2000 "$work/in.txt"
    check "second run: exit $rc, up to date" grep -q "up to date" "$work/out.log"
    ;;
too_small)
    printf 'a small corpus\n%%\nof two documents\n' >"$work/in.txt"
    expect_error "error: .*in.txt: corpus is [0-9]+ bytes of text from 1 files, expected at least --min-bytes 1000000" \
        --out "$work/shards" "$work/in.txt"
    check "nothing written" [ ! -e "$work/shards" ]
    ;;
usage)
    expect_error "unknown option '--frobnicate'.*usage: tessera prepare" --frobnicate
    expect_error "option --out expects a value" x.txt --out
    expect_error "--shard-tokens '-3', expected an integer" --shard-tokens=-3 x.txt
    expect_error "nope.txt: no such file or directory" --out "$work/shards" "$work/nope.txt"
    "$bin" prepare --help >"$work/out.log" 2>&1
    check "--help exits 0" [ $? -eq 0 ]
    check "--help shows the usage" grep -q "usage: tessera prepare" "$work/out.log"
    ;;
fortunes)
    if [ ! -d /usr/share/games/fortunes ]; then
        echo "SKIP: /usr/share/games/fortunes missing (apt-get install fortunes)"
        exit 77
    fi
    out="$work/fortunes"
    run --out "$out"
    check "exit status $rc, expected 0" [ "$rc" -eq 0 ]
    check "the default corpus is announced" grep -q "using the fortunes in /usr/share/games/fortunes" "$work/out.log"
    train=$(stat_of bytes_train "$out")
    val=$(stat_of bytes_val "$out")
    check "at least 1 MB of training text ($train)" [ "$train" -ge 1000000 ]
    # about 5% held out: between 3% and 7% of all bytes
    check "val share $val of $((train + val)) >= 3%" [ $((val * 100)) -ge $((3 * (train + val))) ]
    check "val share $val of $((train + val)) <= 7%" [ $((val * 100)) -le $((7 * (train + val))) ]
    run --out "$out"
    check "second run is up to date" grep -q "up to date" "$work/out.log"
    ;;
*)
    echo "unknown case $case_" >&2
    exit 2
    ;;
esac
[ $fail -eq 0 ] && rm -rf "$work"
exit $fail
