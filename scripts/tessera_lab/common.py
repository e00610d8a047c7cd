"""common — the lab's error (one line, exit 2), shell commands, log lines, and paths."""

import os
import shlex
import subprocess
import sys
import time

# scripts/tessera_lab/common.py -> the repository root
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
RSH = os.path.join(ROOT, "scripts", "lab-rsh")
LAUNCH = os.path.join(ROOT, "scripts", "launch")
LAB = os.path.join(ROOT, "scripts", "lab")


class LabError(Exception):
    pass


def sh(cmd, check=True, capture=False):
    r = subprocess.run(cmd, shell=isinstance(cmd, str), text=True,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise LabError(f"{cmd if isinstance(cmd, str) else shlex.join(cmd)}: "
                       f"{(r.stderr or '').strip() or 'exit %d' % r.returncode}")
    return r.stdout if capture else r.returncode


def log(msg):
    t = time.time()
    print(f"lab {time.strftime('%H:%M:%S', time.localtime(t))}.{int(t % 1 * 1000):03d}: {msg}",
          file=sys.stderr, flush=True)
