"""state — STATE/state.json {subnet, bridge, bridge_ip, rate, slots, cgroup, hosts: {name: {ip,
rate, cpu_base, cpu}}} (cgroup: the folder of the hosts' cpu controller groups, null without;
cpu_base: the CPU limit in cores from up or add, cpu: the current one, 0: unlimited),
STATE/uts/<host> (its UTS namespace), STATE/down/<host> (a lost node), STATE/hosts (the
hostfile), STATE/prefix, STATE/cgroup (for scripts/lab-rsh). STATE and the name prefix come from
the environment, so a test's lab and a person's can exist side by side."""

import json
import os

from .common import LabError

STATE = os.environ.get("TESSERA_LAB_STATE", "/run/tessera-lab")
PREFIX = os.environ.get("TESSERA_LAB_PREFIX", "tlab")  # names of namespaces and links


def path(*parts):
    return os.path.join(STATE, *parts)


def load():
    try:
        with open(path("state.json")) as f:
            return json.load(f)
    except OSError:
        raise LabError(f"the lab is not up ({STATE}/state.json missing; scripts/lab up N)")


def save(st):
    tmp = path("state.json.tmp")
    with open(tmp, "w") as f:
        json.dump(st, f, indent=1)
    os.replace(tmp, path("state.json"))
    with open(path("hosts.tmp"), "w") as f:
        for h in st["hosts"]:
            f.write(f"{h} slots={st.get('slots', 1)}\n")
    os.replace(path("hosts.tmp"), path("hosts"))


def host_of(st, name):
    if name not in st["hosts"]:
        raise LabError(f"{name}: no such host (hosts: {', '.join(st['hosts'])})")
    return st["hosts"][name]


def ns(name):
    """the name of a host's network namespace, and of its veth's bridge end"""
    return f"{PREFIX}-{name}"


def is_down(name):
    return os.path.exists(path("down", name))
