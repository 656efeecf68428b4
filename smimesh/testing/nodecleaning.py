"""What the real test node leaves on the machine, and its removal: the node's cgroup (every
component, containerd shim and container is in it), the mounts below its run directory
(volumes, containers' root file systems, Pod network namespaces), the run directory (with
runc's state), the shims' sockets in /run/containerd/s, the CNI results libcni caches in
/var/lib/cni for the node's network, and the network of `nodenetwork`.

`Cleaning.prepare` makes the cgroup and has `reaping` hold all of it, so a killed runner's
node goes too; `clean` undoes it on a clean stop; `leftovers` lists what is still there (the
teardown tests assert it is empty). Used by `smimesh.testing.nodes`.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from smimesh.testing import nodechecks, nodenetwork, reaping


def tasks_dir(run_dir: Path) -> Path:
    """The task bundles of the node's containerd (its state folder is `<run>/containerd/state`)."""
    return run_dir / "containerd" / "state" / "io.containerd.runtime.v2.task"


def hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies: each v1 controller's folder, or the v2 root."""
    root = reaping.CGROUP_ROOT
    if (root / "cgroup.controllers").is_file():
        return [root]
    return sorted(p for p in root.iterdir() if (p / "cgroup.procs").is_file())


@dataclass
class Cleaning:
    """The cgroup `cgroup` (below each hierarchy's root), the run directory `run_dir` and the
    node's network."""

    run_dir: Path
    cgroup: str
    network: nodenetwork.NodeNetwork
    cni_network: str
    containerd_socket: Path
    _held: list[reaping.Held] = field(default_factory=list, init=False)

    @property
    def tasks(self) -> Path:
        """containerd's folder of task bundles (one per shim)."""
        return tasks_dir(self.run_dir)

    @property
    def runtime_cgroup(self) -> str:
        """Where the node's own processes go (the kubelet puts Pods in `kubepods` beside)."""
        return f"{self.cgroup}/runtime"

    def prepare(self) -> None:
        """Hold the run directory and its mounts, and make the cgroup."""
        self._held.append(reaping.hold(reaping.path(self.run_dir)))
        self._held.append(reaping.hold(reaping.mounts(self.run_dir)))
        self._held.append(reaping.hold(reaping.cgroup(self.cgroup)))
        self._held.append(reaping.hold(reaping.cni(self.cni_network)))
        self._held.append(reaping.hold(reaping.shims(self.containerd_socket, self.tasks)))
        for hierarchy in hierarchies():
            for relative in (self.cgroup, self.runtime_cgroup):
                folder = hierarchy / relative
                folder.mkdir(exist_ok=True)
                for key in ("cpuset.cpus", "cpuset.mems"):  # a new cpuset is empty until set
                    inherited = folder.parent / key
                    if inherited.is_file() and not (folder / key).read_text().strip():
                        (folder / key).write_text(inherited.read_text())

    def join(self, pid: int) -> None:
        """Move process `pid` (a component just started) into the node's cgroup."""
        for hierarchy in hierarchies():
            with contextlib.suppress(ProcessLookupError, OSError):
                (hierarchy / self.runtime_cgroup / "cgroup.procs").write_text(str(pid))

    def clean(self) -> None:
        """Kill what is left in the cgroup, unmount below the run directory, remove the
        cgroup, the run directory and the network."""
        reaping.empty_cgroup(self.cgroup)
        reaping.unmount_all(self.run_dir)
        for result in reaping.cni_results(self.cni_network):  # no CNI DEL ran for them
            result.unlink(missing_ok=True)
        for socket in reaping.shim_sockets(self.containerd_socket, self.tasks):  # killed shims'
            socket.unlink(missing_ok=True)
        if not reaping.keeps_logs():
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.network.delete()
        for item in reversed(self._held):
            reaping.release(item)
        self._held.clear()

    def leftovers(self) -> list[str]:
        """What of the node is still on the machine (empty after a complete teardown)."""
        return leftovers(self.run_dir, self.cgroup, self.network, self.cni_network)


def shim_sockets_now() -> set[Path]:
    """Every shim socket on the machine (the teardown tests compare before and after)."""
    return set(reaping.SHIM_SOCKETS.glob("*")) if reaping.SHIM_SOCKETS.is_dir() else set()


def leftovers(
    run_dir: Path, cgroup: str, network: nodenetwork.NodeNetwork, cni_network: str
) -> list[str]:
    """Processes, cgroups, mounts, the run directory, CNI results, the namespace, veth and
    route of a node, and any chain of a node in the host's nat table."""
    found = [f"process {pid}" for pid in sorted(reaping.cgroup_pids(cgroup))]
    found += [f"CNI result {p}" for p in reaping.cni_results(cni_network)]
    found += [f"cgroup {d}" for d in reaping.cgroup_dirs(cgroup)]
    found += [f"mount {m}" for m in reaping.mountpoints(run_dir)]
    if run_dir.exists():
        found.append(f"directory {run_dir}")
    if network.netns_path.exists():
        found.append(f"netns {network.name}")
    if Path("/sys/class/net", network.host_link).exists():
        found.append(f"link {network.host_link}")
    routes = subprocess.run(["ip", "route", "show", network.pod_cidr], capture_output=True,
                            text=True, check=False).stdout  # fmt: skip
    if routes.strip():
        found.append(f"route {routes.strip()}")
    found += [f"host nat chain {c}" for c in nodechecks.leaked_chains(nodechecks.host_nat_rules())]
    return found
