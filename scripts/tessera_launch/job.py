"""job — one attempt: the mpirun command line, the process (in its own session), the thread that
passes its output through and records what it says, and the SIGKILL of its whole session."""

import os
import shlex
import signal
import subprocess
import sys
import threading

from . import output
from .codes import InputError
from .logbook import now

# environment variables every rank gets besides TESSERA_* (TESSERA_HOST is set per host)
PASSED_ENV = ("OPENBLAS_CORETYPE", "OMP_WAIT_POLICY", "PATH", "LD_LIBRARY_PATH",
              "HDF5_PLUGIN_PATH")


def mpirun_command(mpirun, mpirun_args, local, env, train, hosts):
    """the command of a job: `train` (the trainer's argv) on each (host, slots) of `hosts`"""
    cmd = shlex.split(mpirun) + [
        # a partitioned host keeps Open MPI waiting for minutes on its out-of-band TCP
        # keepalives; detect a dead daemon in ~25 s instead of ~8 min
        "--mca", "oob_tcp_keepalive_time", "10", "--mca", "oob_tcp_keepalive_intvl", "5",
        "--mca", "oob_tcp_keepalive_probes", "3"]
    if local:
        cmd += ["--oversubscribe"]
    cmd += shlex.split(mpirun_args or "")
    passed = ["TESSERA_LAUNCH_ID"] + sorted(
        k for k in env if k.startswith("TESSERA_") and k not in ("TESSERA_LAUNCH_ID",
                                                                  "TESSERA_HOST"))
    passed += [k for k in PASSED_ENV if k in env]
    for k in passed:
        cmd += ["-x", k]
    for i, (host, slots) in enumerate(hosts):
        if i:
            cmd.append(":")
        cmd += ["-np", str(slots)]
        if not local:
            cmd += ["--host", f"{host}:{slots}"]
        cmd += ["env", f"TESSERA_HOST={host}"] + train
    return cmd


class Attempt:
    """one mpirun job: its process, what its output said, and how it ended"""

    def __init__(self, number, hosts, launch_id, log):
        self.number = number
        self.hosts = hosts  # [(host, slots)]
        self.launch_id = launch_id
        self.log = log
        self.proc = None
        self.started = None
        self.ready = None  # every rank can take a stop signal
        self.first_step = None
        self.reader = None
        self.resumed_from = None
        self.newest_ckpt = None
        self.detected = None  # first sign of failure
        self.fault = None  # a fault injection line
        self.failures = []  # marker lines: (rank, code, reason, step)
        self.signals = []  # (rank, signal number) from mpirun's report
        self.exits = []  # (rank, code) from mpirun's report of the first rank exiting non-zero
        self.reported_rank = None  # a "Process name" line waiting for its "Exit code"
        self.killed_by_us = False
        self.kill_why = ""
        self.rc = None
        self.ended = None
        self.lock = threading.Lock()

    def start(self, cmd, env):
        self.started = now()
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        except OSError as e:
            raise InputError(f"{cmd[0]}: cannot start mpirun: {e.strerror} (give --mpirun)")
        self.reader = threading.Thread(target=self.read_output, daemon=True)
        self.reader.start()

    def read_output(self):
        out = self.proc.stdout
        for raw in iter(out.readline, b""):
            line = raw.decode("utf-8", "replace")
            sys.stdout.write(line)
            sys.stdout.flush()
            text = line.rstrip("\n")
            t = now()
            with self.lock:
                for fact in output.scan(text):
                    self.note(fact, text, t)
        out.close()

    def note(self, fact, text, t):
        kind = fact[0]
        # rank 0 names the run directory once every rank is past MPI_Init, whose start-up
        # exchange follows each rank's installing its stop handler
        if kind == "ready" and self.ready is None:
            self.ready = t
        elif kind == "step" and self.first_step is None:
            self.first_step = t
            self.ready = self.ready or t
            how = ("from scratch" if not self.resumed_from else
                   f"resumed from step {self.resumed_from}")
            self.log(f"attempt {self.number}: training (step {fact[1]}, {how})", "first_step",
                     attempt=self.number, step=fact[1], resumed_from=self.resumed_from)
        elif kind == "resumed":
            self.resumed_from = fact[1]
        elif kind == "fresh":
            self.resumed_from = 0
        elif kind == "ckpt":
            self.newest_ckpt = fact[1]
        elif kind == "fault" and self.fault is None:
            self.fault = t
            self.log(f"attempt {self.number}: {text}", "fault", attempt=self.number)
        elif kind == "exit":
            self.failures.append(fact[1:])
            self.detect(t, f"rank {fact[1]} exits {fact[2]} ({fact[3]})")
        elif kind == "signal":
            self.signals.append(fact[1:])
            self.detect(t, f"rank {fact[1]} died of signal {fact[2]}")
        elif kind == "process":
            self.reported_rank = fact[1]
        elif kind == "exit_code" and self.reported_rank is not None:
            self.exits.append((self.reported_rank, fact[1]))
            self.reported_rank = None

    def detect(self, t, what):
        """the first sign of a failure (call with the lock held)"""
        if self.detected is None:
            self.detected = t
            self.log(f"attempt {self.number}: failure detected: {what}", "detected",
                     attempt=self.number, what=what)

    def kill(self, why):
        if self.proc.poll() is not None or self.killed_by_us:
            return
        self.killed_by_us = True
        self.kill_why = why
        self.log(f"attempt {self.number}: {why}: SIGKILL to mpirun's session", "kill",
                 attempt=self.number, why=why)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def reap(self):
        """after mpirun ended: its exit code, whatever it left in its session killed"""
        self.rc = self.proc.wait()
        self.ended = now()
        try:  # whatever mpirun left in its session (it may hold the output pipe open)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if self.reader:
            self.reader.join(timeout=10)
        if self.rc != 0 and not self.killed_by_us:
            with self.lock:
                self.detect(self.ended, f"mpirun exited {self.rc}")
