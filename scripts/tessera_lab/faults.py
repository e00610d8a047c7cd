"""faults — what can happen to a host: lost (kill) and back (revive), cut off (partition) and
reconnected (heal), slower (rate), hung (pause) and going on (resume), killed while a checkpoint
is written (ckpt-kill), and a new host joining (add)."""

import os
import signal
import time

from . import state
from .common import LabError, log, sh
from .hosts import make_host, signal_host
from .links import shape

# action: the number of words after it (HOST, and MBIT for rate); the schedule checks them
ARITY = {"kill": 1, "revive": 1, "partition": 1, "heal": 1, "rate": 2, "pause": 1, "resume": 1,
         "add": 0, "ckpt-kill": 1}


def next_host_name(names):
    """h(N+1) after the hosts h1..hN (whatever their order or gaps)"""
    return f"h{1 + max(int(h[1:]) for h in names)}"


def fault(st, action, host=None, arg=None):
    """one fault; returns a line saying what was done"""
    if action == "add":
        name = next_host_name(st["hosts"])
        make_host(st, name)
        state.save(st)
        return f"added {name} ({st['hosts'][name]['ip']})"
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
        mbit = float(arg)
        shape("eth0", mbit, state.ns(host))
        shape(state.ns(host), mbit)
        h["rate"] = mbit
        state.save(st)
        return f"{host}: {mbit:g} Mbit/s"
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
