"""The real test node's network: a network namespace of its own, joined to the host by one
veth, so that the node's bridge, Pod veths, kube-proxy's and the CNI plugins' iptables rules
all live in that namespace and never in the host's tables.

The host end of the veth carries `HOST_ADDRESS`, where the apiserver listens (so the node's
components reach it); the node end carries `NODE_ADDRESS`, the Node's InternalIP (the
kubelet's and CoreDNS's address). The host routes the Pod CIDR to the node end: the host
reaches Pod IPs, with no NAT and no rule on the host. The namespace has no default route, so
Pods reach nothing beyond this machine. Everything made here is held by `reaping`. Used by
`smimesh.testing.nodes` and `smimesh.testing.clusters`; checked by `nodechecks`.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from smimesh.testing import reaping

LINK_CIDR = os.environ.get("SMIMESH_NODE_LINK", "10.79.0.0/30")
"""The veth's two addresses; outside the local workloads' ranges (`addresses`)."""
HOST_ADDRESS, NODE_ADDRESS = (str(a) for a in list(ipaddress.ip_network(LINK_CIDR).hosts())[:2])
"""The link's first two host addresses (10.79.0.1 and .2 by default; .9 and .10 for .8/30)."""
POD_CIDR = os.environ.get("SMIMESH_POD_CIDR", "10.244.0.0/24")
NETNS_DIR = Path("/run/netns")


class NodeNetworkError(RuntimeError):
    """The node's network could not be made; the message says which step failed."""


def run(argv: Sequence[str], *, what: str) -> str:
    """Run a command; `NodeNetworkError` with its output if it fails."""
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NodeNetworkError(f"could not {what}: `{' '.join(argv)}`: {done.stderr.strip()}")
    return done.stdout


@dataclass
class NodeNetwork:
    """The namespace `name`, the veth `host_link` (host) / `eth0` (node) and the host's route
    to the Pod CIDR. `create()` makes them, `delete()` removes them (and with the namespace,
    every rule in it)."""

    name: str
    host_address: str = HOST_ADDRESS
    node_address: str = NODE_ADDRESS
    pod_cidr: str = POD_CIDR
    _held: list[reaping.Held] = field(default_factory=list, init=False)

    @property
    def host_link(self) -> str:
        return f"smn-{self.name[-8:]}"[:15]

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.name

    def enter(self) -> list[str]:
        """The command prefix that runs a process in the namespace, in the host's mount
        namespace (`ip netns exec` would give each process a mount namespace of its own, and
        the kubelet's volume mounts must be seen by containerd's runc)."""
        return ["nsenter", f"--net={self.netns_path}", "--"]

    def create(self) -> None:
        prefix = LINK_CIDR.rsplit("/", 1)[1]
        try:
            run(["ip", "netns", "add", self.name], what="create the node's network namespace")
            self._held.append(reaping.hold(reaping.netns(self.name)))
            run(["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", "eth0",
                 "netns", self.name], what="create the node's veth")  # fmt: skip
            self._held.append(reaping.hold(reaping.link(self.host_link)))
            run(["ip", "addr", "add", f"{self.host_address}/{prefix}", "dev", self.host_link],
                what="address the host end of the node's veth")  # fmt: skip
            run(["ip", "link", "set", self.host_link, "up"], what="bring the veth up")
            inside = ["ip", "-n", self.name]
            run([*inside, "addr", "add", f"{self.node_address}/{prefix}", "dev", "eth0"],
                what="address the node end of the veth")  # fmt: skip
            run([*inside, "link", "set", "eth0", "up"], what="bring the node's eth0 up")
            run([*inside, "link", "set", "lo", "up"], what="bring the node's loopback up")
            # Pods' packets are routed by the node (to the host end, or back to the bridge);
            # bridged Pod-to-Pod replies pass kube-proxy's NAT too. Both settings are the
            # namespace's own.
            self.sysctl("net/ipv4/ip_forward", "1")
            if Path("/proc/sys/net/bridge").is_dir():
                self.sysctl("net/bridge/bridge-nf-call-iptables", "1")
            run(["ip", "route", "add", self.pod_cidr, "via", self.node_address, "dev",
                 self.host_link], what="route the Pod CIDR to the node")  # fmt: skip
            self._held.append(reaping.hold(reaping.route(self.pod_cidr, self.host_link)))
        except BaseException:
            self.delete()
            raise

    def sysctl(self, key: str, value: str) -> None:
        """Set a per-namespace sysctl (`/proc/sys/<key>`) inside the node's namespace."""
        run([*self.enter(), "sh", "-c", f'echo {value} > "/proc/sys/{key}"'],
            what=f"set {key} in the node's namespace")  # fmt: skip

    def delete(self) -> None:
        """Remove the route, the veth and the namespace (its iptables rules go with it)."""
        subprocess.run(["ip", "route", "del", self.pod_cidr, "dev", self.host_link],
                       capture_output=True, check=False)  # fmt: skip
        if Path("/sys/class/net", self.host_link).exists():
            subprocess.run(["ip", "link", "del", self.host_link], capture_output=True, check=False)
        if self.netns_path.exists():
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
        for item in reversed(self._held):
            reaping.release(item)
        self._held.clear()
