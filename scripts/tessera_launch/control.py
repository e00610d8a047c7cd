"""control — the files through which other commands talk to a running launcher, all under
RUN_DIR/launch/: `launcher.pid` (which process runs the run), `requests/` (stop, drain@HOST,
admit@HOST, written by `scripts/launch stop|drain|admit`), and the ranks' RUN_DIR/STOP."""

import os
import stat
import sys

from .codes import InputError
from .hosts import HOST_RULE, valid_host
from .logbook import now

REQUEST_KINDS = ("stop", "drain", "admit")


# ---------------------------------------------------------------------------------------------
# launcher.pid: "PID START" where START is the process's start time (field 22 of
# /proc/PID/stat, clock ticks since boot): a pid the system has since given to another process
# does not match, so a stale file never blocks a run

def proc_start_time(stat_text):
    """field 22 of a /proc/PID/stat text, or None (the name, field 2, may hold ' ' and ')')"""
    try:
        return int(stat_text.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def parse_pidfile(text):
    """(pid, start time or None for a file of the older "PID" form), or None"""
    words = text.split()
    if not words or not words[0].isdigit():
        return None
    start = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
    return int(words[0]), start


def owns_run(recorded, actual_start, cmdline):
    """does the pid file's process still run this run? `recorded` from parse_pidfile,
    `actual_start` the start time of the process with that pid now (None: no such process),
    `cmdline` its argv (for a pid file without a start time: a launcher's `... launch run`)"""
    if recorded is None or actual_start is None:
        return False
    _, start = recorded
    if start is not None:
        return start == actual_start
    return "run" in cmdline and any(os.path.basename(a) == "launch" for a in cmdline)


def read_proc(pid):
    """(start time, argv) of a live process, or (None, [])"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            start = proc_start_time(f.read())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        return start, argv
    except OSError:
        return None, []


def pidfile_path(run_dir):
    return os.path.join(run_dir, "launch", "launcher.pid")


def launcher_pid(run_dir):
    """the pid of the launcher running `run_dir`, or None"""
    try:
        with open(pidfile_path(run_dir)) as f:
            recorded = parse_pidfile(f.read())
    except OSError:
        return None
    if recorded is None:
        return None
    start, argv = read_proc(recorded[0])
    return recorded[0] if owns_run(recorded, start, argv) else None


def write_pidfile(run_dir):
    pid = os.getpid()
    start, _ = read_proc(pid)
    path = pidfile_path(run_dir)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{pid} {start}\n" if start is not None else f"{pid}\n")
    os.replace(tmp, path)


def remove_pidfile(run_dir):
    try:
        os.unlink(pidfile_path(run_dir))
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# requests

def requests_dir(run_dir):
    return os.path.join(run_dir, "launch", "requests")


def check_request_host(kind, host):
    if not valid_host(host):
        raise InputError(f"{kind}: \"{host}\": expected a host name ({HOST_RULE})")


def request(run_dir, kind, host=None):
    """`scripts/launch stop|drain|admit`: leave a request for the running launcher"""
    if host is not None:
        check_request_host(kind, host)
    if launcher_pid(run_dir) is None:
        raise InputError(f"{run_dir}: no launcher runs this run (no live pid in "
                         f"{pidfile_path(run_dir)})")
    name = kind if host is None else f"{kind}@{host}"
    d = requests_dir(run_dir)
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, "." + name + ".tmp")
    with open(tmp, "w") as f:
        f.write(f"{now()}\n")
    os.replace(tmp, os.path.join(d, name))
    return 0


def parse_request(name):
    """(kind, host or None) of a request file's name, or None when it is not one"""
    kind, at, host = name.partition("@")
    if kind not in REQUEST_KINDS or (kind == "stop") == bool(at) or (at and not valid_host(host)):
        return None
    return kind, (host if at else None)


def take_requests(run_dir):
    """the pending requests, oldest name first; each is removed as it is taken"""
    d = requests_dir(run_dir)
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return []
    out = []
    for name in names:
        if name.startswith("."):  # a request being written (request() renames it in place)
            continue
        try:
            os.unlink(os.path.join(d, name))
        except OSError:
            continue
        req = parse_request(name)
        if req:
            out.append(req)
    return out


def clear_requests(run_dir):
    d = requests_dir(run_dir)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        try:
            os.unlink(os.path.join(d, name))  # stale requests of an earlier launcher
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# RUN_DIR/STOP: a regular file there is a stop request every rank reads each step (the rank that
# serves it removes it). Anything else (a directory, a link, a pipe) cannot be served that way:
# the ranks ignore it and warn, and so does the launcher, once, when it starts.

def stop_file_problem(mode):
    """None, or what a STOP of this st_mode (from lstat; None: there is none) is instead of a
    regular file"""
    if mode is None or stat.S_ISREG(mode):
        return None
    return ("a directory" if stat.S_ISDIR(mode) else "a symbolic link" if stat.S_ISLNK(mode)
            else "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")


def check_stop_file(run_dir):
    """None, or the warning about a RUN_DIR/STOP that is no stop request"""
    path = os.path.join(run_dir, "STOP")
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    what = stop_file_problem(mode)
    if what is None:
        return None
    return (f"warning: {path} is {what}, not a regular file: no stop request, the ranks ignore "
            f"it (a stop request is an empty file, or `scripts/launch stop {run_dir}`)")


# ---------------------------------------------------------------------------------------------
# status

def show_status(run_dir):
    pid = launcher_pid(run_dir)
    print(f"launcher: {'pid ' + str(pid) if pid else 'not running'}")
    try:
        with open(os.path.join(run_dir, "launch", "launch.log")) as f:
            lines = f.readlines()
    except OSError as e:
        raise InputError(f"{run_dir}: no launcher log ({e.strerror})")
    sys.stdout.writelines(lines[-10:])
    return 0
