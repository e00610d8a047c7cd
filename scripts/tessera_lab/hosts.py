"""hosts — one host of the lab: a network namespace with a veth pair to the bridge, its own UTS
namespace (hostname), its cgroup (CPU limit), its processes, the probe across its link, and the
Open MPI options that pin mpirun to the lab."""

import ipaddress
import os
import subprocess
import sys

from . import cpu, state
from .common import RSH, sh
from .links import shape


def make_host(st, name, cores=0):
    """a host with its link at the lab's rate and its CPU limited to `cores` (0: unlimited)"""
    net = ipaddress.ip_network(st["subnet"])
    used = {h["ip"] for h in st["hosts"].values()}
    ip = next(str(a) for a in list(net.hosts())[10:] if str(a) not in used)
    n = state.ns(name)
    sh(["ip", "netns", "add", n])
    sh(["ip", "netns", "exec", n, "ip", "link", "set", "lo", "up"])
    sh(["ip", "link", "add", n, "type", "veth", "peer", "name", "eth0", "netns", n])
    sh(["ip", "link", "set", n, "master", st["bridge"], "up"])
    sh(["ip", "netns", "exec", n, "ip", "addr", "add", f"{ip}/{net.prefixlen}", "dev", "eth0"])
    sh(["ip", "netns", "exec", n, "ip", "link", "set", "eth0", "up"])
    sh(["ip", "netns", "exec", n, "ip", "route", "add", "default", "via", st["bridge_ip"]])
    uts = state.path("uts", name)
    open(uts, "w").close()
    sh(["unshare", f"--uts={uts}", "hostname", name])
    st["hosts"][name] = {"ip": ip, "rate": st.get("rate", 0), "cpu_base": cores, "cpu": cores}
    if st.get("cgroup"):
        cpu.make_group(st, name, cores)
    shape("eth0", st.get("rate", 0), n)
    shape(n, st.get("rate", 0))


def netns_pids(name):
    out = sh(["ip", "netns", "pids", state.ns(name)], check=False, capture=True) or ""
    return [int(p) for p in out.split() if p.isdigit()]


def signal_host(name, sig):
    pids = netns_pids(name)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    return pids


def mpirun_args(st):
    return (f"--mca plm_rsh_agent {RSH} --mca oob_tcp_if_include {st['subnet']} "
            f"--mca btl_tcp_if_include {st['subnet']} --mca btl self,vader,tcp")


PROBE = ("import socket,sys\n"
         "s=socket.socket(); s.settimeout(2)\n"
         "try: s.connect((sys.argv[1], 9))\n"
         "except ConnectionRefusedError: sys.exit(0)\n"
         "except OSError: sys.exit(1)\n"
         "sys.exit(0)\n")


def probe(st, name):
    """a round trip over the host's link: connect from inside the host to the bridge address
    (nothing listens: a refusal proves the link works; a partition times out)"""
    if name not in st["hosts"] or state.is_down(name):
        return False
    r = subprocess.run(["ip", "netns", "exec", state.ns(name), sys.executable, "-c", PROBE,
                        st["bridge_ip"]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0
