"""Network namespaces for local workloads that ask for one (`WorkloadSpec(isolation="netns")`):
the namespace, a veth pair to the host, the workload's address inside it (from `addresses`),
routes both ways, a hosts file that names Services by ClusterIP, and the iptables rules of
transparent interception (`smimesh sidecar init`, run inside).

Used by `workloads` (start/stop). The shape of a pod on a node with a routed CNI (Calico):
inside, `eth0` holds the address and a default route via a host address; the host routes the
address to the veth. Forwarding is enabled on the host's veths only, never machine-wide.
`remove` undoes every step, whatever was done; `leftovers` says what of it still exists.
Each part is held by `reaping` from before it is made until `remove`, so the reaper undoes
it if the process that made it dies first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from smimesh.testing import addresses, reaping

PROXY_MARK = 0x534D
"""The sidecar's default upstream mark (`smimesh.sidecar.settings.PROXY_MARK`; this package
sits below the sidecar, so the value is repeated here and a test holds them equal)."""

NETNS_ETC = Path("/etc/netns")
"""`ip netns exec NAME` bind-mounts `/etc/netns/NAME/hosts` over `/etc/hosts`."""


RESOLV_CONF = """\
# Names come from /etc/hosts (Services by ClusterIP). No DNS server is reachable from here:
# point the resolver at a closed local port, so lookups fail at once instead of timing out
# (http.server's reverse lookup of 0.0.0.0 would otherwise stall an app's start).
nameserver 127.0.0.1
options timeout:1 attempts:1
"""


class NetnsError(RuntimeError):
    """A step of building the namespace failed; the message names the command and why."""


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except FileNotFoundError:
        raise NetnsError(f"{argv[0]} is not installed (`make sidecar-deps`)") from None
    if done.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.stdout}")
    return done


def unsupported() -> str | None:
    """Why this host cannot run workloads in network namespaces, or None if it can (tried:
    a namespace is made and deleted)."""
    if os.geteuid() != 0:
        return "network namespaces and iptables need root"
    if shutil.which("ip") is None:
        return "ip is not installed (package iproute2)"
    if shutil.which("iptables") is None:
        return "iptables is not installed (`make sidecar-deps` installs it)"
    probe = reaping.hold(reaping.netns(f"smw-probe-{uuid.uuid4().hex[:6]}"))
    try:
        _run("ip", "netns", "add", probe.value)
    except NetnsError as exc:
        return f"cannot create a network namespace: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe.value], capture_output=True, check=False)
        reaping.release(probe)
    return None


def hosts_file(
    services: Iterable[tuple[str, str, str]], *, namespace: str, pod: str, address: str
) -> str:
    """/etc/hosts for a workload in `namespace`: each (namespace, name, cluster IP) under its
    cluster DNS names, short names for the workload's own namespace, as a pod's search path
    would resolve them."""
    lines = ["127.0.0.1 localhost", f"{address} {pod}"]
    for space, name, cluster_ip in sorted(services):
        names = [f"{name}.{space}.svc.cluster.local", f"{name}.{space}.svc", f"{name}.{space}"]
        if space == namespace:
            names.append(name)
        lines.append(f"{cluster_ip} {' '.join(names)}")
    return "\n".join(lines) + "\n"


@dataclass
class Namespace:
    """One workload's network namespace; `create()`, then `remove()` (always safe)."""

    address: str
    gateway: str
    """A host address the namespace routes through (reachable on the veth's link)."""
    name: str = field(default_factory=lambda: f"smw-{uuid.uuid4().hex[:8]}")

    @property
    def host_veth(self) -> str:
        return self.name.replace("-", "")  # at most 15 characters, as Linux wants

    @property
    def etc(self) -> Path:
        return NETNS_ETC / self.name

    def exec(self, *argv: str) -> list[str]:
        """`argv` run inside the namespace (with its hosts file)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def _parts(self) -> list[reaping.Held]:
        return [reaping.netns(self.name), reaping.link(self.host_veth),
                reaping.route(f"{self.address}/32", self.host_veth),
                reaping.path(self.etc)]  # fmt: skip

    def create(self) -> None:
        """The namespace, its veth and routes; raises NetnsError (the caller then `remove`s)."""
        veth, inside = self.host_veth, ["ip", "-n", self.name]
        for part in self._parts():
            reaping.hold(part)
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "hosts").write_text(hosts_file((), namespace="", pod="", address=""))
        (self.etc / "resolv.conf").write_text(RESOLV_CONF)
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", self.name)
        _run("ip", "link", "set", veth, "up")
        try:
            Path(f"/proc/sys/net/ipv4/conf/{veth}/forwarding").write_text("1")
        except OSError as exc:
            raise NetnsError(f"cannot enable forwarding on {veth}: {exc}") from None
        _run(*inside, "link", "set", "lo", "up")
        _run(*inside, "addr", "add", f"{self.address}/32", "dev", "eth0")
        _run(*inside, "link", "set", "eth0", "up")
        _run(*inside, "route", "add", f"{self.gateway}/32", "dev", "eth0", "scope", "link")
        _run(*inside, "route", "add", "default", "via", self.gateway, "dev", "eth0",
             "src", self.address)  # fmt: skip
        _run("ip", "route", "add", f"{self.address}/32", "dev", veth, "src", self.gateway)

    def write_hosts(self, text: str) -> None:
        """Rewrite the hosts file in place (same inode, so running processes see it)."""
        with (self.etc / "hosts").open("r+") as hosts:
            hosts.truncate(0)
            hosts.write(text)

    def intercept(self, *, admin_port: int, host_ports: Sequence[int] = ()) -> None:
        """Transparent interception (`smimesh sidecar init`); connections from the host to
        `host_ports` (the app's own ports, for test assertions) and to the admin port are
        left alone, as in explicit mode. Every other peer goes through the sidecar."""
        _run(*self.exec(
            sys.executable, "-m", "smimesh.sidecar", "init", "--mark", str(PROXY_MARK),
            "--exclude-inbound-ports", str(admin_port),
        ))  # fmt: skip
        for port in host_ports:
            _run(*self.exec(
                "iptables", "-t", "nat", "-I", "SMIMESH_INBOUND", "1", "-s", f"{self.gateway}/32",
                "-p", "tcp", "--dport", str(port), "-j", "RETURN",
            ))  # fmt: skip

    def leftovers(self) -> list[str]:
        """What of this namespace still exists on the host (empty once removed)."""
        found = []
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        if any(line.split(" ")[0] == self.name for line in listed.stdout.splitlines()):
            found.append(f"network namespace {self.name}")
        if Path("/sys/class/net", self.host_veth).exists():
            found.append(f"veth {self.host_veth}")
        if addresses.routed(self.address):
            found.append(f"route to {self.address}")
        if self.etc.exists():
            found.append(str(self.etc))
        return found

    def remove(self) -> None:
        """Undo `create` (any part of it): deleting the namespace deletes its veth pair and so
        the host route; both are also deleted by name in case the namespace is gone already."""
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.host_veth], capture_output=True, check=False)
        if addresses.routed(self.address):
            subprocess.run(
                ["ip", "route", "del", f"{self.address}/32", "dev", self.host_veth],
                capture_output=True, check=False,
            )  # fmt: skip
        shutil.rmtree(self.etc, ignore_errors=True)
        for part in self._parts():
            reaping.release(part)
