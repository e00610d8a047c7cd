#!/usr/bin/env bash
# check_tree.sh — the habits of the source tree, checked (docs/architecture.md):
#   format      every C/CUDA file is clang-formatted (.clang-format)
#   exits       no bare exit()/abort() outside base/ and app/main.c: every way out goes through
#               ts_exit/ts_fatal/ts_panic, which write the rank's status file
#   getenv      nothing but base/env.c reads the environment
#   layers      no include reaches upward: base/ includes only base/; kernels/ and models/ only
#               base/, kernels/, models/; collectives/ not runtime/ or app/; runtime/ not app/
#   models      nothing outside models/ (and the tests, benches) names an architecture's own
#               symbols or header: the runtime and the commands go through models/model.h, so a new
#               architecture touches models/ only (docs/architecture.md, "A new model")
# usage: check_tree.sh SOURCE_DIR CHECK    (exit 0 clean, 1 with one line per offence, 77 when
# the tool a check needs is missing)
set -u
src=$1
check=$2
cd "$src" || exit 2
fail=0
offence() { echo "check_tree: $check: $*"; fail=1; }
# the tree's files matching the patterns: git's view (tracked and new, not ignored), or every file
# outside build directories when this is not a git checkout
c_files() {
    if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
        git ls-files -co --exclude-standard -- "$@" | sort -u | while read -r f; do [ -f "$f" ] && echo "$f"; done
    else
        local args=() p
        for p in "$@"; do args+=(-o -path "./$p"); done
        find . -path './build*' -prune -o -type f \( -false "${args[@]}" \) -print | sed 's|^\./||'
    fi
}

case $check in
format)
    fmt=$(command -v clang-format-14 || command -v clang-format) || {
        echo "check_tree: clang-format not installed: skipped"
        exit 77
    }
    while read -r f; do
        if ! "$fmt" --dry-run -Werror "$f" > /dev/null 2>&1; then
            offence "$f is not formatted (run: $fmt -i $f)"
        fi
    done < <(c_files '*.c' '*.h' '*.cu' '*.cuh' '*.cc')
    ;;
exits)
    while IFS= read -r hit; do
        offence "$hit: exit through ts_fatal/ts_exit (base/common.h), which leaves the status file"
    done < <(c_files '*.c' '*.h' '*.cu' '*.cuh' | grep -E '^(runtime|collectives|kernels|models|app)/' |
        grep -v '^app/main\.c$' | xargs grep -nE '(^|[^_a-zA-Z])(exit|abort)\(' /dev/null |
        grep -vE '//.*(exit|abort)\(')
    ;;
getenv)
    while IFS= read -r hit; do
        offence "$hit: read the environment through base/env.h (one table of knobs)"
    done < <(c_files '*.c' '*.h' '*.cu' '*.cuh' | grep -E '^(base|runtime|collectives|kernels|models|app)/' |
        grep -v '^base/env\.c$' | xargs grep -nE '(^|[^_a-zA-Z])(secure_)?getenv\(' /dev/null |
        grep -vE '^[^:]+:[0-9]+:\s*//')
    ;;
layers)
    allowed() { # folder -> the include prefixes it may use
        case $1 in
        base) echo 'base/' ;;
        kernels | models) echo 'base/|kernels/|models/' ;;
        collectives) echo 'base/|kernels/|models/|collectives/' ;;
        runtime) echo 'base/|kernels/|models/|collectives/|runtime/' ;;
        app) echo 'base/|kernels/|models/|collectives/|runtime/|app/' ;;
        esac
    }
    for dir in base kernels models collectives runtime app; do
        ok=$(allowed $dir)
        while IFS= read -r hit; do
            offence "$hit: $dir/ may include only ${ok//|/, }"
        done < <(c_files "$dir/*" | grep -E '\.(c|h|cu|cuh)$' | xargs grep -nE '^\s*#\s*include\s+"' /dev/null |
            grep -vE "#\s*include\s+\"($ok)")
    done
    ;;
models)
    # GPT-2's symbols (gpt2_*, *_gpt2) and header; the name "gpt2" in a string (the default of
    # model.arch, a weights file without an arch attribute) is not a symbol
    while IFS= read -r hit; do
        offence "$hit: use the model interface (models/model.h), not an architecture's own symbols"
    done < <(c_files '*.c' '*.h' '*.cu' '*.cuh' | grep -E '^(base|kernels|collectives|runtime|app)/' |
        xargs grep -nE '(^|[^A-Za-z0-9_"])gpt2_[A-Za-z0-9_]|[A-Za-z0-9]_gpt2([^A-Za-z0-9_]|$)|models/gpt2' /dev/null |
        grep -vE '^[^:]+:[0-9]+:\s*//')
    ;;
*)
    echo "check_tree: unknown check $check (expected format, exits, getenv, layers or models)" >&2
    exit 2
    ;;
esac
exit $fail
