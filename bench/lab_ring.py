#!/usr/bin/python3
"""lab_ring.py — how much of a thin link tessera's ring all-reduce uses, against the links' own
byte counters, in the lab (scripts/lab: network namespaces on a bridge, tbf-shaped links).

For each host count (2, 4) and link rate (10, 100 Mbit/s each way, every host alike) it runs
build/tests/ring_bench (bench/ring_bench.c: back-to-back all-reduces of one bucket size, timed
on the wall clock) under each ring cut given (TESSERA_COMM_SEGMENT x TESSERA_COMM_WINDOW, or
`auto`, the communicator's own choice), alternating the cuts round by round (A B A B ...), and,
as a peer, plain TCP: every host sends the same payload to the next host of the ring over one
connection while it receives from the one before (Python sockets), which is what the links
allow at best.

A thread samples the byte counters of every host's link every 10 ms (the bridge-side veth in the
root namespace: its rx_bytes are what the host sent, its tx_bytes what it received). For each
sample of ring_bench (T0..T1 on the wall clock, REPS all-reduces), with R the link rate:
    payload = payload bytes each rank sent / ((T1 - T0) * R)
    wire    = bytes each host's link carried out of the host / ((T1 - T0) * R)   (mean of hosts)
wire counts everything on the link: TCP/IP and Ethernet headers, the acknowledgements of the
traffic coming the other way, retransmissions, Open MPI's own messages. A saturated link shows
wire ~1.0 and payload ~0.94 (1448 payload bytes in a 1514-byte frame, plus the acknowledgements
of the reverse direction). Figures are medians over every sample of every round; `vs first` is
the median over rounds of the first cut's time per all-reduce divided by this cut's.

Normally started by bench/lab_ring.sh (which builds ring_bench). Needs root. Standard library
only. The lab is its own (TESSERA_LAB_STATE=/run/tessera-lab-ring, prefix tlr) and is taken down
at the end, also after an error or Ctrl-C.
"""

import argparse
import bisect
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
os.environ.setdefault("TESSERA_LAB_STATE", "/run/tessera-lab-ring")
os.environ.setdefault("TESSERA_LAB_PREFIX", "tlr")
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
sys.path.insert(0, os.path.join(REPO, "scripts"))
from tessera_lab import state  # noqa: E402

LAB = os.path.join(REPO, "scripts", "lab")
RSH = os.path.join(REPO, "scripts", "lab-rsh")

# the TCP peer, one process per host: listen, connect to the next host, then send NBYTES to it
# while receiving NBYTES from the host before; prints the wall-clock start and end
TCP_RING = r"""
import socket, sys, threading, time
me, nxt, nbytes, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((me, port)); ls.listen(1)
deadline = time.time() + 30
while True:
    try:
        out = socket.create_connection((nxt, port), timeout=30); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.05)
inc, _ = ls.accept()
t0 = time.time()
def drain():
    left = nbytes
    while left > 0:
        b = inc.recv(1 << 16)
        if not b: break
        left -= len(b)
th = threading.Thread(target=drain); th.start()
buf = b"x" * (1 << 16); left = nbytes
while left > 0:
    left -= out.send(buf[:min(left, len(buf))])
th.join()
print(f"{t0:.6f} {time.time():.6f}")
"""


def say(msg):
    print(f"lab_ring {time.strftime('%H:%M:%S')}: {msg}", file=sys.stderr, flush=True)


