"""check — proof that the shaping works: throughput across a capped link in both directions, and
(with --train) the bytes a rank reports sending against its veth's byte counter."""

import os
import re
import shlex
import subprocess
import sys
import time

from . import state
from .common import RSH, ROOT, LabError, sh
from .faults import fault
from .hosts import mpirun_args

SINK = ("import socket,sys,time\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        "s.bind(('0.0.0.0',int(sys.argv[1]))); s.listen(1); c,_=s.accept(); n=0; t0=None\n"
        "while True:\n"
        "    b=c.recv(1<<16)\n"
        "    if not b: break\n"
        "    if t0 is None: t0=time.time()\n"
        "    n+=len(b)\n"
        "print(n, time.time()-t0)\n")
SOURCE = ("import socket,sys,time\n"
          "c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=30)\n"
          "buf=b'x'*(1<<16); left=int(sys.argv[3])\n"
          "while left>0:\n"
          "    c.sendall(buf[:min(left,len(buf))]); left-=len(buf)\n"
          "c.close()\n")


def throughput(st, src, dst, nbytes, port=5599):
    sink = subprocess.Popen([RSH, dst, shlex.join([sys.executable, "-c", SINK, str(port)])],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    sh([RSH, src, shlex.join([sys.executable, "-c", SOURCE, st["hosts"][dst]["ip"], str(port),
                              str(nbytes)])])
    n, secs = sink.communicate(timeout=120)[0].split()
    return int(n) * 8 / float(secs) / 1e6


def counters(name):
    out = sh(["ip", "netns", "exec", state.ns(name), "cat",
              "/sys/class/net/eth0/statistics/tx_bytes",
              "/sys/class/net/eth0/statistics/rx_bytes"], capture=True).split()
    return int(out[0]), int(out[1])


def within_cap(got, mbit):
    """a measured rate is right when it is 85% to 105% of the cap"""
    return 0.85 * mbit <= got <= 1.05 * mbit


def cmd_check(a):
    st = state.load()
    hosts = list(st["hosts"])
    if len(hosts) < 2:
        raise LabError("check needs 2 hosts (scripts/lab up 2)")
    h1, h2 = hosts[0], hosts[1]
    bad = 0
    old = (st["hosts"][h1]["rate"], st["hosts"][h2]["rate"])
    try:
        for mbit in a.rates:
            fault(st, "rate", h1, mbit)
            fault(st, "rate", h2, 0)  # only h1's link limits
            for src, dst, way in ((h1, h2, "upload"), (h2, h1, "download")):
                got = throughput(st, src, dst, int(mbit * 1e6 / 8 * a.seconds))
                ok = within_cap(got, mbit)
                bad += not ok
                print(f"check: {h1} {way} capped at {mbit:g} Mbit/s: measured {got:.2f} Mbit/s "
                      f"({got / mbit:.3f} of the cap) {'ok' if ok else 'FAIL'}")
    finally:
        fault(st, "rate", h1, old[0])
        fault(st, "rate", h2, old[1])
    if a.train:
        bad += check_bytes(st, h1, h2, a)
    return 1 if bad else 0


def check_bytes(st, h1, h2, a):
    """a 2-host training: the bytes h1's veth sent vs the bytes its rank reports sending"""
    tessera = os.path.join(ROOT, "build", "tessera")
    with open(state.path("check-hosts"), "w") as f:
        f.write(f"{h1} slots=1\n{h2} slots=1\n")
    run = state.path("check-run")
    sh(["rm", "-rf", run])
    tx0, _ = counters(h1)
    cmd = (["mpirun", "--allow-run-as-root", "--hostfile", state.path("check-hosts"),
            "-np", "2"] + shlex.split(mpirun_args(st)) +
           ["-x", "OMP_NUM_THREADS=1", tessera, "train", a.train, "--run.out_dir=" + state.STATE,
            "--run.name=check-run", "--log.every=1", "--eval.every=0", "--log.sample_tokens=0",
            "--ckpt.every=0", "--comm.zero_stage=0"] + a.overrides)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tx1, _ = counters(h1)
    if r.returncode != 0:
        print(r.stdout[-3000:])
        raise LabError(f"the check's training failed (exit {r.returncode})")
    sent = 0
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            m = re.search(r'"bytes_sent": (\d+)', line)
            if m:
                sent += int(m.group(1))
    wire = tx1 - tx0
    ratio = wire / sent if sent else float("inf")
    ok = 1.0 <= ratio <= 1.2
    print(f"check: rank 0 on {h1} reports {sent} bytes sent; {h1}'s veth sent {wire} bytes "
          f"({ratio:.3f}: TCP/IP headers and Open MPI's own messages) {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1
