#!/bin/sh
# losses.sh A B FROM TO [TOL] — metrics files A and B hold the same loss for every step FROM..TO:
# as printed (no TOL), or within TOL (absolute). A resumed run appends to its metrics file, so
# the last line of a step is the committed one.
set -u
pick() {
    awk -v from="$2" -v to="$3" '{
        s = $0; sub(/.*"step": /, "", s); sub(/[,}].*/, "", s)
        l = $0; sub(/.*"loss": /, "", l); sub(/[,}].*/, "", l)
        if (s + 0 >= from + 0 && s + 0 <= to + 0) last[s + 0] = l
    } END { for (i = from + 0; i <= to + 0; i++) if (i in last) print i, last[i] }' "$1"
}
a=$(pick "$1" "$3" "$4")
b=$(pick "$2" "$3" "$4")
n=$(($4 - $3 + 1))
for f in "$1" "$2"; do
    got=$(pick "$f" "$3" "$4" | grep -c .)
    [ "$got" -eq "$n" ] || { echo "losses: $f has $got loss lines for steps $3..$4, want $n" >&2; exit 1; }
done
if [ $# -lt 5 ]; then
    if [ "$a" != "$b" ]; then
        echo "losses: the losses of steps $3..$4 differ:" >&2
        printf '%s\n' "$a" > "$2.cmp"
        printf '%s\n' "$b" | diff "$2.cmp" - >&2
        exit 1
    fi
    echo "losses: steps $3..$4 identical ($n lines)"
    exit 0
fi
printf '%s\n%s\n' "$a" "--" "$b" | awk -v tol="$5" '
    $0 == "--" { second = 1; next }
    !second { ref[$1] = $2; next }
    { d = ref[$1] - $2; if (d < 0) d = -d
      if (d > tol) { print "losses: step " $1 ": " ref[$1] " vs " $2; bad = 1 } }
    END { if (bad) exit 1; print "losses: steps within " tol }'
