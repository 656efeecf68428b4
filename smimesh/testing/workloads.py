"""Local workloads: an app process and its sidecar as one "pod", on an address of its own
(in 10.77.0.0/16, made local to the host), registered in the apiserver (`registering`).

The sidecar (`python -m smimesh.sidecar run`) listens on the workload's address: inbound on
the Services' target ports, outbound as the app's HTTP proxy (port 15001), admin on 15000;
the app listens on the same address at its own port (`app_port`), reached only through the
sidecar. The sidecar proves its ServiceAccount to the operator with a TokenRequest token.
Used by the conformance suite, `make demo`, tests, and `smimesh workload run` (workloads
outside Kubernetes, as VMs join other meshes).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
from kubernetes import client

from smimesh.kube import names
from smimesh.testing import registering

OUTBOUND_PORT = 15001
ADMIN_PORT = 15000


class WorkloadError(RuntimeError):
    """A workload could not start; the message says which part and why."""


LOCAL_RANGE = os.environ.get("SMIMESH_LOCAL_RANGE", "10.77.0.0/16")
"""Addresses of local workloads. Not 127/8: the apiserver refuses loopback addresses in
EndpointSlices. The range is made local to this host once (`ip route add local ... dev lo`,
root only), so any address in it can be bound without configuring each one."""


def ensure_local_range(cidr: str = LOCAL_RANGE) -> ipaddress.IPv4Network:
    network = ipaddress.IPv4Network(cidr)
    shown = subprocess.run(
        ["ip", "route", "show", "table", "local", str(network)],
        capture_output=True,
        text=True,
        check=False,
    )
    if str(network) in shown.stdout:
        return network
    added = subprocess.run(
        ["ip", "route", "add", "local", str(network), "dev", "lo"],
        capture_output=True,
        text=True,
        check=False,
    )
    if added.returncode != 0 and "File exists" not in added.stderr:
        raise WorkloadError(
            f"cannot make {network} local to this host ({added.stderr.strip()}); run once as "
            f"root: ip route add local {network} dev lo  (or set SMIMESH_LOCAL_RANGE)"
        )
    return network


def allocate_address(rng: random.Random | None = None) -> str:
    """An address of the local range that nobody on this host listens on."""
    network = ensure_local_range()
    rng = rng or random.Random()
    for _ in range(200):
        address = str(network[rng.randrange(1, network.num_addresses - 1)])
        with socket.socket() as probe:
            try:
                probe.bind((address, ADMIN_PORT))
            except OSError:
                continue
        return address
    raise WorkloadError(f"no free address in {network}")


@dataclass
class WorkloadSpec:
    namespace: str
    name: str
    service_account: str
    command: Sequence[str]
    labels: Mapping[str, str] = field(default_factory=dict)
    app_ports: Mapping[int, int] = field(default_factory=dict)
    """Service target port -> the app's own port (the sidecar holds the target port)."""
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class LocalWorkload:
    """Start with `start()` (or as a context manager); `stop()` undoes everything."""

    spec: WorkloadSpec
    api: client.ApiClient
    config_server: str
    trust_bundle: bytes
    address: str = field(default_factory=allocate_address)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="smimesh-wl-")))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)

    @property
    def registration(self) -> registering.Registration:
        return registering.Registration(
            namespace=self.spec.namespace,
            pod=self.spec.name,
            service_account=self.spec.service_account,
            ip=self.address,
            labels=dict(self.spec.labels),
            app_ports=dict(self.spec.app_ports),
        )

    @property
    def admin_url(self) -> str:
        return f"http://{self.address}:{ADMIN_PORT}"

    @property
    def proxy_url(self) -> str:
        """The sidecar's outbound HTTP proxy, which the app uses (HTTP_PROXY)."""
        return f"http://{self.address}:{OUTBOUND_PORT}"

    def app_url(self, port: int) -> str:
        """The app directly, bypassing the mesh (for test assertions only)."""
        return f"http://{self.address}:{self.spec.app_ports.get(port, port)}"

    def __enter__(self) -> LocalWorkload:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _token(self) -> Path:
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[names.TOKEN_AUDIENCE], expiration_seconds=24 * 3600
            )
        )
        response = client.CoreV1Api(self.api).create_namespaced_service_account_token(
            self.spec.service_account, self.spec.namespace, request
        )
        if response.status is None:
            raise WorkloadError(f"no token for {self.spec.service_account}")
        path = self.log_dir / "token"
        path.write_text(str(response.status.token))
        path.chmod(0o600)
        return path

    def _spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        with (self.log_dir / f"{name}.log").open("wb") as out:
            self.processes[name] = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, *, ready_timeout: float = 30.0) -> None:
        spec = self.spec
        try:
            self.services = registering.register(self.api, self.registration)
            bundle = self.log_dir / "trust-bundle.pem"
            bundle.write_bytes(self.trust_bundle)
            self._spawn(
                "app",
                spec.command,
                {
                    **spec.env,
                    "HOST": self.address,
                    "PORT": str(next(iter(spec.app_ports.values()), 8080)),
                    "HTTP_PROXY": self.proxy_url,
                    "http_proxy": self.proxy_url,
                    "NO_PROXY": "",
                    "SMIMESH_WORKLOAD": f"{spec.namespace}/{spec.name}",
                },
            )
            self._spawn(
                "sidecar",
                [
                    sys.executable,
                    "-m",
                    "smimesh.sidecar",
                    "run",
                    "--config-server",
                    self.config_server,
                    "--namespace",
                    spec.namespace,
                    "--service-account",
                    spec.service_account,
                    "--pod",
                    spec.name,
                    "--token-file",
                    str(self._token()),
                    "--trust-bundle",
                    str(bundle),
                    "--interception",
                    "explicit",
                    "--outbound-host",
                    self.address,
                    "--inbound-host",
                    self.address,
                    "--admin-host",
                    self.address,
                    "--app-host",
                    self.address,
                    "--workload-kind",
                    "Deployment",
                    "--workload-name",
                    spec.labels.get("app", spec.name),
                ],
                {},
            )
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def refresh_endpoints(self) -> list[str]:
        """Join the Services that select the pod now and leave those that no longer do (what
        the EndpointSlice controller does after a selector change); returns the Services."""
        self.services = registering.register(self.api, self.registration)
        return self.services

    def wait_ready(self, timeout: float) -> None:
        """Until the sidecar's /ready answers 200 (it holds a config and credentials)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise WorkloadError(
                        f"{self.spec.name}: {name} exited with {process.returncode}:\n"
                        f"{self.log(name)[-3000:]}"
                    )
            try:
                response = httpx.get(f"{self.admin_url}/ready", timeout=1.0)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise WorkloadError(
            f"{self.spec.name}: sidecar not ready within {timeout:.0f}s ({last}); log:\n"
            f"{self.log('sidecar')[-3000:]}"
        )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        with contextlib.suppress(client.ApiException):
            registering.unregister(self.api, self.registration)
