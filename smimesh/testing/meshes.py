"""A whole mesh on one machine: the manifests applied to a cluster, the operator running as a
process under its own ServiceAccount, and local workloads (test app + sidecar) on demand.

Used by `make demo`, the conformance suite's local environment and end-to-end tests. Builds
on `clusters` (the cluster), `workloads` (app + sidecar processes) and the operator's entry
point `python -m smimesh.operator`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from smimesh.kube import names
from smimesh.testing import (
    addresses,
    apiservices,
    clusters,
    controlplane,
    launching,
    reaping,
    workloads,
)

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
APP_COMMAND = (sys.executable, "-m", "smimesh.conformance.testapp")


class MeshError(RuntimeError):
    """The mesh could not be set up; the message says which step failed."""


@dataclass
class OperatorProcess:
    """`python -m smimesh.operator` as a child process, with its log in a file."""

    process: subprocess.Popen[bytes]
    grpc_address: str
    identity: str
    log: Path
    webhook_address: str | None = None
    """host:port of its HTTPS server (webhooks, TrafficMetrics API) if `start_operator` set it."""

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, *, kill: bool = False) -> None:
        if self.process.poll() is None:
            (self.process.kill if kill else self.process.terminate)()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        reaping.release_group(self.process.pid)


def start_operator(
    kubeconfig: Path,
    log_dir: Path,
    *,
    identity: str = "operator-a",
    lease_duration: float = 3.0,
    extra_args: tuple[str, ...] = (),
    timeout: float = 30.0,
    webhook_host: str = "127.0.0.1",
) -> OperatorProcess:
    """Start an operator and wait until its config server listens.

    Its webhooks listen on a free port of `webhook_host` and are registered by URL
    (`--webhook-url`): a local control plane has no Service routing to reach them otherwise."""
    address = f"127.0.0.1:{controlplane.free_port()}"
    webhooks = None
    if "--webhook-url" not in extra_args:
        webhooks = f"{webhook_host}:{controlplane.free_port(webhook_host)}"
        extra_args = (
            "--webhook-address",
            webhooks,
            "--webhook-url",
            f"https://{webhooks}",
            *extra_args,
        )
    log = log_dir / f"{identity}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smimesh.operator",
                "--kubeconfig",
                str(kubeconfig),
                "--grpc-address",
                address,
                "--identity",
                identity,
                "--lease-duration",
                str(lease_duration),
                *extra_args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, which the reaper kills if we die first
        )
    reaping.hold_group(process.pid, grace=20.0)  # it leaves local mode on SIGTERM
    operator = OperatorProcess(process, address, identity, log, webhooks)
    deadline = time.monotonic() + timeout
    while "config server on port" not in operator.logs():
        if process.poll() is not None or time.monotonic() > deadline:
            operator.stop()
            raise MeshError(f"the operator did not start; its log:\n{operator.logs()[-4000:]}")
        time.sleep(0.1)
    return operator


def trust_bundle(cluster: clusters.Cluster, *, timeout: float = 30.0) -> bytes:
    """The mesh CA's roots, as workloads get them: ConfigMap smimesh-trust-bundle."""
    deadline = time.monotonic() + timeout
    while True:
        found = cluster.kubectl(
            "-n",
            names.MESH_NAMESPACE,
            "get",
            "configmap",
            "smimesh-trust-bundle",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        )
        if found.returncode == 0 and "BEGIN CERTIFICATE" in found.stdout:
            return found.stdout.encode()
        if time.monotonic() > deadline:
            raise MeshError(f"no trust bundle published within {timeout:.0f}s: {found.stderr}")
        time.sleep(0.2)


SMI_RESOURCES = (
    "trafficsplits.split.smi-spec.io",
    "traffictargets.access.smi-spec.io",
    "httproutegroups.specs.smi-spec.io",
    "tcproutes.specs.smi-spec.io",
)


def wait_served(
    cluster: clusters.Cluster, operator: OperatorProcess, *, timeout: float = 30.0
) -> None:
    """Until the operator has pointed the CRDs' conversion at its webhooks and every SMI kind
    lists again: the apiserver rebuilds a CRD's storage after that patch and answers 429
    ("storage is (re)initializing") meanwhile, which clients without client-go's retries
    (the Python client) would see as a failed write."""
    deadline = time.monotonic() + timeout
    while "webhook CA bundles in place" not in operator.logs():
        if operator.process.poll() is not None or time.monotonic() > deadline:
            raise MeshError(
                f"the operator did not register its webhooks:\n{operator.logs()[-4000:]}"
            )
        time.sleep(0.1)
    for resource in SMI_RESOURCES:
        while (listed := cluster.kubectl("get", resource, "-A", "-o", "name")).returncode != 0:
            if time.monotonic() > deadline:
                raise MeshError(f"{resource} not served within {timeout:.0f}s: {listed.stderr}")
            time.sleep(0.2)


