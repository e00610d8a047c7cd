"""bringup — the whole lab: up (a bridge, N hosts with their CPU limits, the hostfile), down
(everything of the lab, idempotent, also after a crash), status."""

import os
import re
import signal

from . import cpu, state
from .common import LabError, log, sh
from .hosts import make_host, netns_pids
from .links import pick_subnet


def cmd_up(a):
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veth pairs, tc)")
    if not re.fullmatch(r"[a-z][a-z0-9]{0,5}", state.PREFIX):
        raise LabError(f"TESSERA_LAB_PREFIX=\"{state.PREFIX}\": expected 1-6 lower-case letters "
                       f"or digits, starting with a letter (link names have 15 bytes)")
    if a.n < 1:
        raise LabError(f"up {a.n}: expected at least 1 host")
    cores = cpu.parse_cpu_list(a.cpu, a.n) if a.cpu else [0] * a.n
    if os.path.exists(state.path("state.json")):
        st = state.load()
        if (len(st["hosts"]) == a.n and st.get("rate", 0) == a.rate and
                [h.get("cpu_base", 0) for h in st["hosts"].values()] == cores):
            log(f"already up: {len(st['hosts'])} hosts on {st['subnet']}")
            return 0
        raise LabError(f"the lab is up with {len(st['hosts'])} hosts at "
                       f"{st.get('rate', 0) or 'unlimited'} Mbit/s, CPU "
                       f"{','.join('%g' % h.get('cpu_base', 0) for h in st['hosts'].values())}; "
                       f"scripts/lab down first")
    cmd_down(a, quiet=True)  # leftovers of a crashed lab
    cgroup, why = cpu.root()
    if not cgroup:
        if any(cores):
            raise LabError(f"--cpu needs the cgroup v1 cpu controller: {why}")
        log(f"CPU limits off: {why}; the hosts share the machine's cores without limits")
    os.makedirs(state.path("uts"), exist_ok=True)
    os.makedirs(state.path("down"), exist_ok=True)
    with open(state.path("prefix"), "w") as f:
        f.write(state.PREFIX + "\n")
    if cgroup:  # scripts/lab-rsh puts what it starts in STATE/cgroup's <host>
        with open(state.path("cgroup"), "w") as f:
            f.write(cgroup + "\n")
    net = pick_subnet()
    st = {"subnet": str(net), "bridge": f"{state.PREFIX}-br",
          "bridge_ip": str(list(net.hosts())[0]), "rate": a.rate, "slots": a.slots,
          "cgroup": cgroup, "hosts": {}}
    try:
        sh(["ip", "link", "add", st["bridge"], "type", "bridge"])
        sh(["ip", "addr", "add", f"{st['bridge_ip']}/{net.prefixlen}", "dev", st["bridge"]])
        sh(["ip", "link", "set", st["bridge"], "up"])
        for i in range(1, a.n + 1):
            make_host(st, f"h{i}", cores[i - 1])
        state.save(st)
    except LabError:
        cmd_down(a, quiet=True)
        raise
    log(f"up: {a.n} hosts on {net} (bridge {st['bridge_ip']}), "
        f"{'%g Mbit/s per link' % a.rate if a.rate else 'links not shaped'}, "
        f"CPU {', '.join(cpu.show(c) for c in cores) if any(cores) else 'not limited'}; "
        f"hostfile {state.path('hosts')}")
    return 0


def cmd_down(a, quiet=False):
    prefix = state.PREFIX
    names = [line.split()[0] for line in (sh("ip netns list", check=False, capture=True) or "")
             .splitlines() if line.startswith(prefix + "-")]
    for n in names:
        for pid in netns_pids(n[len(prefix) + 1:]):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for n in names:
        sh(["ip", "netns", "del", n], check=False)
    links = re.findall(rf"^\d+: ({prefix}-[^:@]+)", sh("ip -o link show", check=False,
                                                       capture=True) or "", re.M)
    for link in links:
        sh(["ip", "link", "del", link], check=False)
    uts = state.path("uts")
    if os.path.isdir(uts):
        for f in os.listdir(uts):
            sh(["umount", os.path.join(uts, f)], check=False)
    groups = cpu.remove_groups()
    sh(["rm", "-rf", state.STATE], check=False)
    if not quiet:
        log(f"down: removed {len(names)} hosts" + (" and the bridge" if links else "") +
            (f", {groups} cgroups" if groups else ""))
    return 0


def cmd_status(a):
    st = state.load()
    print(f"subnet {st['subnet']}, bridge {st['bridge']} {st['bridge_ip']}, hostfile "
          f"{state.path('hosts')}, "
          f"{'cgroups ' + st['cgroup'] if st.get('cgroup') else 'no CPU limits (no cgroups)'}")
    for h, d in st["hosts"].items():
        link = sh(["ip", "-o", "link", "show", state.ns(h)], check=False, capture=True) or ""
        up = "state UP" in link or ",UP" in link
        print(f"{h:6s} {d['ip']:15s} {d['rate'] or 'unlimited'} Mbit/s  "
              f"{'DOWN' if state.is_down(h) else 'up'}  link {'up' if up else 'down'}  "
              f"CPU {cpu.show(d.get('cpu', 0))} (base {cpu.show(d.get('cpu_base', 0))})"
              f"  {len(netns_pids(h))} processes")
    return 0
