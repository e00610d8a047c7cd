"""scripts/launch — keep a tessera training running across node loss, planned stops and joins.

  scripts/launch run --hostfile FILE [options] -- CONFIG [--section.key=value ...]
  scripts/launch stop RUN_DIR          planned stop: the ranks checkpoint, the launcher exits 0
  scripts/launch drain HOST RUN_DIR    planned stop, then go on without HOST (its lease ends)
  scripts/launch admit HOST RUN_DIR    let a drained HOST back in (it joins like a new host)
  scripts/launch status RUN_DIR        what the launcher of RUN_DIR is doing

`run` starts mpirun in its own session over the hosts of FILE that answer the probe, with
`tessera train CONFIG ... --resume auto`. When the job ends it makes sure every process of it is
gone on every host, reads the ranks' status files, classifies the end (finished, stopped, peer
lost, bad input, bug), probes the hosts, drops dead ones, re-admits those that answer again and
restarts — until the run finishes, the input is bad, a bug shows, too many restarts make no
progress, or fewer than --min-hosts hosts remain. docs/fault-tolerance.md explains the decisions.
Python 3 standard library only; the remote side (host-cleanup) is this same command.
"""

import argparse
import os
import signal
import sys

from . import control
from .cleanup import host_cleanup
from .codes import EXIT_INPUT, InputError
from .supervisor import Launcher


def parser():
    p = argparse.ArgumentParser(prog="scripts/launch", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # host-cleanup is what the launcher runs on each host over ssh: not listed for people
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{run,stop,status,drain,admit}")
    r = sub.add_parser("run", help="train across the hosts of a hostfile, restarting on failure")
    r.add_argument("--hostfile", required=True, help="lines `HOST [slots=N]`; re-read while "
                   "the run goes on (hosts added there join)")
    r.add_argument("--local", action="store_true", help="every host is a name on this machine: "
                   "its ranks run here with TESSERA_HOST=HOST (tests, trying things out)")
    r.add_argument("--probe", help="shell command that succeeds when {host} is alive "
                   "(default: ssh -o BatchMode=yes -o ConnectTimeout=5 {host} true; "
                   "with --local: true)")
    r.add_argument("--remote", help="prefix that runs a command on {host} (default: ssh -o "
                   "BatchMode=yes -o ConnectTimeout=5 {host}; unused with --local)")
    r.add_argument("--probe-timeout", type=float, default=10.0, metavar="S")
    r.add_argument("--probe-interval", type=float, default=30.0, metavar="S",
                   help="how often hosts outside the job are probed for joining (default 30)")
    r.add_argument("--min-hosts", type=int, default=1, metavar="N",
                   help="give up when fewer hosts answer (default 1)")
    r.add_argument("--max-restarts", type=int, default=3, metavar="N",
                   help="give up after N restarts in a row without a new checkpoint (default 3)")
    r.add_argument("--backoff", type=float, default=1.0, metavar="S",
                   help="before the n-th restart in a row without a new checkpoint, wait "
                   "S x 2^(n-1) seconds, at most 60 (default 1)")
    r.add_argument("--grace", type=float, default=10.0, metavar="S",
                   help="after a failure, mpirun gets comm.timeout_s + S to end before it is "
                   "killed (default 10)")
    r.add_argument("--start-timeout", type=float, default=120.0, metavar="S",
                   help="a job whose ranks are not all up after S seconds is killed and "
                   "restarted (default 120)")
    r.add_argument("--stop-timeout", type=float, default=300.0, metavar="S",
                   help="a planned stop gets S seconds before the job is killed (default 300)")
    r.add_argument("--join", choices=("on", "off"), default="on",
                   help="hosts that appear (or answer again) join at a planned stop (default on)")
    r.add_argument("--join-interval", type=float, default=300.0, metavar="S",
                   help="at least S seconds between (re)starts for a join (default 300)")
    r.add_argument("--mpirun", default="mpirun", help="the mpirun command (default mpirun)")
    r.add_argument("--mpirun-args", default="", help="more mpirun options, one string")
    r.add_argument("--tessera", help="the tessera binary (default build/tessera, else PATH)")
    r.add_argument("train", nargs=argparse.REMAINDER, help="-- CONFIG [--section.key=value ...]")
    for name, h in (("stop", "planned stop; the launcher exits 0"),
                    ("status", "what the launcher of RUN_DIR is doing")):
        s = sub.add_parser(name, help=h)
        s.add_argument("run_dir")
    for name, h in (("drain", "planned stop, then go on without HOST"),
                    ("admit", "let a drained HOST join again")):
        s = sub.add_parser(name, help=h)
        s.add_argument("host")
        s.add_argument("run_dir")
    c = sub.add_parser("host-cleanup")
    c.add_argument("--id", required=True)
    c.add_argument("--run-dir", default="")
    c.add_argument("--archive", default="")
    return p


def run(a):
    train = a.train[1:] if a.train and a.train[0] == "--" else a.train
    a.join = a.join == "on"
    for k in ("min_hosts", "max_restarts"):
        if getattr(a, k) < 0 or (k == "min_hosts" and a.min_hosts < 1):
            raise InputError(f"--{k.replace('_', '-')}: expected a whole number >= "
                             f"{1 if k == 'min_hosts' else 0}")
    launcher = Launcher(a, train)
    try:
        return launcher.run()
    finally:
        att = launcher.attempt
        if att and att.running():  # never leave a job unwatched
            try:
                os.killpg(att.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        launcher.close()


def main(argv):
    a = parser().parse_args(argv)
    try:
        if a.cmd == "host-cleanup":
            return host_cleanup(a.id, a.run_dir, a.archive)
        if a.cmd == "stop":
            return control.request(a.run_dir, "stop")
        if a.cmd in ("drain", "admit"):
            return control.request(a.run_dir, a.cmd, a.host)
        if a.cmd == "status":
            return control.show_status(a.run_dir)
        return run(a)
    except InputError as e:
        print(f"launch: error: {e}", file=sys.stderr)
        return EXIT_INPUT
