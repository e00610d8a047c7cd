"""hosts — the hostfile (`HOST [slots=N]` lines, `#` comments), strict host names, the probe, and
which listed hosts a job gets (dead ones out, returning ones back in, drained ones left out)."""

import os
import re
import shlex
import subprocess
import threading

from .codes import InputError
from .logbook import now

# Host names reach ssh, mpirun's --host HOST:SLOTS and shell commands: a DNS-style name or an
# IPv4 address, dot-separated parts of letters, digits, '-' and '_' that begin and end with a
# letter or digit (so that "-G" can never be taken for an option). IPv6 is not accepted: its ':'
# clashes with --host HOST:SLOTS.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
HOST_RULE = ("letters, digits, '.', '_', '-'; each dot-separated part begins and ends with a "
             "letter or digit")


def valid_host(name):
    return len(name) <= 253 and _HOST.fullmatch(name) is not None


def parse_hostfile_text(text, path):
    """[(host, slots)] in file order; InputError naming path:line for a bad line"""
    hosts = []
    for no, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        host, slots = words[0], 1
        for w in words[1:]:
            m = re.fullmatch(r"(?:slots|max_slots)=(\d+)", w)
            if not m or int(m.group(1)) < 1:
                raise InputError(f"{path}:{no}: \"{w}\": expected slots=N with N >= 1 "
                                 f"(a line is: HOST [slots=N])")
            if w.startswith("slots="):
                slots = int(m.group(1))
        if not valid_host(host):
            raise InputError(f"{path}:{no}: \"{host}\": expected a host name ({HOST_RULE})")
        if any(h == host for h, _ in hosts):
            raise InputError(f"{path}:{no}: host \"{host}\" is listed twice")
        hosts.append((host, slots))
    return hosts


def parse_hostfile(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot read the hostfile: {e.strerror}")
    return parse_hostfile_text(text, path)


def probe(hosts, template, timeout):
    """{host: alive} — every host probed at once: `template` with {host} replaced succeeds
    within `timeout` seconds"""
    result = {}

    def one(h):
        cmd = template.replace("{host}", shlex.quote(h))
        try:
            r = subprocess.run(cmd, shell=True, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=timeout, start_new_session=True)
            result[h] = r.returncode == 0
        except (subprocess.TimeoutExpired, OSError):
            result[h] = False
    threads = [threading.Thread(target=one, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {h: result.get(h, False) for h in hosts}


def review(listed, drained, dead, alive):
    """after probing: (the hosts a job gets [(host, slots)], hosts newly dead, hosts back).
    `listed` is the hostfile, `alive` {host: answered} for the probed (not drained) hosts"""
    gone = [h for h, _ in listed if h in alive and not alive[h] and h not in dead]
    back = [h for h, _ in listed if alive.get(h) and h in dead]
    chosen = [(h, s) for h, s in listed if h not in drained and alive.get(h)]
    return chosen, gone, back


def outside(listed, in_job, drained):
    """listed hosts that are not in the job and not drained: candidates for a join"""
    return [h for h, _ in listed if h not in in_job and h not in drained]


def rank_hosts(hosts):
    """{rank: host}: mpirun numbers ranks in the order of the app contexts, one per host"""
    out, r = {}, 0
    for h, slots in hosts:
        for _ in range(slots):
            out[r] = h
            r += 1
    return out


class HostTable:
    """the hostfile as last read, and what the launcher knows of its hosts"""

    def __init__(self, path, log):
        self.path = os.path.abspath(path)
        self.log = log
        self.mtime = None
        self.listed = []  # [(host, slots)] as in the hostfile
        self.dead = set()
        self.drained = set()
        self.last_probe = 0.0

    def names(self):
        return [h for h, _ in self.listed]

    def reload(self, first=False):
        """re-read the hostfile if it changed; True when it was read"""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError as e:
            if first:
                raise InputError(f"{self.path}: cannot read the hostfile: {e.strerror}")
            return False
        if mtime == self.mtime:
            return False
        try:
            hosts = parse_hostfile(self.path)
        except InputError as e:
            if first:
                raise
            self.log(f"{e}; keeping the previous host list")
            self.mtime = mtime
            return False
        if first and not hosts:
            raise InputError(f"{self.path}: no hosts listed")
        old = set(self.names())
        self.listed = hosts
        self.mtime = mtime
        if not first:
            added = [h for h, _ in hosts if h not in old]
            gone = [h for h in old if h not in {x for x, _ in hosts}]
            if added or gone:
                self.log(f"hostfile changed: added {added or 'none'}, removed {gone or 'none'}",
                         "hostfile", added=added, removed=gone)
        return True

    def choose(self, template, timeout):
        """probe every listed host that is not drained; dead ones out, returning ones back in"""
        candidates = [h for h in self.names() if h not in self.drained]
        alive = probe(candidates, template, timeout)
        chosen, gone, back = review(self.listed, self.drained, self.dead, alive)
        for h in candidates:
            if h in gone:
                self.dead.add(h)
                self.log(f"host {h}: does not answer the probe: dropped", "host_dead", host=h)
            elif h in back:
                self.dead.discard(h)
                self.log(f"host {h}: answers again: re-admitted", "host_back", host=h)
        self.last_probe = now()
        return chosen

    def returning(self, in_job, template, timeout):
        """hosts outside the job that answer now (new, or dead and back)"""
        cands = outside(self.listed, in_job, self.drained)
        alive = probe(cands, template, timeout)
        self.last_probe = now()
        back = [h for h in cands if alive[h]]
        for h in back:
            if h in self.dead:
                self.dead.discard(h)
                self.log(f"host {h}: answers again: re-admitted", "host_back", host=h)
        return back
