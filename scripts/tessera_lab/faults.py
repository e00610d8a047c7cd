"""faults — what can happen to a host: lost (kill) and back (revive), cut off (partition) and
reconnected (heal), a thinner link (rate), a slower CPU (cpu, slow), hung (pause) and going on
(resume), killed while a checkpoint is written (ckpt-kill), and a new host joining (add)."""

import os
import signal
import time

from . import cpu, state
from .common import LabError, log, sh
from .hosts import make_host, signal_host
from .links import shape

# action: the number of words after it (HOST, and MBIT for rate, CORES for cpu, FACTOR for
# slow); the schedule checks them
ARITY = {"kill": 1, "revive": 1, "partition": 1, "heal": 1, "rate": 2, "cpu": 2, "slow": 2,
         "pause": 1, "resume": 1, "add": 0, "ckpt-kill": 1}


def parse_arg(action, arg):
    """the argument of a fault as a number (rate, cpu, slow), checked; others as given"""
    if action == "rate":
        try:
            mbit = float(arg)
        except (TypeError, ValueError):
            mbit = -1
        if not 0 <= mbit < float("inf"):
            raise LabError(f"MBIT \"{arg}\": expected Mbit/s (0: unlimited)")
        return mbit
    if action == "cpu":
        return cpu.parse_cores(arg)
    if action == "add":
        return 0 if arg is None else cpu.parse_cores(arg, "--cpu")
    if action == "slow":
        return cpu.parse_factor(arg)
    return arg


def next_host_name(names):
    """h(N+1) after the hosts h1..hN (whatever their order or gaps)"""
    return f"h{1 + max(int(h[1:]) for h in names)}"


def fault(st, action, host=None, arg=None):
    """one fault; returns a line saying what was done"""
    arg = parse_arg(action, arg)
    if action == "add":  # arg: its CPU limit in cores (0: unlimited)
        name = next_host_name(st["hosts"])
        if arg and not st.get("cgroup"):
            raise LabError("this lab has no CPU limits: the cgroup v1 cpu controller was not "
                           "usable when it came up")
        make_host(st, name, arg)
        state.save(st)
        return (f"added {name} ({st['hosts'][name]['ip']}"
                f"{', ' + cpu.show(arg) if arg else ''})")
    h = state.host_of(st, host)
    if action == "kill":
        open(state.path("down", host), "w").close()
        pids = signal_host(host, signal.SIGKILL)
        return f"{host}: node lost ({len(pids)} processes killed; down until revived)"
    if action == "revive":
        try:
            os.unlink(state.path("down", host))
        except OSError:
            pass
        return f"{host}: back"
    if action in ("partition", "heal"):
        link = "down" if action == "partition" else "up"
        sh(["ip", "link", "set", state.ns(host), link])
        return f"{host}: link {link}"
    if action == "rate":
        shape("eth0", arg, state.ns(host))
        shape(state.ns(host), arg)
        h["rate"] = arg
        state.save(st)
        return f"{host}: {arg:g} Mbit/s"
    if action in ("cpu", "slow"):
        base = h.get("cpu_base", 0)
        cores = arg if action == "cpu" else cpu.slowed(base, arg)
        cpu.set_limit(st, host, cores)
        state.save(st)
        return f"{host}: CPU {cpu.show(cores)} (base {cpu.show(base)})"
    if action in ("pause", "resume"):
        pids = signal_host(host, signal.SIGSTOP if action == "pause" else signal.SIGCONT)
        return f"{host}: {len(pids)} processes {'stopped' if action == 'pause' else 'continued'}"
    if action == "ckpt-kill":
        root = os.path.join(arg, "ckpt", host)
        until = time.time() + 120
        while time.time() < until:
            try:
                if any(e.endswith(".tmp") for e in os.listdir(root)):
                    pids = signal_host(host, signal.SIGKILL)
                    return f"{host}: killed {len(pids)} processes while a checkpoint was written"
            except OSError:
                pass
            time.sleep(0.002)
        return f"{host}: no checkpoint write seen in 120 s; nothing killed"
    raise LabError(f"unknown fault '{action}'")


def cmd_fault(a):
    st = state.load()
    log(fault(st, a.cmd, getattr(a, "host", None), getattr(a, "arg", None)))
    return 0
