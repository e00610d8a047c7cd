"""statusfile — a rank's status file (<run_dir>/rank-R.status, docs/fault-tolerance.md): lines
`KEY VALUE`; step, peer, exit_code and pid are whole numbers."""

import re

NAME = re.compile(r"rank-(\d+)\.status")
INT_KEYS = ("step", "peer", "exit_code", "pid")


def parse(text):
    st = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k:
            st[k] = v
    for k in INT_KEYS:
        if k in st:
            try:
                st[k] = int(st[k])
            except ValueError:
                pass
    return st
