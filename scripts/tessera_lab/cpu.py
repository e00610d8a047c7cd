"""cpu — a host's CPU limit: one group of the cgroup v1 cpu controller per host
(CPU_ROOT/<prefix>/<host>) with a CFS quota per 20 ms period; every process started in the host
joins it (scripts/lab-rsh writes its own PID into cgroup.procs before it enters the host). Where
the controller is not there, the lab runs without limits. `speeds` shows the limits at work."""

import errno
import os
import shlex
import subprocess
import sys
import time

from . import state
from .common import RSH, LabError

CPU_ROOT = "/sys/fs/cgroup/cpu"
PERIOD_US = 20000  # short: a throttled host pauses for at most a few ms at a time
MIN_QUOTA_US = 1000  # the kernel's floor: 0.05 core at this period
MAX_FACTOR = 100


def machine_cores():
    return os.cpu_count() or 1


def parse_cores(text, what="CORES"):
    """cores as a float: 0 (unlimited) or 0.05 up to the machine's core count"""
    try:
        c = float(text)
    except (TypeError, ValueError):
        raise LabError(f"{what} \"{text}\": expected a number of cores (0: unlimited)")
    if c != c or c < 0 or c > machine_cores() or 0 < c < MIN_QUOTA_US / PERIOD_US:
        raise LabError(f"{what} \"{text}\": expected 0 (unlimited) or {MIN_QUOTA_US / PERIOD_US:g}"
                       f" to {machine_cores()} cores")
    return c


def parse_cpu_list(text, n):
    """--cpu C1[,C2,...] for n hosts: one value for all, or one per host"""
    parts = str(text).split(",")
    if len(parts) not in (1, n):
        raise LabError(f"--cpu \"{text}\": expected one value for all hosts or {n} values "
                       f"(one per host), not {len(parts)}")
    cores = [parse_cores(p.strip(), "--cpu") for p in parts]
    return cores * n if len(cores) == 1 else cores


def parse_factor(text):
    try:
        f = float(text)
    except (TypeError, ValueError):
        f = None
    if f is None or not 0 < f <= MAX_FACTOR:
        raise LabError(f"FACTOR \"{text}\": expected a number above 0 and at most {MAX_FACTOR} "
                       f"(a multiple of the host's base limit; 1 restores it)")
    return f


def slowed(base, factor):
    """the limit FACTOR x base; an unlimited base counts as the machine's cores (and stays
    unlimited for a factor of 1 or more)"""
    if not base:
        return 0 if factor >= 1 else factor * machine_cores()
    return max(base * factor, MIN_QUOTA_US / PERIOD_US)


def quota_us(cores):
    """cpu.cfs_quota_us for a limit in cores: -1 when unlimited, at least the kernel's floor"""
    if not cores:
        return -1
    return max(MIN_QUOTA_US, int(round(cores * PERIOD_US)))


def show(cores):
    return f"{cores:g} core{'' if cores == 1 else 's'}" if cores else "unlimited"


def root():
    """the lab's folder in the cpu controller, created; None (with the reason) where there is no
    usable cgroup v1 cpu controller"""
    if not os.path.isfile(os.path.join(CPU_ROOT, "cpu.cfs_quota_us")):
        return None, f"no cgroup v1 cpu controller at {CPU_ROOT}"
    d = os.path.join(CPU_ROOT, state.PREFIX)
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        return None, f"cannot make {d}: {e.strerror}"
    return d, None


def group(st, name):
    return os.path.join(st["cgroup"], name)


def write(path, value):
    try:
        with open(path, "w") as f:
            f.write(f"{value}\n")
    except OSError as e:
        raise LabError(f"{path}: cannot write {value}: {e.strerror}")


def make_group(st, name, cores):
    d = group(st, name)
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        raise LabError(f"cannot make the cgroup {d}: {e.strerror}")
    apply(st, name, cores)


def apply(st, name, cores):
    d = group(st, name)
    write(os.path.join(d, "cpu.cfs_period_us"), PERIOD_US)
    write(os.path.join(d, "cpu.cfs_quota_us"), quota_us(cores))


