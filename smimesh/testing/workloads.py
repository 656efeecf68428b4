"""Local workloads: an app process and its sidecar as one "pod", on an address of its own,
registered in the apiserver (`registering`) as a Pod behind its Services' EndpointSlices.

Two isolations (`WorkloadSpec.isolation`; addresses from `addresses`, command lines from
`launching`):
- `address` (default): app and sidecar share the host's network on an address of 10.77.0.0/16
  made local to the host. The sidecar listens on it: inbound on the Services' target ports,
  outbound as the app's HTTP proxy (15001), admin on 15000; the app at its own port
  (`app_ports`) and reaches the mesh explicitly (HTTP_PROXY).
- `netns`: a network namespace of its own (`isolating`) with transparent interception: the
  app has no proxy settings and calls Services by name (a hosts file, kept current by
  `resolving`, maps them to ClusterIPs); iptables redirects its connections, and those
  arriving for it, to the sidecar.
The sidecar proves its ServiceAccount and Pod to the operator with a TokenRequest token bound to
the Pod (`tokens`). Used by the
conformance suite, `make demo`, tests, and `smimesh workload run` (workloads outside
Kubernetes, as VMs join other meshes).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from kubernetes import client

from smimesh._aio import waiting
from smimesh.testing import (
    addresses,
    isolating,
    launching,
    reaping,
    registering,
    resolving,
    starting,
    tokens,
)

OUTBOUND_PORT = launching.OUTBOUND_PORT
ADMIN_PORT = launching.ADMIN_PORT


class WorkloadError(RuntimeError):
    """A workload could not start; the message says which part and why."""


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
    isolation: launching.Isolation = "address"
    """`address`: explicit interception on a host address; `netns`: a network namespace of
    its own with transparent interception (needs root and iptables)."""


@dataclass
class LocalWorkload(starting.Started):
    """Start with `start()` (or as a context manager); `stop()` undoes everything."""

    spec: WorkloadSpec
    api: client.ApiClient
    config_server: str
    trust_bundle: bytes
    address: str = ""
    """Allocated for the isolation unless given."""
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="smimesh-wl-")))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)
    netns: isolating.Namespace | None = None
    """The workload's network namespace (`netns` isolation), made by `start`."""
    resolver: resolving.Resolver | None = None
    """Keeps the namespace's hosts file naming every Service (`netns` isolation)."""

    def __post_init__(self) -> None:
        reaping.hold_directory(self.log_dir)  # `stop` removes it; the reaper if we die first
        try:
            if not self.address:
                netns = self.spec.isolation == "netns"
                self.address = addresses.allocate_routed() if netns else addresses.allocate_local()
            if self.spec.isolation == "netns":
                self.netns = isolating.Namespace(self.address, addresses.gateway())
        except addresses.AddressError as exc:
            raise WorkloadError(str(exc)) from None

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
        """The sidecar's outbound HTTP proxy, which the app uses (HTTP_PROXY); `address`
        isolation only (in a namespace, the outbound port takes redirected connections)."""
        return f"http://{self.address}:{OUTBOUND_PORT}"

    def app_url(self, port: int) -> str:
        """The app directly, bypassing the mesh (for test assertions only)."""
        return f"http://{self.address}:{self.spec.app_ports.get(port, port)}"

    def _token(self) -> Path:
        """A token for the sidecar, bound to the registered Pod as the kubelet binds the
        projected tokens it mints: the operator serves a proxy only the config of the Pod its
        token names, and the apiserver stops accepting it once that Pod is gone. Replaced
        atomically, as the kubelet replaces a projected token: the sidecar reads the file
        again for every connection and never sees half a token."""
        spec = self.spec
        try:
            token = tokens.bound_token(
                self.api,
                spec.namespace,
                spec.service_account,
                spec.name,
                expiration_seconds=24 * 3600,
            )
        except tokens.TokenRequestError as exc:
            raise WorkloadError(str(exc)) from None
        path = self.log_dir / "token"
        staging = self.log_dir / "token.new"
        staging.unlink(missing_ok=True)
        staging.touch(mode=0o600)  # never readable by others, not even for a moment
        staging.write_text(token)
        staging.replace(path)
        return path

    def _spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """Start a process with exactly `env` as its environment, its output in a log file,
        in a process group of its own that the reaper kills if this process dies first."""
        with (self.log_dir / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,
            )
        reaping.hold_group(process.pid)
        self.processes[name] = process

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, *, ready_timeout: float = 30.0) -> None:
        """Register, (build the network namespace,) start app and sidecar, wait until ready.
        On any failure everything done so far is undone before the error propagates."""
        spec = self.spec
        self.log_dir.mkdir(parents=True, exist_ok=True)  # again, after a `stop`
        reaping.hold_directory(self.log_dir)
        try:
            self.services = registering.register(self.api, self.registration)
            bundle = self.log_dir / "trust-bundle.pem"
            bundle.write_bytes(self.trust_bundle)
            launch = launching.Launch(
                namespace=spec.namespace,
                name=spec.name,
                service_account=spec.service_account,
                address=self.address,
                isolation=spec.isolation,
                config_server=self.config_server,
                app_port=next(iter(spec.app_ports.values()), 8080),
                workload_name=spec.labels.get("app", spec.name),
            )
            netns = self.netns
            if netns is not None:
                self._isolate(netns)

            def wrap(argv: Sequence[str]) -> list[str]:
                return netns.exec(*argv) if netns is not None else list(argv)

            env = launching.app_environment(launch, os.environ, spec.env)
            self._spawn("app", wrap(spec.command), env)
            sidecar = launching.sidecar_command(
                launch, token=str(self._token()), trust_bundle=str(bundle)
            )
            self._spawn("sidecar", wrap([sys.executable, *sidecar]), dict(os.environ))
            self.wait_ready(ready_timeout)
        except isolating.NetnsError as exc:
            self.stop()
            raise WorkloadError(f"{spec.name}: network namespace: {exc}") from None
        except BaseException:
            self.stop()
            raise

    def _isolate(self, netns: isolating.Namespace) -> None:
        """The namespace with interception, a hosts file naming every Service, and (when the
        config server is on the host's loopback) a bridge to it from the namespace's."""
        netns.create()
        self.resolver = resolving.Resolver(
            self.api, netns, namespace=self.spec.namespace, pod=self.spec.name
        )
        self.resolver.refresh()
        self.resolver.start()
        exempt = {*self.spec.app_ports.values(), launching.METRICS_PORT}  # the host scrapes it
        netns.intercept(admin_port=ADMIN_PORT, host_ports=sorted(exempt))
        host, _, port = self.config_server.rpartition(":")
        if host in ("localhost", "127.0.0.1") or host.startswith("127."):
            self._spawn(
                "bridge",
                [sys.executable, "-m", "smimesh.testing.bridging", netns.name, port,
                 f"{host}:{port}"],
                dict(os.environ),
            )  # fmt: skip
            self._wait_logged("bridge", "bridging ", timeout=10.0)

    def refresh_hosts(self) -> None:
        """Name every Service (by ClusterIP) in the namespace's hosts file now (the resolver
        also does so every few seconds)."""
        if self.resolver is not None:
            self.resolver.refresh()

    def _wait_logged(self, name: str, text: str, *, timeout: float) -> None:
        def logged() -> bool:
            if self.processes[name].poll() is not None:
                raise WorkloadError(f"{self.spec.name}: {name} exited:\n{self.log(name)[-2000:]}")
            return text in self.log(name)

        waiting.eventually_sync(
            logged,
            timeout=timeout,
            message=lambda: f"{self.spec.name}: {name} did not start:\n{self.log(name)[-2000:]}",
            error=WorkloadError,
        )

    def refresh_endpoints(self) -> list[str]:
        """Join the Services that select the pod now and leave those that no longer do (what
        the EndpointSlice controller does after a selector change); returns the Services."""
        self.services = registering.register(self.api, self.registration)
        self.refresh_hosts()
        return self.services

    def wait_ready(self, timeout: float) -> None:
        """Until the sidecar's /ready answers 200 (it holds a config and credentials)."""
        last = "no answer"

        def ready() -> bool:
            nonlocal last
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise WorkloadError(
                        f"{self.spec.name}: {name} exited with {process.returncode}:\n"
                        f"{self.log(name)[-3000:]}"
                    )
            try:
                response = httpx.get(f"{self.admin_url}/ready", timeout=1.0)
            except httpx.TransportError as exc:
                last = str(exc)
                return False
            last = f"{response.status_code} {response.text[:200]}"
            return response.status_code == 200

        waiting.eventually_sync(
            ready,
            timeout=timeout,
            message=lambda: (
                f"{self.spec.name}: sidecar not ready within {timeout:.0f}s ({last}); log:\n"
                f"{self.log('sidecar')[-3000:]}"
            ),
            interval=0.1,
            error=WorkloadError,
        )

    def stop(self) -> None:
        """Stop the processes (their whole groups), the resolver and the namespace, leave the
        Services, and remove the directory (unless `SMIMESH_KEEP_LOGS`: then say where)."""
        stop_groups(self.processes.values())
        self.processes.clear()
        if self.resolver is not None:
            self.resolver.stop()
            self.resolver = None
        if self.netns is not None:
            self.netns.remove()
        with contextlib.suppress(client.ApiException):
            registering.unregister(self.api, self.registration)
        if reaping.keeps_logs():
            print(f"{self.spec.name}: logs kept in {self.log_dir}", file=sys.stderr)
        reaping.remove_directory(self.log_dir)


def stop_groups(processes: Iterable[subprocess.Popen[bytes]], *, grace: float = 10.0) -> None:
    """SIGTERM each process's group, SIGKILL after `grace`; wait for the leaders and tell
    the reaper they are gone. The group, not the leader: `ip netns exec` or a shell may have
    children that would otherwise stay."""
    processes = list(processes)
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if reaping.group_members(process.pid):  # the leader is gone, its children not yet
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        reaping.release_group(process.pid)
