"""A real Kubernetes node beside the local control plane: containerd, the kubelet,
kube-controller-manager, kube-scheduler, kube-proxy, CNI and cluster DNS, as processes of
ours, running real Pods.

containerd, the kubelet, kube-proxy and CoreDNS run in the node's network namespace
(`nodenetwork`): the Pod bridge, the Pods' veths and every iptables rule of kube-proxy and the
CNI plugins stay there. kube-controller-manager and kube-scheduler only talk to the apiserver.
Every process, with the containerd shims and the containers, lives in a cgroup of the node's
own, which the teardown (and `reaping`, if the runner is killed) empties and removes; the
node's mounts (volumes, root file systems, Pod network namespaces) are all below its run
directory, and are unmounted with it (`nodecleaning`).

Host facts this depends on (issue #17): a cgroup v1 host (`failCgroupV1: false`, the
cgroupfs driver), and a root without CAP_SYS_RESOURCE (containerd's
`restrict_oom_score_adj`). CoreDNS answers `cluster.local` from the apiserver and nothing
else. Images come from `images` (no registry is ever reached). Fed by `binaries`, `pki`,
`controlplane`; used by `clusters` (`SMIMESH_CLUSTER=node`) and the node tests.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import secrets
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from smimesh._aio import waiting
from smimesh.testing import binaries as binaries_
from smimesh.testing import (
    controlplane,
    gotools,
    images,
    nodechecks,
    nodecleaning,
    nodenetwork,
    reaping,
    starting,
)
from smimesh.testing import pki as pki_

NODE_NAME = "smimesh-node"
CLUSTER_DOMAIN = "cluster.local"
COREDNS = gotools.GoTool("coredns", "github.com/coredns/coredns", "v1.15.0")


class NodeError(RuntimeError):
    """The node could not start; the message says which component and shows its log."""


def ensure_coredns(*, say: Callable[[str], None] = gotools.say) -> Path:
    return gotools.ensure_tool(COREDNS, say=say)


@dataclass
class Node(starting.Started):
    """The node of `plane`, in `network`; a context manager, or `start()`/`stop()`."""

    plane: controlplane.ControlPlane
    network: nodenetwork.NodeNetwork
    binaries: binaries_.NodeBinaries
    coredns: Path
    name: str = NODE_NAME
    ready_timeout: float = 120.0
    say: Callable[[str], None] = field(default=lambda message: None)
    timings: dict[str, float] = field(default_factory=dict, init=False)
    _run_dir: Path | None = field(default=None, init=False)
    _processes: list[controlplane.Process] = field(default_factory=list, init=False)
    _cleaning: nodecleaning.Cleaning | None = field(default=None, init=False)

    @property
    def run_dir(self) -> Path:
        if self._run_dir is None:
            raise NodeError("the node has not been started")
        return self._run_dir

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd" / "containerd.sock"

    @property
    def cgroup(self) -> str:
        return f"smimesh-node-{self.run_dir.name.rsplit('-', 1)[-1]}"

    @property
    def cni_network(self) -> str:
        """The CNI network's name, the node's own: libcni names its cached results by it."""
        return self.cgroup

    def ctr(self) -> list[str]:
        """The `ctr` command that talks to this node's containerd."""
        return ["ctr", "--address", str(self.containerd_socket)]

    def start(self) -> None:
        """Start every component and wait until the Node is Ready, the default
        ServiceAccount exists and CoreDNS answers."""
        started = time.monotonic()
        self.say(f"starting node {self.name}: containerd, kubelet, kube-proxy, "
                 "kube-controller-manager, kube-scheduler, CoreDNS")  # fmt: skip
        self._run_dir = Path(tempfile.mkdtemp(prefix="smimesh-node-"))
        self._cleaning = nodecleaning.Cleaning(
            self.run_dir, self.cgroup, self.network, self.cni_network, self.containerd_socket
        )
        try:
            self._cleaning.prepare()
            credentials = self._write_credentials()
            self._write_cni()
            self._start_containerd()
            # Importing takes seconds: it runs while the rest starts and the Node registers
            # (no Pod can be scheduled before the node is ready, which waits for it).
            with concurrent.futures.ThreadPoolExecutor(1, "smimesh-node-images") as pool:
                imported = pool.submit(self._import_images)
                self._start_kubelet(credentials["kubelet"])
                self._start_kube_proxy(credentials["kube-proxy"])
                self._start_controller_manager(credentials["kube-controller-manager"])
                self._start_scheduler(credentials["kube-scheduler"])
                self._start_coredns()
                self._wait("the Node to be Ready", self._node_ready)
                self.timings["node_ready"] = time.monotonic() - started
                self._wait("the default ServiceAccount (kube-controller-manager)", self._default_sa)
                self._wait("CoreDNS to answer", self._dns_ready)
                imported.result()
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - started
        self.say(f"node {self.name} ready in {self.timings['start']:.1f}s")

    def stop(self) -> None:
        """Stop every component, kill what is left in the node's cgroup (shims, containers),
        unmount and remove its run directory."""
        started = time.monotonic()
        for process in reversed(self._processes):
            process.stop(grace=10.0)
        self._processes.clear()
        if self._cleaning is not None:
            self._cleaning.clean()
            self._cleaning = None
        self._run_dir = None
        self.timings["stop"] = time.monotonic() - started

    # --- processes ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], *, in_netns: bool = True) -> None:
        log = self.run_dir / f"{name}.log"
        command = [*self.network.enter(), *argv] if in_netns else argv
        with log.open("wb") as out:
            popen = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=reaping.die_with_parent,
            )  # fmt: skip
        reaping.hold_group(popen.pid)
        assert self._cleaning is not None
        self._cleaning.join(popen.pid)  # nsenter execs: the pid is the component's
        self._processes.append(controlplane.Process(name, popen, log, command))

    def _check_alive(self) -> None:
        for process in self._processes:
            code = process.popen.poll()
            if code is not None:
                raise NodeError(f"{process.name} exited with code {code} during start-up; its "
                                f"log ends with:\n{process.tail()}")  # fmt: skip

    def _wait(self, what: str, probe: Callable[[], bool]) -> None:
        def alive_and(probe: Callable[[], bool]) -> bool:
            self._check_alive()
            return probe()

        waiting.eventually_sync(
            lambda: alive_and(probe) or None,
            timeout=self.ready_timeout,
            message=lambda: (
                f"timed out after {self.ready_timeout:.0f}s waiting for {what}; "
                + "the node's logs are in "
                + str(self.run_dir)
                + "\n"
                + self._log_tails()
            ),
            interval=0.2,
            error=NodeError,
        )

    def _log_tails(self) -> str:
        return "\n".join(f"--- {p.name}:\n{p.tail(8)}" for p in self._processes)

    # --- configuration --------------------------------------------------------------------

    def _write_credentials(self) -> dict[str, Path]:
        """A client certificate and kubeconfig for each component, from the plane's CA."""
        pki = self.plane.pki
        folder = self.run_dir / "pki"
        folder.mkdir()
        users = {
            "kubelet": (f"system:node:{self.name}", "system:nodes"),
            "kube-proxy": ("system:kube-proxy", None),
            "kube-controller-manager": ("system:kube-controller-manager", None),
            "kube-scheduler": ("system:kube-scheduler", None),
        }
        configs = {}
        for component, (user, group) in users.items():
            cert, key = folder / f"{component}.crt", folder / f"{component}.key"
            pki_.issue_client(pki, user, group, cert=cert, key=key)
            configs[component] = controlplane.write_kubeconfig(
                folder / f"{component}.kubeconfig", server=self.plane.server, ca=pki.ca_cert,
                cert=cert, key=key, user=user,
            )  # fmt: skip
        return configs

    def _start_containerd(self) -> None:
        base = self.run_dir / "containerd"
        base.mkdir()
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{base / "containerd.sock.ttrpc"}"
[debug]
  level = "warn"
