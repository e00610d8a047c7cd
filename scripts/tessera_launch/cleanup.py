"""cleanup — after a job ends, on every host of it: SIGKILL the run's leftover processes (any
attempt's; matched exactly by TESSERA_LAUNCH_ID), remove Open MPI shared-memory segments no
process maps and session folders of dead mpiruns, and move the ranks' status files into the
attempt's archive. `host_cleanup` runs on the host (`launch host-cleanup`, through --remote);
`cleanup_hosts` runs it everywhere from the launcher."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from . import launch_id, statusfile
from .codes import LAUNCH_SCRIPT


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def process_launch_id(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return launch_id.from_environ(f.read())
    except OSError:
        return None


def run_pids(run_dir, exclude):
    """the processes here whose TESSERA_LAUNCH_ID names `run_dir` exactly"""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) in exclude:
            continue
        value = process_launch_id(int(p))
        if value is not None and launch_id.same_run(value, run_dir):
            out.append(int(p))
    return out


def kill_run(run_dir):
    """SIGKILL every process of the run until none is left (a dying one may linger a moment)"""
    me, killed = {os.getpid()}, []
    for _ in range(50):
        pids = run_pids(run_dir, me)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
            except OSError:
                pass
        time.sleep(0.05)
    return killed


def mapped_shm():
    paths = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    p = line.rstrip("\n").split(None, 5)
                    if len(p) == 6 and p[5].startswith("/dev/shm/"):
                        paths.add(p[5].replace(" (deleted)", ""))
        except OSError:
            pass
    return paths


def remove_stale_ompi_files():
    """this user's vader segments no process maps, session folders of mpiruns that are gone"""
    uid, removed = os.getuid(), []
    in_use = mapped_shm()
    try:
        for name in os.listdir("/dev/shm"):
            path = "/dev/shm/" + name
            if not name.startswith("vader_segment.") or path in in_use:
                continue
            try:
                if os.stat(path).st_uid == uid:
                    os.unlink(path)
                    removed.append(path)
            except OSError:
                pass
    except OSError:
        pass
    tmp = os.environ.get("TMPDIR", "/tmp")
    try:
        for name in os.listdir(tmp):
            top = os.path.join(tmp, name)
            if not (name.startswith("ompi.") and name.endswith(f".{uid}")):
                continue
            for sub in os.listdir(top):
                m = re.fullmatch(r"pid\.(\d+)", sub)
                if m and not pid_alive(int(m.group(1))):
                    subprocess.run(["rm", "-rf", os.path.join(top, sub)], check=False)
                    removed.append(os.path.join(top, sub))
    except OSError:
        pass
    return removed


def collect_statuses(run_dir, archive):
    """{rank (str): status} of the files in run_dir, moved into run_dir/launch/<archive>"""
    statuses = {}
    if not run_dir or not os.path.isdir(run_dir):
        return statuses
    dest = os.path.join(run_dir, "launch", archive) if archive else None
    if dest:
        os.makedirs(dest, exist_ok=True)
    for name in sorted(os.listdir(run_dir)):
        m = statusfile.NAME.fullmatch(name)
        if not m:
            continue
        path = os.path.join(run_dir, name)
        try:
            with open(path) as f:
                statuses[m.group(1)] = statusfile.parse(f.read())
            if dest:
                os.replace(path, os.path.join(dest, name))
        except OSError:
            pass
    return statuses


def host_cleanup(launch_id_value, run_dir, archive):
    """here, on one host: print a JSON report {killed, removed, statuses}"""
    parsed = launch_id.parse(launch_id_value)
    killed = kill_run(parsed[0]) if parsed else []
    removed = remove_stale_ompi_files()
    statuses = collect_statuses(run_dir, archive)
    json.dump({"killed": killed, "removed": removed, "statuses": statuses}, sys.stdout)
    print()
    return 0


def cleanup_hosts(hosts, prefix, python, launch_id_value, run_dir, archive, timeout):
    """{host: report, or None when it did not answer}; `prefix(host)` runs a command there"""
    results = {}

    def one(h):
        cmd = prefix(h) + [python, LAUNCH_SCRIPT, "host-cleanup", "--id", launch_id_value,
                           "--run-dir", run_dir, "--archive", archive]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               timeout=timeout, start_new_session=True)
            results[h] = json.loads(r.stdout) if r.returncode == 0 else None
        except (subprocess.TimeoutExpired, ValueError, OSError):
            results[h] = None
    threads = [threading.Thread(target=one, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {h: results.get(h) for h in hosts}
