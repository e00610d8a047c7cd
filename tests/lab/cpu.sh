#!/bin/bash
# cpu.sh — the lab's CPU limits (CTest lab_cpu, label lab): 4 hosts capped at 0.4, 0.4, 0.2 and
# 0.1 cores run a CPU-bound loop at the same time; their speeds relative to the fastest must be
# 1, 1, 0.5 and 0.25 (within 20%); after `slow h1 0.5` h1 must run at half the speed of h2 (which
# it matched before); `down` must remove the hosts' cgroups. A measurement is repeated up to 3
# times before the test fails. Needs root, network namespaces and the cgroup v1 cpu controller:
# skipped (exit 77) where they are missing. The lab has its own state folder and name prefix, so
# a lab a person has up is left alone.
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
[ "$(cat $cg/tlc/h3/cpu.cfs_quota_us)" = 4000 ] || fail "h3's quota is not 4000 us"
# what the agent starts runs in the host's cgroup
"$lab" exec h2 grep -qx '[0-9]*:cpu:/tlc/h2' /proc/self/cgroup || fail "exec h2 is not in tlc/h2"

# speeds FILE: a measurement into FILE; rate FILE HOST, ratio FILE HOST: its columns (host,
# limit "C cores", iterations/s, ratio to the fastest, cores used)
speeds() { "$lab" speeds --seconds 4 >"$1" || { cat "$1"; fail "lab speeds"; }; cat "$1"; }
rate() { awk -v h="$2" '$1 == h { print $4 }' "$1"; }
ratio() { awk -v h="$2" '$1 == h { print $5 }' "$1"; }
used() { awk -v h="$2" '$1 == h { print $6 }' "$1"; }
near() { # GOT WANT: within 20% of WANT
    awk -v g="$1" -v w="$2" 'BEGIN { exit !(g >= 0.8 * w && g <= 1.2 * w) }'
}
# measure NAME CHECK: up to 3 measurements until CHECK FILE passes (the machine's other work can
# take cores from the hosts for a while: a quota is a cap, not a promise)
measure() {
    local try why
    for try in 1 2 3; do
        speeds "$out/$1"
        why=$($2 "$out/$1") && return 0
        echo "lab cpu: $1, attempt $try: $why (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    done
    fail "$why"
}
limits() { # FILE: each host used its quota, and the ratios follow the quotas
    local hw h w r c
    for hw in h1:1:0.4 h2:1:0.4 h3:0.5:0.2 h4:0.25:0.1; do
        IFS=: read -r h w c <<<"$hw"
        r=$(used "$1" "$h")
        near "$r" "$c" || { echo "$h used $r cores, expected $c"; return 1; }
        r=$(ratio "$1" "$h")
        near "$r" "$w" || { echo "$h runs at $r of the fastest host, expected $w"; return 1; }
    done
}
halved() { # FILE: h1 (now 0.2 cores) at half the speed of h2 (0.4 cores, as h1 had before)
    local r
    r=$(awk -v a="$(rate "$1" h1)" -v b="$(rate "$1" h2)" 'BEGIN { print a / b }')
    near "$r" 0.5 || { echo "h1 runs at $r of h2's speed, expected 0.5"; return 1; }
}
measure before limits

"$lab" slow h1 0.5 || fail "lab slow h1 0.5"
[ "$(cat $cg/tlc/h1/cpu.cfs_quota_us)" = 4000 ] || fail "h1's quota is not 4000 us after slow"
"$lab" status | grep '^h1 .*CPU 0.2 cores (base 0.4 cores)' >/dev/null || fail "status after slow"
measure after halved
r=$(awk -v a="$(rate "$out/after" h1)" -v b="$(rate "$out/before" h1)" 'BEGIN { print a / b }')
echo "lab cpu: after slow h1 0.5, h1 runs at $(ratio "$out/after" h1) of the fastest host and" \
    "at $r of its speed before"

"$lab" down || fail "lab down"
[ ! -e "$cg/tlc" ] || fail "$cg/tlc is left after down"
"$lab" down || fail "a second lab down"
echo "lab cpu: ok"