def install(cluster: clusters.Cluster) -> None:
    """Apply `manifests/` server-side, as users do, and wait for the CRDs."""
    applied = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(MANIFESTS))
    if applied.returncode != 0:
        raise MeshError(f"applying {MANIFESTS} failed: {applied.stderr.strip()}")
    ready = cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    if ready.returncode != 0:
        raise MeshError(f"CRDs not established: {ready.stderr.strip()}")


@dataclass
class LocalMesh:
    """Use as a context manager: installs, starts the operator, and cleans up after."""

    cluster: clusters.Cluster
    say: Callable[[str], None] = lambda message: None
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="smimesh-")))
    operator: OperatorProcess | None = None
    started: list[workloads.LocalWorkload] = field(default_factory=list)
    bundle: bytes = b""
    operator_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        reaping.hold_directory(self.work_dir)  # `close` removes it; the reaper if we die

    def __enter__(self) -> LocalMesh:
        try:
            install(self.cluster)
            self.say("installed CRDs, RBAC and the mesh namespace from manifests/")
            kubeconfig = self.cluster.kubeconfig_for(
                names.MESH_NAMESPACE, names.OPERATOR_SERVICE, self.work_dir / "operator.kubeconfig"
            )
            # On an address of the local range, not loopback: the aggregator reaches the
            # TrafficMetrics API through an EndpointSlice of the operator Service.
            self.operator = start_operator(
                kubeconfig,
                self.work_dir,
                extra_args=self.operator_args,
                webhook_host=addresses.allocate_local(),
            )
            if self.operator.webhook_address is not None:
                with self.cluster.api_client() as api:
                    apiservices.register(api, self.operator.webhook_address)
            self.bundle = trust_bundle(self.cluster)
            wait_served(self.cluster, self.operator)
            self.say(f"operator running (config server {self.operator.grpc_address})")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for workload in reversed(self.started):
            workload.stop()
        self.started.clear()
        if self.operator is not None:
            self.operator.stop()
            if self.operator.webhook_address is not None:
                with self.cluster.api_client() as api:
                    apiservices.unregister(api)
        if reaping.keeps_logs():
            self.say(f"the operator's log is kept in {self.work_dir}")
        reaping.remove_directory(self.work_dir)

    def apply(self, *objects: dict[str, Any]) -> None:
        """kubectl apply of the given objects (a List), raising with kubectl's message."""
        items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        result = self.cluster.kubectl("apply", "-f", "-", input=json.dumps(items))
        if result.returncode != 0:
            raise MeshError(result.stderr.strip())

    def namespace(self, name: str, *, access: str = "permissive") -> str:
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                # No injection label: local workloads are meshed by registration, and
                # their Pods must not go through the injector.
                "metadata": {
                    "name": name,
                    "annotations": {names.NAMESPACE_ACCESS_ANNOTATION: access},
                },
            }
        )
        return name

    def service(
        self,
        namespace: str,
        name: str,
        selector: dict[str, str],
        *,
        port: int = 80,
        target_port: int = 8080,
        protocol: str = "http",
    ) -> None:
        spec = {"name": "http", "port": port, "targetPort": target_port, "appProtocol": protocol}
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"selector": selector, "ports": [spec]},
            }
        )

    def workload(
        self,
        namespace: str,
        name: str,
        service_account: str,
        labels: dict[str, str],
        *,
        target_port: int = 8080,
        app_port: int = 18080,
        isolation: launching.Isolation = "address",
    ) -> workloads.LocalWorkload:
        """Start the conformance test app with a sidecar, registered behind its Services
        (`isolation="netns"`: in a network namespace of its own, intercepted transparently)."""
        if self.operator is None:
            raise MeshError("the mesh is not started")
        api = self.cluster.api_client()
        workload = workloads.LocalWorkload(
            workloads.WorkloadSpec(
                namespace=namespace,
                name=name,
                service_account=service_account,
                command=APP_COMMAND,
                labels=labels,
                app_ports={target_port: app_port},
                isolation=isolation,
            ),
            api=api,
            config_server=self.operator.grpc_address,
            # Read again for each workload: a root rotation changes it while the mesh runs.
            trust_bundle=trust_bundle(self.cluster),
        )
        self.started.append(workload)
        workload.start()
        self.say(f"workload {namespace}/{name} up at {workload.address} (sidecar ready)")
        return workload