[{cri}]
  sandbox_image = "{images.PAUSE_IMAGE}"
  # This VM's root lacks CAP_SYS_RESOURCE: runc may not raise oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{base / "runc"}"
[{cri}.cni]
  bin_dir = "{nodechecks.CNI_BIN_DIR}"
  conf_dir = "{self.run_dir / "cni" / "net.d"}"
"""
        (base / "config.toml").write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(base / "config.toml")])

        def answers() -> bool:
            if not self.containerd_socket.exists():
                return False
            done = subprocess.run([*self.ctr(), "version"], capture_output=True, check=False)
            return done.returncode == 0

        self._wait("containerd to answer", answers)

    def _import_images(self) -> None:
        started = time.monotonic()
        images.import_image(self.ctr(), images.pause_archive(say=self.say), images.PAUSE_IMAGE)
        images.import_image(self.ctr(), images.node_test_archive(say=self.say), images.TEST_IMAGE)
        self.timings["images"] = time.monotonic() - started

    def _write_cni(self) -> None:
        folder = self.run_dir / "cni" / "net.d"
        folder.mkdir(parents=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": self.cni_network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "isDefaultGateway": True,
                    "ipMasq": False,  # nothing leaves the node: no NAT to hide Pods behind
                    "hairpinMode": True,  # a Pod reaches itself through its Service
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.network.pod_cidr}]],
                        "dataDir": str(self.run_dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (folder / "10-smimesh.conflist").write_text(json.dumps(conflist, indent=2))

    def _start_kubelet(self, kubeconfig: Path) -> None:
        folder = self.run_dir / "kubelet"
        folder.mkdir()
        resolv = folder / "resolv.conf"
        resolv.write_text("")  # Pods get the cluster's DNS and search path, not the host's
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # this host is cgroup v1
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup}",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": self.network.node_address,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.plane.pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": CLUSTER_DOMAIN,
            "clusterDNS": [self.network.node_address],
            "resolvConf": str(resolv),
            "podLogsDir": str(folder / "pod-logs"),
            "failSwapOn": False,
            "rotateCertificates": False,
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "nodeStatusReportFrequency": "10s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "volumeStatsAggPeriod": "0s",
        }
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        self._spawn("kubelet", [
            str(self.binaries.kubelet),
            f"--config={folder / 'config.yaml'}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={folder / 'root'}",
            f"--cert-dir={folder / 'pki'}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.network.node_address}",
            "--v=1",
        ])  # fmt: skip

    def _start_kube_proxy(self, kubeconfig: Path) -> None:
        folder = self.run_dir / "kube-proxy"
        folder.mkdir()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": self.name,
            "clusterCIDR": self.network.pod_cidr,
            "bindAddress": self.network.node_address,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            "nodePortAddresses": [f"{self.network.node_address}/32"],
            # conntrack limits are host-wide sysctls: leave them as they are.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        self._spawn("kube-proxy", [str(self.binaries.kube_proxy),
                                   f"--config={folder / 'config.yaml'}", "--v=1"])  # fmt: skip

    def _start_controller_manager(self, kubeconfig: Path) -> None:
        pki = self.plane.pki
        self._spawn("kube-controller-manager", [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--service-account-private-key-file={pki.sa_private_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={controlplane.SERVICE_CIDR}",
            f"--cluster-cidr={self.network.pod_cidr}",
            "--controllers=*,-nodeipam",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={controlplane.free_port()}",
            f"--cert-dir={self.run_dir / 'kube-controller-manager'}",
            "--v=1",
        ], in_netns=False)  # fmt: skip

    def _start_scheduler(self, kubeconfig: Path) -> None:
        self._spawn("kube-scheduler", [
            str(self.binaries.kube_scheduler),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={controlplane.free_port()}",
            f"--cert-dir={self.run_dir / 'kube-scheduler'}",
            "--v=1",
        ], in_netns=False)  # fmt: skip

    def _start_coredns(self) -> None:
        folder = self.run_dir / "coredns"
        folder.mkdir()
        # The zones of the cluster only, no forward plugin: any other name is refused, and
        # the VM's resolver is never asked.
        corefile = f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {self.network.node_address}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {self.plane.kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"""
        (folder / "Corefile").write_text(corefile)
        self._spawn("coredns", [str(self.coredns), "-conf", str(folder / "Corefile")])

    # --- readiness ------------------------------------------------------------------------

    def _node_ready(self) -> bool:
        ready = 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'
        done = self.plane.kubectl("get", "node", self.name, "-o", ready)
        return done.returncode == 0 and done.stdout.strip() == "True"

    def _default_sa(self) -> bool:
        return (
            self.plane.kubectl("get", "serviceaccount", "default", "-n", "default").returncode == 0
        )

    def _dns_ready(self) -> bool:
        name = f"kubernetes.default.svc.{CLUSTER_DOMAIN}"
        return dns_query(self.network.node_address, name) == (0, True)

    def rss_bytes(self) -> int:
        """Resident memory of every process in the node's cgroup (shims and containers
        included)."""
        total = 0
        for pid in reaping.cgroup_pids(self.cgroup):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf(
                    "SC_PAGE_SIZE"
                )
        return total


