"""links — the lab's subnet (a free 10.x.0.0/24) and the shaping of a link: tbf on the host's
eth0 (its upload) and on the bridge-side veth (its download). netem is not available here, so
latency and loss are not modelled: only bandwidth."""

import ipaddress
import re

from .common import LabError, sh


def pick_subnet():
    used = []
    for line in sh("ip -4 -o addr show; ip -4 route show", capture=True).splitlines():
        for m in re.finditer(r"(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", line):
            try:
                used.append(ipaddress.ip_network(m.group(1), strict=False))
            except ValueError:
                pass
    for third in range(77, 250):
        net = ipaddress.ip_network(f"10.{third}.0.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise LabError("no free 10.x.0.0/24 subnet for the lab")


def tbf_params(mbit):
    """(burst, limit) in bytes for a tbf at `mbit`: 4 ms of traffic (at least 16 KiB) and a
    100 ms queue (at least 64 KiB)"""
    rate = mbit * 1e6 / 8  # bytes/s
    return max(int(rate * 0.004), 16 * 1024), max(int(rate * 0.1), 64 * 1024)


def shape(dev, mbit, netns=None):
    pre = ["ip", "netns", "exec", netns] if netns else []
    sh(pre + ["tc", "qdisc", "del", "dev", dev, "root"], check=False)
    if not mbit:
        return
    burst, limit = tbf_params(mbit)
    sh(pre + ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{mbit}mbit",
              "burst", str(burst), "limit", str(limit)])
