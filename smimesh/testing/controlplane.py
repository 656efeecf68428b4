"""A real Kubernetes control plane as local processes: etcd plus kube-apiserver on loopback.

Like controller-runtime's envtest: secure serving with a throwaway CA, an admin client
certificate and kubeconfig, service-account signing keys (TokenRequest and TokenReview work),
RBAC authorization, admission webhooks and API aggregation on (front-proxy client
certificate and request headers; endpoint routing, as there is no kube-proxy). Fed by
`smimesh.testing.binaries` and `smimesh.testing.pki`; used by `smimesh.testing.clusters`
(pytest) and `smimesh demo`. Pods do not run here: workloads run as local processes
registered as Pods. `restart` stops etcd or the apiserver and starts it again on the same
ports and state, for the fault suite (`tests/e2e/test_faults.py`).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import yaml

from smimesh._aio import waiting
from smimesh.testing import binaries as binaries_
from smimesh.testing import pki as pki_
from smimesh.testing import reaping, starting

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.96.0.0/16"
"""Service ClusterIPs; kube-proxy on the real node (`smimesh.testing.nodes`) routes them."""
KUBERNETES_SERVICE_IP = "10.96.0.1"
"""The `kubernetes` Service's ClusterIP: in the serving certificate, for in-cluster clients."""


class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message says what happened and what to do."""


_LOWEST_PORT = 10000
_handed: set[int] = set()
_handing = threading.Lock()


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (outgoing connections' source ports)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing is bound to right now, below the kernel's ephemeral
    range, and not handed out before by this process.

    `bind(0)` would pick from the ephemeral range, where any outgoing connection may take
    the port between this call and the server's bind (seen in CI: an operator's gRPC port
    taken, "address already in use")."""
    low = _ephemeral_low()
    ports = range(_LOWEST_PORT, low) if low - _LOWEST_PORT > 1000 else range(1024, low)
    with _handing:
        if len(_handed) > len(ports) // 2:
            _handed.clear()  # a long session: ports handed out long ago are free again
        start = random.randrange(len(ports))
        for offset in range(len(ports)):
            port = ports[(start + offset) % len(ports)]
            if port in _handed:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
            _handed.add(port)
            return port
    raise ControlPlaneError(f"no free TCP port on {host} in {ports.start}-{ports.stop - 1}")