def dns_query(server: str, name: str, *, timeout: float = 1.0) -> tuple[int, bool] | None:
    """Ask `server` for the A record of `name` over UDP: (rcode, whether it answered), or
    None if no reply came."""
    ident = secrets.randbelow(65536)
    question = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, (server, 53))
            reply = sock.recv(512)
        except OSError:
            return None
    if len(reply) < 12 or struct.unpack("!H", reply[:2])[0] != ident:
        return None
    flags, _, answers = struct.unpack("!HHH", reply[2:8])
    return flags & 0x000F, answers > 0


@dataclass
class NodeCluster:
    """The control plane and its node, on the node's network."""

    network: nodenetwork.NodeNetwork
    plane: controlplane.ControlPlane
    node: Node


@contextlib.contextmanager
def running(
    *,
    say: Callable[[str], None] = lambda message: None,
    network: nodenetwork.NodeNetwork | None = None,
) -> Iterator[NodeCluster]:
    """Check the machine, ensure the binaries and images, make the node's network (default
    addresses unless `network` is given), start a control plane on it and the node; yield
    them and tear everything down afterwards."""
    network = network or nodenetwork.NodeNetwork(f"smimesh-node-{secrets.token_hex(4)}")
    nodechecks.check(network)
    built = binaries_.ensure_node_binaries(say=say)
    coredns = ensure_coredns(say=say)
    images.pause_archive(say=say)
    images.node_test_archive(say=say)
    network.create()
    try:
        # Once a node has run, kube-apiserver hangs for over 10 s in its graceful shutdown
        # (after "Shutting down peer endpoint lease reconciler"); its state is thrown away.
        plane = controlplane.ControlPlane(
            built.control_plane, host=network.host_address, say=say, stop_grace=2.0
        )
        with plane:
            node = Node(plane, network, built, coredns, say=say)
            with node:
                yield NodeCluster(network, plane, node)
    finally:
        network.delete()


def main() -> int:
    """`python -m smimesh.testing.nodes`: build what the node needs (binaries, CoreDNS,
    images), without starting it."""
    try:
        for path in (*_tool_paths(), images.pause_archive(), images.node_test_archive()):
            print(path)
    except (gotools.GoToolError, images.ImageError) as exc:
        gotools.say(f"error: {exc}")
        return 1
    return 0


def _tool_paths() -> list[Path]:
    built = binaries_.ensure_node_binaries()
    return [built.kubelet, built.kube_controller_manager, built.kube_scheduler, built.kube_proxy,
            ensure_coredns()]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
