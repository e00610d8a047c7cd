#!/bin/bash
# cpu.sh — the lab's CPU limits (CTest lab_cpu, label lab): 4 hosts capped at 0.4, 0.4, 0.2 and
# 0.1 cores run a CPU-bound loop at the same time; their speeds relative to the fastest must be
# 1, 1, 0.5 and 0.25 (within 20%); after `slow h1 0.5` h1's speed must halve; `down` must remove
# the hosts' cgroups. Needs root, network namespaces and the cgroup v1 cpu controller: skipped
# (exit 77) where they are missing. The lab has its own state folder and name prefix, so a lab a
# person has up is left alone.
set -u
here=$(cd "$(dirname "$0")" && pwd)
lab="$here/../../scripts/lab"
export TESSERA_LAB_STATE=/run/tessera-lab-cputest TESSERA_LAB_PREFIX=tlc
cg=/sys/fs/cgroup/cpu
if [ "$(id -u)" -ne 0 ] || ! ip netns add tlc-probe 2>/dev/null; then
    echo "lab cpu: SKIP: network namespaces cannot be made here (root with CAP_NET_ADMIN needed)"
    exit 77
fi
ip netns del tlc-probe
if [ ! -f $cg/cpu.cfs_quota_us ] || ! mkdir $cg/tlc-probe 2>/dev/null; then
    echo "lab cpu: SKIP: no usable cgroup v1 cpu controller at $cg"
    exit 77
fi
rmdir $cg/tlc-probe
fail() { echo "lab cpu: FAIL: $*"; exit 1; }
out=$(mktemp -d)
trap '"$lab" down >/dev/null 2>&1; rm -rf "$out"' EXIT

"$lab" up 4 --cpu 0.4,0.4,0.2,0.1 || fail "lab up"
"$lab" status || fail "lab status"
for h in h1 h2 h3 h4; do
    [ -d "$cg/tlc/$h" ] || fail "no cgroup $cg/tlc/$h"
done
[ "$(cat $cg/tlc/h3/cpu.cfs_quota_us)" = 20000 ] || fail "h3's quota is not 20000 us"
# what the agent starts runs in the host's cgroup
"$lab" exec h2 grep -qx '[0-9]*:cpu:/tlc/h2' /proc/self/cgroup || fail "exec h2 is not in tlc/h2"

# speeds FILE: the measurement into FILE; rate FILE HOST, ratio FILE HOST: its columns (host,
# limit "C cores", iterations/s, ratio to the fastest)
speeds() { "$lab" speeds --seconds 4 >"$1" || { cat "$1"; fail "lab speeds"; }; cat "$1"; }
rate() { awk -v h="$2" '$1 == h { print $4 }' "$1"; }
ratio() { awk -v h="$2" '$1 == h { print $5 }' "$1"; }
near() { # GOT WANT: within 20% of WANT
    awk -v g="$1" -v w="$2" 'BEGIN { exit !(g >= 0.8 * w && g <= 1.2 * w) }'
}
speeds "$out/before"
for hw in h1:1 h2:1 h3:0.5 h4:0.25; do
    h=${hw%:*} w=${hw#*:}
    r=$(ratio "$out/before" "$h")
    near "$r" "$w" || fail "$h runs at $r of the fastest host, expected $w (within 20%)"
done

"$lab" slow h1 0.5 || fail "lab slow h1 0.5"
[ "$(cat $cg/tlc/h1/cpu.cfs_quota_us)" = 20000 ] || fail "h1's quota is not 20000 us after slow"
"$lab" status | grep '^h1 .*CPU 0.2 cores (base 0.4 cores)' >/dev/null || fail "status after slow"
speeds "$out/after"
r=$(awk -v a="$(rate "$out/after" h1)" -v b="$(rate "$out/before" h1)" 'BEGIN { print a / b }')
near "$r" 0.5 || fail "after slow h1 0.5, h1 runs at $r of its speed before, expected 0.5"
r=$(ratio "$out/after" h1)
near "$r" 0.5 || fail "after slow h1 0.5, h1 runs at $r of the fastest host, expected 0.5"
echo "lab cpu: h1 after slow 0.5: $r of the fastest host"

"$lab" down || fail "lab down"
[ ! -e "$cg/tlc" ] || fail "$cg/tlc is left after down"
"$lab" down || fail "a second lab down"
echo "lab cpu: ok"
