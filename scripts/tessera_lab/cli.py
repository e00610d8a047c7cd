"""scripts/lab — several real hosts on one machine: network namespaces on a bridge, shaped links,
faults, and chaos runs of the launcher across them. Needs root (CAP_NET_ADMIN).

  scripts/lab up N [--rate MBIT] [--cpu C1[,C2,...]]
                                   N hosts h1..hN (own netns, IP, hostname), links capped at MBIT,
                                   CPU capped at C cores (one for all or one per host; 0: none)
  scripts/lab down                 remove everything of the lab (idempotent, also after a crash)
  scripts/lab status               hosts, addresses, rates, CPU limits, state
  scripts/lab hostfile             the path of the lab's hostfile (for scripts/launch --hostfile)
  scripts/lab mpirun-args          Open MPI options that pin mpirun to the lab (for --mpirun-args)
  scripts/lab exec HOST CMD...     run a command on a host
  scripts/lab probe HOST           exit 0 when HOST answers over its link (launcher --probe)
  scripts/lab kill HOST            node loss: SIGKILL every process of HOST, HOST stays down
  scripts/lab revive HOST          a lost node returns (answers the probe again)
  scripts/lab partition HOST       take HOST's link down;   scripts/lab heal HOST: up again
  scripts/lab rate HOST MBIT       change HOST's bandwidth (both directions)
  scripts/lab cpu HOST CORES       change HOST's CPU limit (0: unlimited)
  scripts/lab slow HOST FACTOR     HOST's CPU limit to FACTOR x its base (from up/add; 1 restores)
  scripts/lab pause HOST           SIGSTOP every process of HOST (a hung GPU); resume HOST: SIGCONT
  scripts/lab add [--cpu CORES]    a new host h(N+1), appended to the hostfile (a node joins)
  scripts/lab ckpt-kill HOST RUN_DIR   wait until HOST writes a checkpoint, then kill HOST's processes
  scripts/lab check                prove the shaping: throughput across a capped link, byte counters
  scripts/lab speeds [--seconds S] a CPU-bound loop in every host at once: each host's speed
  scripts/lab chaos ...            a launcher run under a fault schedule (see `chaos --help`)

Links are shaped with tc (tbf) on both ends of each host's veth pair: egress inside the host is
its upload, egress on the bridge side its download. netem is not available here, so latency and
loss are not modelled: only bandwidth, partitions and dead or hung nodes. CPU limits are CFS
quotas of a cgroup v1 cpu controller group per host. docs/lab.md has more.
"""

import argparse
import shlex
import subprocess
import sys

from . import state
from .bringup import cmd_down, cmd_status, cmd_up
from .chaos import cmd_chaos
from .check import cmd_check
from .common import RSH, LabError
from .cpu import cmd_speeds
from .faults import cmd_fault
from .hosts import mpirun_args, probe
from .report import cmd_report


def parser():
    p = argparse.ArgumentParser(prog="scripts/lab", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up")
    u.add_argument("n", type=int)
    u.add_argument("--rate", type=float, default=0, help="Mbit/s per link (0: unlimited)")
    u.add_argument("--slots", type=int, default=1, help="ranks per host in the hostfile")
    u.add_argument("--cpu", metavar="C1[,C2,...]",
                   help="CPU limit in cores: one for all hosts or one per host (0: unlimited)")
    for c in ("down", "status", "hostfile", "mpirun-args"):
        sub.add_parser(c)
    sub.add_parser("add").add_argument("--cpu", dest="arg", metavar="CORES",
                                       help="its CPU limit (default 0: unlimited)")
    e = sub.add_parser("exec")
    e.add_argument("host")
    e.add_argument("command", nargs=argparse.REMAINDER)
    for c in ("probe", "kill", "revive", "partition", "heal", "pause", "resume"):
        sub.add_parser(c).add_argument("host")
    for c, meta in (("rate", "MBIT"), ("cpu", "CORES"), ("slow", "FACTOR")):
        r = sub.add_parser(c)
        r.add_argument("host")
        r.add_argument("arg", metavar=meta)
    k = sub.add_parser("ckpt-kill")
    k.add_argument("host")
    k.add_argument("arg", metavar="RUN_DIR")
    c = sub.add_parser("check")
    c.add_argument("--rates", type=float, nargs="+", default=[10, 50])
    c.add_argument("--seconds", type=float, default=3, help="of traffic per measurement")
    c.add_argument("--train", help="also compare veth byte counters with the trainer's bytes: "
                   "this config, 2 hosts")
    c.add_argument("overrides", nargs=argparse.REMAINDER, help="-- --section.key=value ...")
    sp = sub.add_parser("speeds", help="a CPU-bound loop in every host at once: their speeds")
    sp.add_argument("--seconds", type=float, default=5)
    ch = sub.add_parser("chaos", help="the launcher across the lab under a fault schedule")
    ch.add_argument("--schedule", help="lines SECONDS ACTION [HOST] [ARG]")
    ch.add_argument("--run-dir", required=True, help="run.out_dir/run.name of the config")
    ch.add_argument("--log", help="the launcher's output")
    ch.add_argument("--grace", type=float, default=5)
    ch.add_argument("--join-interval", type=float, default=5)
    ch.add_argument("--probe-interval", type=float, default=2)
    ch.add_argument("--start-timeout", type=float, default=20)
    ch.add_argument("--timeout", type=float, default=3600)
    ch.add_argument("train", nargs=argparse.REMAINDER)
    rp = sub.add_parser("report", help="assertions and per-fault times of a chaos run")
    rp.add_argument("run_dir")
    rp.add_argument("--reference", help="the fault-free run of the same config")
    rp.add_argument("--grace", type=float, default=5)
    rp.add_argument("--svg", help="draw the per-kind recovery times into this file")
    return p


def dispatch(a):
    if a.cmd == "up":
        return cmd_up(a)
    if a.cmd == "down":
        return cmd_down(a)
    if a.cmd == "status":
        return cmd_status(a)
    if a.cmd == "hostfile":
        state.load()
        print(state.path("hosts"))
        return 0
    if a.cmd == "mpirun-args":
        print(mpirun_args(state.load()))
        return 0
    if a.cmd == "exec":
        state.host_of(state.load(), a.host)
        return subprocess.call([RSH, a.host, shlex.join(a.command)])
    if a.cmd == "probe":
        return 0 if probe(state.load(), a.host) else 1
    if a.cmd == "check":
        a.overrides = a.overrides[1:] if a.overrides[:1] == ["--"] else a.overrides
        return cmd_check(a)
    if a.cmd == "speeds":
        return cmd_speeds(a)
    if a.cmd == "chaos":
        return cmd_chaos(a)
    if a.cmd == "report":
        return cmd_report(a)
    return cmd_fault(a)


def main(argv):
    a = parser().parse_args(argv)
    try:
        return dispatch(a)
    except LabError as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return 2