def lab(*args):
    r = subprocess.run([LAB, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"scripts/lab {' '.join(args)}: {r.stdout.strip()}")
    return r.stdout


class Sampler:
    """the links' byte counters every `period` s: rows (t, [sent_h1, recv_h1, sent_h2, ...])"""

    def __init__(self, hosts, period=0.01):
        self.files = []
        for h in hosts:
            d = f"/sys/class/net/{state.ns(h)}/statistics"
            self.files += [f"{d}/rx_bytes", f"{d}/tx_bytes"]  # bridge side: rx = the host's tx
        self.period, self.t, self.rows = period, [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            vals = []
            for f in self.files:
                with open(f) as fh:
                    vals.append(int(fh.read()))
            self.t.append(time.time())
            self.rows.append(vals)
            time.sleep(self.period)

    def __enter__(self):
        self.thread.start()
        time.sleep(3 * self.period)
        return self

    def __exit__(self, *exc):
        time.sleep(3 * self.period)
        self.stop.set()
        self.thread.join()

    def at(self, t):
        """the counters at time t, interpolated between the two samples around it"""
        i = min(max(bisect.bisect_left(self.t, t), 1), len(self.t) - 1)
        t0, t1 = self.t[i - 1], self.t[i]
        f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
        return [a + (b - a) * f for a, b in zip(self.rows[i - 1], self.rows[i])]

    def sent(self, t0, t1):
        """bytes each host sent between t0 and t1"""
        a, b = self.at(t0), self.at(t1)
        return [b[k] - a[k] for k in range(0, len(a), 2)]


def cut_env(cut):
    if cut == "auto":
        return []
    m = re.fullmatch(r"(\d+)x(\d+)", cut)
    if not m:
        raise SystemExit(f"lab_ring: cut {cut!r}: expected SEGMENTxWINDOW (524288x2) or auto")
    return ["-x", f"TESSERA_COMM_SEGMENT={m.group(1)}", "-x", f"TESSERA_COMM_WINDOW={m.group(2)}"]


def run_ring(a, hosts, hostfile, cut, rate, reps):
    """one mpirun of ring_bench: [(seconds, payload, wire)] per sample, and its schedule line"""
    cmd = (["mpirun", "--hostfile", hostfile, "-np", str(len(hosts))]
           + shlex.split(lab("mpirun-args")) + ["-x", "OMP_NUM_THREADS=1"] + cut_env(cut)
           + [a.ring_bench, str(a.mb << 20), str(a.samples), str(reps)])
    with Sampler(hosts) as smp:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"ring_bench failed (exit {r.returncode}):\n{r.stdout[-3000:]}")
    out, sched = [], ""
    for line in r.stdout.splitlines():
        w = line.split()
        if w[:1] == ["sample"]:
            t0, t1, sent = float(w[2]), float(w[3]), int(w[4])
            secs, bps = t1 - t0, rate * 1e6 / 8
            wire = statistics.mean(smp.sent(t0, t1))
            out.append((secs / reps, sent / len(hosts) / (secs * bps), wire / (secs * bps)))
        elif w[:1] == ["schedule"]:
            sched = line.split(":", 1)[1].strip()
    return out, sched


def run_tcp(a, hosts, ips, rate, nbytes):
    """the TCP peer once: (seconds, payload, wire), over the span from the first start to the
    last end"""
    port = 5700 + int(time.time()) % 200
    with Sampler(hosts) as smp:
        procs = [subprocess.Popen([RSH, h, shlex.join([sys.executable, "-c", TCP_RING, ips[h],
                                                         ips[hosts[(k + 1) % len(hosts)]],
                                                         str(nbytes), str(port)])],
                                  stdout=subprocess.PIPE, text=True)
                 for k, h in enumerate(hosts)]
        spans = [p.communicate(timeout=600)[0].split() for p in procs]
    if any(p.returncode != 0 or len(s) != 2 for p, s in zip(procs, spans)):
        raise RuntimeError("the TCP peer failed")
    t0, t1 = min(float(s[0]) for s in spans), max(float(s[1]) for s in spans)
    secs, bps = t1 - t0, rate * 1e6 / 8
    wire = statistics.mean(smp.sent(t0, t1))
    return secs, nbytes / (secs * bps), wire / (secs * bps)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, nargs="+", default=[2, 4])
    p.add_argument("--rates", type=float, nargs="+", default=[10, 100], help="Mbit/s")
    p.add_argument("--cuts", nargs="+", default=["524288x2", "auto"],
                   help="SEGMENTxWINDOW or auto; the first is the reference of `vs first`")
    p.add_argument("--rounds", type=int, default=3, help="alternated runs of every cut")
    p.add_argument("--samples", type=int, default=3, help="samples per run")
    p.add_argument("--mb", type=int, default=4, help="MiB per all-reduce (the bucket)")
    p.add_argument("--seconds", type=float, default=3.5,
                   help="about this long per sample: all-reduces per sample follow the rate")
    p.add_argument("--no-tcp", action="store_true", help="leave out the TCP peer")
    p.add_argument("--ring-bench", dest="ring_bench",
                   default=os.path.join(REPO, "build", "tests", "ring_bench"))
    a = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("lab_ring: the lab needs root")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = {}  # (hosts, rate, cut) -> {"samples": [...], "rounds": [s per all-reduce]}
    scheds = {}
    try:
        lab("down")
        lab("up", str(max(a.hosts)))
        st = state.load()
        all_hosts = list(st["hosts"])
        ips = {h: st["hosts"][h]["ip"] for h in all_hosts}
        for n in a.hosts:
            hosts = all_hosts[:n]
            hostfile = state.path(f"ring-hosts-{n}")
            with open(hostfile, "w") as f:
                f.writelines(f"{h} slots=1\n" for h in hosts)
            for rate in a.rates:
                for h in all_hosts:
                    lab("rate", h, f"{rate:g}")
                # bytes each rank sends per all-reduce: 2 (p - 1) / p of the bucket
                per_ar = 2 * (n - 1) / n * (a.mb << 20)
                reps = max(1, round(a.seconds * rate * 1e6 / 8 / per_ar))
                sides = a.cuts + ([] if a.no_tcp else ["tcp"])
                for rnd in range(a.rounds):
                    for cut in sides:
                        key = (n, rate, cut)
                        res = results.setdefault(key, {"samples": [], "rounds": []})
                        if cut == "tcp":
                            s = [run_tcp(a, hosts, ips, rate, int(per_ar * reps))]
                            s = [(s[0][0] / reps, s[0][1], s[0][2])]
                        else:
                            s, scheds[key] = run_ring(a, hosts, hostfile, cut, rate, reps)
                        res["samples"] += s
                        res["rounds"].append(statistics.median(x[0] for x in s))
                        say(f"{n} hosts, {rate:g} Mbit/s, round {rnd + 1}/{a.rounds}, {cut}: "
                            + ", ".join(f"payload {x[1]:.3f} wire {x[2]:.3f}" for x in s))
    finally:
        say("taking the lab down")
        subprocess.run([LAB, "down"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    print(f"\nring all-reduce of {a.mb} MiB buckets, {a.rounds} rounds x {a.samples} samples "
          f"per cut (the TCP peer: 1 per round); medians\n")
    print("| hosts | link Mbit/s | cut | s per all-reduce | payload / rate | wire / rate | "
          "vs first |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (n, rate, cut), res in results.items():
        x = res["samples"]
        ref = results[(n, rate, a.cuts[0])]["rounds"]
        vs = statistics.median(r / s for r, s in zip(ref, res["rounds"]))
        name = "TCP, same bytes" if cut == "tcp" else cut
        print(f"| {n} | {rate:g} | {name} | {statistics.median(v[0] for v in x):.3f} | "
              f"{statistics.median(v[1] for v in x):.3f} | "
              f"{statistics.median(v[2] for v in x):.3f} | {vs:.2f}x |")
    print()
    for (n, rate, cut), s in scheds.items():
        if rate == a.rates[0]:
            print(f"{n} hosts, {cut}: {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