@dataclass
class Process:
    """A started component: its process group, log and command line."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    argv: list[str]

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        reaping.release_group(self.popen.pid)


@dataclass
class ControlPlane(starting.Started):
    """etcd + kube-apiserver on loopback; use as a context manager or call start()/stop()."""

    binaries: binaries_.Binaries
    host: str = "127.0.0.1"
    ready_timeout: float = 90.0
    workdir: Path | None = None
    say: Callable[[str], None] = field(default=lambda message: None)
    stop_grace: float = 10.0
    """Seconds each process gets to exit on SIGTERM at `stop` before SIGKILL."""
    _processes: list[Process] = field(default_factory=list, init=False)
    _owns_workdir: bool = field(default=False, init=False)
    _port: int = field(default=0, init=False)
    _pki: pki_.ControlPlanePki | None = field(default=None, init=False)

    @property
    def server(self) -> str:
        """The apiserver's URL."""
        return f"https://{self.host}:{self._port}"

    @property
    def state_dir(self) -> Path:
        if self.workdir is None:
            raise ControlPlaneError("the control plane has not been started")
        return self.workdir

    @property
    def pki(self) -> pki_.ControlPlanePki:
        """The files of its PKI, among them the service-account signing key (`tokens`)."""
        if self._pki is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._pki

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig with cluster-admin rights (group system:masters)."""
        return self.state_dir / "kubeconfig"

    def start(self) -> None:
        """Start etcd and kube-apiserver and wait until the apiserver reports ready."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="smimesh-cp-"))
            self._owns_workdir = True
            reaping.hold(reaping.path(self.workdir))  # `stop` removes it; the reaper if we die
        started = time.monotonic()
        try:
            pki = self._pki = pki_.write_pki(
                self.state_dir / "pki",
                hosts=[
                    self.host,
                    "localhost",
                    "kubernetes",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                    KUBERNETES_SERVICE_IP,
                ],
            )
            etcd_url = self._start_etcd()
            self._port = free_port(self.host)
            self._start_apiserver(pki, etcd_url)
            self._write_kubeconfig(pki)
            self._wait_ready(pki)
        except BaseException:
            self.stop()
            raise
        self.say(f"control plane ready at {self.server} in {time.monotonic() - started:.1f}s")

    def stop(self) -> None:
        """Stop the apiserver, then etcd; remove the state directory if we made it."""
        for process in reversed(self._processes):
            process.stop(grace=self.stop_grace)
        self._processes.clear()
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            reaping.release(reaping.path(self.workdir))
            self.workdir = None
            self._owns_workdir = False

    def restart(
        self, name: Literal["etcd", "kube-apiserver"], *, down_for: float = 0.0, grace: float = 10.0
    ) -> None:
        """Stop `name` (SIGTERM, SIGKILL after `grace`), keep it down for `down_for` seconds,
        start it again with the same command line (same ports, same data directory), and wait
        until the apiserver reports ready again. Its log continues in the same file."""
        index, process = next((i, p) for i, p in enumerate(self._processes) if p.name == name)
        process.stop(grace=grace)
        time.sleep(down_for)
        again = self._spawn(name, process.argv, append=True)
        self._processes.remove(again)  # it keeps its place in the start order
        self._processes[index] = again
        self._wait_ready(self.pki)

    def _spawn(self, name: str, argv: list[str], *, append: bool = False) -> Process:
        log = self.state_dir / f"{name}.log"
        with log.open("ab" if append else "wb") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=reaping.die_with_parent,
            )
        reaping.hold_group(popen.pid)  # the parent-death signal follows the thread, not us
        process = Process(name, popen, log, argv)
        self._processes.append(process)
        return process

    def _start_etcd(self) -> str:
        client, peer = free_port(self.host), free_port(self.host)
        client_url, peer_url = f"http://{self.host}:{client}", f"http://{self.host}:{peer}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        return client_url

    def _start_apiserver(self, pki: pki_.ControlPlanePki, etcd_url: str) -> None:
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                f"--secure-port={self._port}",
                f"--cert-dir={self.state_dir / 'certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_public_key}",
                f"--service-account-signing-key-file={pki.sa_private_key}",
                # The aggregator: proxies to APIServices with its front-proxy client
                # certificate and the caller in request headers; with no kube-proxy, it
                # resolves a Service to one of its EndpointSlices' addresses itself.
                f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
                f"--requestheader-allowed-names={pki_.FRONT_PROXY_CLIENT}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.front_proxy_client_cert}",
                f"--proxy-client-key-file={pki.front_proxy_client_key}",
                "--enable-aggregator-routing=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Node: kubelets see their own Pods' objects only. The rest is for a real node:
                # logs/exec go to the kubelet at its InternalIP, with a client certificate.
                "--authorization-mode=Node,RBAC",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--kubelet-client-certificate={pki.kubelet_client_cert}",
                f"--kubelet-client-key={pki.kubelet_client_key}",
                "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
            ],
        )

    def _write_kubeconfig(self, pki: pki_.ControlPlanePki) -> None:
        write_kubeconfig(self.kubeconfig, server=self.server, ca=pki.ca_cert,
                         cert=pki.admin_cert, key=pki.admin_key, user="smimesh-admin")  # fmt: skip

    def _check_alive(self) -> None:
        for process in self._processes:
            code = process.popen.poll()
            if code is not None:
                hint = ""
                log = process.tail()
                if "address already in use" in log:
                    hint = " (a port was taken between choosing and binding it; start again)"
                raise ControlPlaneError(
                    f"{process.name} exited with code {code} during start-up{hint}; "
                    f"its log ends with:\n{log}"
                )

    def _wait_ready(self, pki: pki_.ControlPlanePki) -> None:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        last = "no answer yet"

        def ready() -> bool:
            nonlocal last
            self._check_alive()
            try:
                response = client.get(f"{self.server}/readyz")
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                return False
            last = f"HTTP {response.status_code}: {response.text[-300:]}"
            return response.status_code == 200

        with httpx.Client(verify=context, timeout=5.0) as client:
            waiting.eventually_sync(
                ready,
                timeout=self.ready_timeout,
                message=lambda: (
                    f"kube-apiserver was not ready within {self.ready_timeout:.0f}s (last: "
                    f"{last}); raise the timeout on a slow machine. Its log ends with:\n"
                    f"{self._processes[-1].tail()}"
                ),
                interval=0.25,
                error=ControlPlaneError,
            )

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the control plane's kubectl against it; the caller checks the return code."""
        return subprocess.run(
            [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )


def write_kubeconfig(
    path: Path, *, server: str, ca: Path, cert: Path, key: Path, user: str
) -> Path:
    """A kubeconfig for `server` that authenticates with a client certificate (the admin's,
    or a node component's)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "smimesh-local",
                "cluster": {"server": server, "certificate-authority": str(ca)},
            }
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [
            {"name": "smimesh-local", "context": {"cluster": "smimesh-local", "user": user}}
        ],
        "current-context": "smimesh-local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def running(*, say: Callable[[str], None] = lambda message: None) -> Iterator[ControlPlane]:
    """Ensure the binaries, start a control plane, yield it and stop it afterwards."""
    plane = ControlPlane(binaries_.ensure_binaries(say=say), say=say)
    with plane:
        yield plane