def set_limit(st, host, cores):
    """a host's current limit (its base from up or add stays)"""
    h = state.host_of(st, host)
    if not st.get("cgroup"):
        if not cores:
            return  # unlimited it is
        raise LabError("this lab has no CPU limits: the cgroup v1 cpu controller was not "
                       "usable when it came up")
    apply(st, host, cores)
    h["cpu"] = cores


def pids(d):
    try:
        with open(os.path.join(d, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def remove_groups():
    """every group of the prefix, its processes moved to the top first; returns how many"""
    top = os.path.join(CPU_ROOT, state.PREFIX)
    if not os.path.isdir(top):
        return 0
    n = 0
    for name in sorted(os.listdir(top)):
        d = os.path.join(top, name)
        if not os.path.isdir(d):
            continue
        for _ in range(50):
            for pid in pids(d):
                try:
                    with open(os.path.join(CPU_ROOT, "cgroup.procs"), "w") as f:
                        f.write(f"{pid}\n")
                except OSError:
                    pass  # gone meanwhile
            try:
                os.rmdir(d)
                n += 1
                break
            except OSError as e:
                if e.errno == errno.ENOENT:
                    break
                time.sleep(0.02)
        else:
            raise LabError(f"cannot remove the cgroup {d}: processes {pids(d)} remain")
    try:
        os.rmdir(top)
    except OSError as e:
        raise LabError(f"cannot remove the cgroup {top}: {e.strerror}")
    return n


# a single-threaded CPU-bound loop from START (epoch seconds) for SECONDS: "iterations/s
# cores-used seconds-late" (cores used: its CPU time over the wall time)
LOOP = ("import sys,time\n"
        "start=float(sys.argv[1]); end=start+float(sys.argv[2])\n"
        "time.sleep(max(0.0,start-time.time())); t0=time.time(); c0=time.process_time(); n=0\n"
        "while True:\n"
        "    for _ in range(10000): pass\n"
        "    n+=10000; t=time.time()\n"
        "    if t>=end: break\n"
        "print(n/(t-t0), (time.process_time()-c0)/(t-t0), t0-start)\n")


def speeds(st, seconds, lead=2.0):
    """{host: (iterations/s, cores used, seconds started late) or None when the host refused}:
    the loop in every host at the same time, started through the agent (in the host's cgroup)"""
    start = time.time() + lead + 0.1 * len(st["hosts"])
    procs = {h: subprocess.Popen([RSH, h, shlex.join([sys.executable, "-c", LOOP, f"{start:.3f}",
                                                      f"{seconds:g}"])],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for h in st["hosts"]}
    out = {}
    for h, p in procs.items():
        text = p.communicate(timeout=seconds + lead + 60)[0].split()
        out[h] = tuple(map(float, text)) if p.returncode == 0 and len(text) == 3 else None
    return out


def ratios(rates):
    """each host's iterations/s over the fastest host's"""
    top = max((r for r in rates.values() if r), default=0)
    return {h: (r / top if r and top else None) for h, r in rates.items()}


def cmd_speeds(a):
    st = state.load()
    if not 0 < a.seconds <= 600:
        raise LabError(f"--seconds {a.seconds:g}: expected more than 0 and at most 600")
    print(f"speeds: a single-threaded loop in each of {len(st['hosts'])} hosts at the same time "
          f"for {a.seconds:g} s (the machine has {machine_cores()} cores"
          f"{'' if st.get('cgroup') else '; no CPU limits in this lab'})", flush=True)
    got = speeds(st, a.seconds)
    rel = ratios({h: g[0] if g else None for h, g in got.items()})
    print(f"{'host':6s} {'CPU limit':12s} {'iterations/s':>14s} {'ratio':>6s} {'cores used':>10s}")
    for h, g in got.items():
        limit = show(st["hosts"][h].get("cpu", 0))
        if g is None:
            print(f"{h:6s} {limit:12s} {'-':>14s} {'-':>6s} {'-':>10s}  (the host refused: lost "
                  f"or cut off)")
            continue
        late = f"  (started {g[2]:.2f} s late)" if g[2] > 0.1 else ""
        print(f"{h:6s} {limit:12s} {g[0]:14.0f} {rel[h]:6.3f} {g[1]:10.3f}{late}")
    return 0 if any(got.values()) else 1
