"""chaos — the launcher across the lab under a fault schedule: lines `SECONDS ACTION [HOST]
[ARG]`, SECONDS after the launcher started; the faults done go to RUN_DIR/launch/faults.jsonl
for the report."""

import json
import os
import shlex
import signal
import subprocess
import threading
import time

from . import state
from .common import LAB, LAUNCH, RSH, LabError, log
from .faults import ARITY, fault, parse_arg
from .hosts import mpirun_args


def parse_schedule(text, path):
    """[(seconds, action, host, arg, line number)] sorted by time; LabError naming path:line"""
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        w = line.split()
        try:
            t = float(w[0])
        except ValueError:
            raise LabError(f"{path}:{no}: \"{w[0]}\": expected seconds after the start")
        if len(w) < 2 or w[1] not in ARITY or len(w) - 2 != ARITY[w[1]]:
            raise LabError(f"{path}:{no}: expected SECONDS ACTION [HOST] [ARG] with ACTION one "
                           f"of {', '.join(ARITY)} (rate takes HOST MBIT, cpu HOST CORES, "
                           f"slow HOST FACTOR)")
        arg = w[3] if len(w) > 3 else None
        try:
            parse_arg(w[1], arg)
        except LabError as e:
            raise LabError(f"{path}:{no}: {w[1]}: {e}")
        out.append((t, w[1], w[2] if len(w) > 2 else None, arg, no))
    return sorted(out)


def read_schedule(path):
    with open(path) as f:
        return parse_schedule(f.read(), path)


def launcher_command(st, a, train):
    return [LAUNCH, "run", "--hostfile", state.path("hosts"),
            "--probe", f"{LAB} probe {{host}}",
            "--remote", f"{RSH} {{host}}", "--mpirun-args", mpirun_args(st),
            "--grace", str(a.grace), "--join-interval", str(a.join_interval),
            "--probe-interval", str(a.probe_interval), "--max-restarts", "5",
            "--backoff", "0.5", "--start-timeout", str(a.start_timeout), "--"] + train


def cmd_chaos(a):
    st = state.load()
    sched = read_schedule(a.schedule) if a.schedule else []
    train = a.train[1:] if a.train and a.train[0] == "--" else a.train
    if not train:
        raise LabError("chaos: missing -- CONFIG [overrides]")
    run_dir = a.run_dir
    env = dict(os.environ)
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    cmd = launcher_command(st, a, train)
    faults = []
    log(f"chaos: {len(sched)} faults scheduled; launcher: {shlex.join(cmd[:2])} ...")
    out = open(a.log, "w") if a.log else subprocess.DEVNULL
    t0 = time.time()
    job = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                           start_new_session=True)
    threads = []
    try:
        for t, action, host, arg, no in sched:
            while time.time() - t0 < t and job.poll() is None:
                time.sleep(0.05)
            if job.poll() is not None:
                log(f"chaos: the run ended before the fault of line {no}")
                break
            if action == "ckpt-kill":  # waits for a checkpoint write: in the background
                def bg(host=host, no=no):
                    msg = fault(st, "ckpt-kill", host, run_dir)
                    faults.append({"t": time.time(), "line": no, "action": "ckpt-kill",
                                   "host": host, "what": msg})
                    log(f"chaos: {msg}")
                th = threading.Thread(target=bg, daemon=True)
                th.start()
                threads.append(th)
                continue
            msg = fault(st, action, host, arg)
            st = state.load()
            faults.append({"t": time.time(), "line": no, "action": action, "host": host,
                           "what": msg})
            log(f"chaos: {msg}")
        rc = job.wait(timeout=a.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        raise LabError(f"chaos: the launcher did not finish within {a.timeout:g} s")
    except KeyboardInterrupt:
        os.killpg(job.pid, signal.SIGKILL)
        raise
    for th in threads:
        th.join(timeout=1)
    with open(os.path.join(run_dir, "launch", "faults.jsonl"), "w") as f:
        for x in faults:
            f.write(json.dumps(x) + "\n")
    log(f"chaos: the launcher exited {rc} after {time.time() - t0:.1f} s")
    return rc
