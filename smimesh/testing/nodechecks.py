"""Preflight of the real test node: everything it needs from the machine, checked before
anything starts, each missing piece reported with what to do.

Root (containerd, runc, network namespaces); the cgroup controllers the kubelet needs; the
Debian packages (`make node-deps`); the node's addresses free on the host (another node or a
leak of a killed run holds them); and no chain of ours or kube-proxy's in the HOST's nat
table (the node's rules live in its own namespace: one on the host is a previous run's
leak, refused rather than added to). Used by `smimesh.testing.nodes`; reads, changes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from smimesh.testing import nodenetwork

CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
COMMANDS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "nsenter": "util-linux",
    "ip": "iproute2",
    "umoci": "umoci",
    "mmdebstrap": "mmdebstrap",
}
"""Commands the node runs, and the Debian package of each."""
CGROUP_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids")
LEAKED_CHAINS = ("SMIMESH", "KUBE-SERVICES", "KUBE-POSTROUTING", "CNI-HOSTPORT")
"""Chain names that must never be in the host's nat table."""
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class NodeCheckError(RuntimeError):
    """The machine cannot run the node; the message lists every reason and what to do."""


def missing_commands(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """`command (package)` for each command not on PATH (or in /usr/sbin, /sbin)."""
    return [
        f"{command} ({package})"
        for command, package in COMMANDS.items()
        if which(command) is None and shutil.which(command, path=_SYSTEM_PATH) is None
    ]


def missing_cni_plugins(directory: Path = CNI_BIN_DIR) -> list[str]:
    return [name for name in CNI_PLUGINS if not os.access(directory / name, os.X_OK)]


def missing_cgroup_controllers(root: Path = Path("/sys/fs/cgroup")) -> list[str]:
    """Controllers neither mounted as a v1 hierarchy nor enabled in a v2 root."""
    enabled: set[str] = set()
    v2 = root / "cgroup.controllers"
    if v2.is_file():
        enabled.update(v2.read_text().split())
        enabled.add("cpuacct")  # v2's cpu controller accounts too
    return [c for c in CGROUP_CONTROLLERS if c not in enabled and not (root / c / "tasks").exists()]


def leaked_chains(nat_rules: str) -> list[str]:
    """Chains named in `iptables -t nat -S` output that belong in a node's namespace."""
    found: list[str] = []
    for line in nat_rules.splitlines():
        parts = line.split()
        named = len(parts) >= 2 and parts[0] in ("-N", "-P")
        if named and parts[1].startswith(LEAKED_CHAINS) and parts[1] not in found:
            found.append(parts[1])
    return found


def host_nat_rules() -> str:
    """`iptables -t nat -S` of the host, from both backends (nft and legacy) there are."""
    rules = []
    for command in ("iptables", "iptables-legacy"):
        if shutil.which(command, path=_SYSTEM_PATH) is not None:
            rules.append(subprocess.run([command, "-w", "-t", "nat", "-S"], capture_output=True,
                                        text=True, check=False).stdout)  # fmt: skip
    return "".join(rules)


def host_addresses() -> str:
    return subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True,
                          check=False).stdout  # fmt: skip


def address_taken(address: str, shown: str) -> bool:
    """Whether `ip -o addr show` output carries `address` on some interface."""
    return any(f"inet {address}/" in line for line in shown.splitlines())


def problems(network: nodenetwork.NodeNetwork) -> list[str]:
    """Every reason this machine cannot run the node now, each with what to do."""
    found: list[str] = []
    if os.geteuid() != 0:
        found.append("the node needs root (containerd, runc, network namespaces): run as root")
    if missing := missing_commands():
        found.append(f"missing commands: {', '.join(missing)}; run `make node-deps`")
    if plugins := missing_cni_plugins():
        found.append(f"missing CNI plugins in {CNI_BIN_DIR}: {', '.join(plugins)}; run "
                     "`make node-deps` (containernetworking-plugins)")  # fmt: skip
    if controllers := missing_cgroup_controllers():
        names = ", ".join(controllers)
        found.append(f"cgroup controllers not mounted: {names} (the kubelet needs them; on "
                     "cgroup v1, one hierarchy each under /sys/fs/cgroup)")  # fmt: skip
    if network.netns_path.exists():
        found.append(f"network namespace {network.name} exists already: another node runs, or "
                     f"a killed run left it (`ip netns del {network.name}`)")  # fmt: skip
    shown = host_addresses()
    for address in (network.host_address, network.node_address):
        if address_taken(address, shown):
            found.append(f"address {address} is taken on this host (another node, or a killed "
                         "run's veth: `ip -o addr show` names it; set SMIMESH_NODE_LINK to "
                         "another /30)")  # fmt: skip
    if chains := leaked_chains(host_nat_rules()):
        found.append(f"the HOST's nat table holds chains that belong in a node's namespace: "
                     f"{', '.join(chains)} (a previous run's leak); remove them before "
                     "starting the node, nothing here adds to them")  # fmt: skip
    return found


def check(network: nodenetwork.NodeNetwork) -> None:
    """Raise `NodeCheckError` listing every problem, if there is any."""
    if found := problems(network):
        raise NodeCheckError(_format(found))


def _format(found: Iterable[str]) -> str:
    return "the real node cannot start on this machine:\n" + "\n".join(f"- {p}" for p in found)
