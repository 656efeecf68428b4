"""A whole mesh on one machine: the manifests applied to a cluster, the operator running as a
process under its own ServiceAccount, and local workloads (test app + sidecar) on demand.

Used by `make demo`, the conformance suite's local environment and end-to-end tests. Builds
on `clusters` (the cluster), `smimesh.kube.installing` (the install `kubectl smi install`
does), `workloads` (app + sidecar processes) and the operator's entry point
`python -m smimesh.operator`. With `replicas=2` it runs two operators with leader election
behind one config-server address (`fronting`), and the fault suite kills, stops and starts
them again on their own addresses (`kill_operator`, `start_operator_again`).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes import client

from smimesh._aio import waiting
from smimesh.kube import installing, names
from smimesh.testing import (
    addresses,
    apiservices,
    clusters,
    controlplane,
    fronting,
    launching,
    reaping,
    workloads,
)

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
    extra_args: tuple[str, ...] = ()
    """The arguments it was started with besides its addresses (to start it again)."""
    webhook_url: str | None = None
    """The URL it registers its webhooks under (`--webhook-url`), if it runs in local mode."""

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
    grpc_address: str | None = None,
    webhook_address: str | None = None,
) -> OperatorProcess:
    """Start an operator and wait until its config server listens.

    Its webhooks listen on a free port of `webhook_host` and are registered by URL
    (`--webhook-url`): a local control plane has no Service routing to reach them otherwise.
    `grpc_address` and `webhook_address` ("host:port") start it where an earlier one ran."""
    given = extra_args
    address = grpc_address or f"127.0.0.1:{controlplane.free_port()}"
    webhooks = None
    if "--webhook-url" not in extra_args:
        webhooks = webhook_address or f"{webhook_host}:{controlplane.free_port(webhook_host)}"
        extra_args = (
            "--webhook-address",
            webhooks,
            "--webhook-url",
            f"https://{webhooks}",
            *extra_args,
        )
    log = log_dir / f"{identity}.log"
    with log.open("ab") as out:  # started again: its log continues
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
    url = extra_args[extra_args.index("--webhook-url") + 1]
    operator = OperatorProcess(process, address, identity, log, webhooks, given, webhook_url=url)
    if webhooks is None and "--webhook-address" in extra_args:  # the caller chose the port
        webhooks = extra_args[extra_args.index("--webhook-address") + 1]

    def serving() -> bool:
        if process.poll() is not None:
            raise MeshError(f"the operator exited; its log:\n{operator.logs()[-4000:]}")
        return _answers_tls(address) and (webhooks is None or _healthy(webhooks))

    try:
        waiting.eventually_sync(
            serving,
            timeout=timeout,
            message="the operator did not start",
            interval=0.1,
            ignoring=(OSError, ssl.SSLError),
        )
    except (waiting.WaitTimeoutError, MeshError) as exc:
        operator.stop()
        raise MeshError(f"{exc}; its log:\n{operator.logs()[-4000:]}") from None
    return operator


def _answers_tls(address: str) -> bool:
    """A TLS handshake with the server at host:port completes (the config server speaks gRPC
    over TLS; who signed its certificate is not the question here)."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=2) as raw,
        context.wrap_socket(raw) as tls,
    ):
        return tls.selected_alpn_protocol() == "h2"


def _healthy(address: str) -> bool:
    """The operator's HTTPS server answers `GET /healthz` with 200."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(host, int(port), timeout=2, context=context)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    finally:
        connection.close()


def trust_bundle(cluster: clusters.Cluster, *, timeout: float = 30.0) -> bytes:
    """The mesh CA's roots, as workloads get them: ConfigMap smimesh-trust-bundle."""
    found = subprocess.CompletedProcess[str]((), 1, "", "")

    def published() -> bytes:
        nonlocal found
        found = cluster.kubectl(
            "-n",
            names.MESH_NAMESPACE,
            "get",
            "configmap",
            names.TRUST_BUNDLE_CONFIGMAP,
            "-o",
            "jsonpath={.data.ca\\.crt}",
        )
        ok = found.returncode == 0 and "BEGIN CERTIFICATE" in found.stdout
        return found.stdout.encode() if ok else b""

    return waiting.eventually_sync(
        published,
        timeout=timeout,
        message=lambda: f"no trust bundle published within {timeout:.0f}s: {found.stderr}",
        interval=0.2,
        error=MeshError,
    )


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

    def registered() -> bool:
        if operator.process.poll() is not None:
            raise MeshError(f"the operator exited; its log:\n{operator.logs()[-4000:]}")
        return operator.webhook_url is None or _registered(cluster, operator.webhook_url)

    waiting.eventually_sync(
        registered,
        timeout=timeout,
        message=lambda: f"the operator did not register its webhooks:\n{operator.logs()[-4000:]}",
        interval=0.2,
        error=MeshError,
    )
    unserved = ("", "")

    def every_kind_lists() -> bool:
        nonlocal unserved
        for resource in SMI_RESOURCES:
            listed = cluster.kubectl("get", resource, "-A", "-o", "name")
            if listed.returncode != 0:
                unserved = (resource, listed.stderr)
                return False
        return True

    waiting.eventually_sync(
        every_kind_lists,
        timeout=max(0.0, deadline - time.monotonic()),
        message=lambda: f"{unserved[0]} not served within {timeout:.0f}s: {unserved[1]}",
        interval=0.2,
        error=MeshError,
    )


def _registered(cluster: clusters.Cluster, url: str) -> bool:
    """Every smimesh webhook the cluster has (the SMI CRDs' conversion, injection,
    validation) calls `url` with a CA bundle, and the TrafficMetrics APIService trusts a CA:
    what the operator's `cabundles.WebhookRegistration.ensure` writes, read back."""
    found = cluster.kubectl(
        "get",
        "crd,mutatingwebhookconfigurations,validatingwebhookconfigurations,apiservices",
        "-o",
        "json",
    )
    if found.returncode != 0:
        return False
    configs: list[dict[str, Any]] = []
    for item in json.loads(found.stdout)["items"]:
        name, spec = item["metadata"]["name"], item.get("spec") or {}
        if item["kind"] == "CustomResourceDefinition" and name.endswith(".smi-spec.io"):
            conversion = spec.get("conversion") or {}
            if conversion.get("strategy") == "Webhook":
                configs.append((conversion.get("webhook") or {}).get("clientConfig") or {})
        elif item["kind"].endswith("WebhookConfiguration") and name.startswith("smimesh-"):
            configs.extend(hook.get("clientConfig") or {} for hook in item.get("webhooks") or [])
        elif (
            item["kind"] == "APIService"
            and name.endswith(".metrics.smi-spec.io")
            and (not spec.get("caBundle") or spec.get("insecureSkipTLSVerify"))
        ):
            return False
    return all(
        str(config.get("url", "")).startswith(url.rstrip("/") + "/") and config.get("caBundle")
        for config in configs
    )


def lease_holder(cluster: clusters.Cluster) -> str:
    """Who holds the operators' Lease ("" if nobody does, or there is none yet)."""
    found = cluster.kubectl(
        "-n", names.MESH_NAMESPACE, "get", "lease", names.OPERATOR_LEASE,
        "-o", "jsonpath={.spec.holderIdentity}",
    )  # fmt: skip
    return found.stdout.strip() if found.returncode == 0 else ""


def wait_leader(cluster: clusters.Cluster, identity: str, *, timeout: float = 30.0) -> None:
    """Until `identity` holds the Lease."""
    holder = ""

    def taken() -> bool:
        nonlocal holder
        holder = lease_holder(cluster)
        return holder == identity

    waiting.eventually_sync(
        taken,
        timeout=timeout,
        message=lambda: f"{identity} did not take the Lease in {timeout:.0f}s ({holder!r})",
        interval=0.2,
        error=MeshError,
    )


def install(cluster: clusters.Cluster) -> None:
    """Install `smimesh/manifests/` as `kubectl smi install` does (`smimesh.kube.installing`:
    server-side apply as field manager smimesh) and wait for the CRDs."""
    with cluster.api_client() as api:
        try:
            installing.install(api, kubectl=cluster.kubectl_binary)
        except (installing.InstallError, client.ApiException) as exc:
            raise MeshError(f"installing {installing.MANIFESTS} failed: {exc}") from exc


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
    replicas: int = 1
    """Operators to run; past one, sidecars reach them all through one address (`front`)."""
    operators: list[OperatorProcess] = field(default_factory=list)
    """Every replica, the first started first (it takes the Lease); `operator` is the first."""
    front: fronting.Front | None = None

    @property
    def config_server(self) -> str:
        """The address sidecars dial: the front of the replicas, or the one operator's."""
        if self.front is not None:
            return self.front.address
        if self.operator is None:
            raise MeshError("the mesh is not started")
        return self.operator.grpc_address

    def __post_init__(self) -> None:
        reaping.hold_directory(self.work_dir)  # `close` removes it; the reaper if we die

    def __enter__(self) -> LocalMesh:
        try:
            install(self.cluster)
            self.say("installed CRDs, RBAC and the mesh namespace from smimesh/manifests/")
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
            self.operators.append(self.operator)
            if self.operator.webhook_address is not None:
                with self.cluster.api_client() as api:
                    apiservices.register(api, self.operator.webhook_address)
            self.bundle = trust_bundle(self.cluster)
            wait_served(self.cluster, self.operator)
            if self.replicas > 1:
                self._start_replicas(kubeconfig)
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

    def _start_replicas(self, kubeconfig: Path) -> None:
        """The other replicas, once the first holds the Lease (so it stays the leader), and
        the front that sends each sidecar connection to the first replica alive. In local
        mode every replica points the webhooks at its own URL once, as it starts: each is
        awaited before the next starts, so the last one started is the one they call."""
        assert self.operator is not None
        wait_leader(self.cluster, self.operator.identity)
        for number in range(1, self.replicas):
            replica = start_operator(
                kubeconfig,
                self.work_dir,
                identity=f"operator-{chr(ord('a') + number)}",
                extra_args=self.operator_args,
                webhook_host=addresses.allocate_local(),
            )
            self.operators.append(replica)
            wait_served(self.cluster, replica)
        self.front = fronting.Front(
            lambda: [operator.grpc_address for operator in self.operators]
        ).start()

    def leader(self) -> OperatorProcess:
        """The replica that holds the Lease now."""
        holder = lease_holder(self.cluster)
        for operator in self.operators:
            if operator.identity == holder:
                return operator
        raise MeshError(f"no running replica holds the Lease (holder: {holder!r})")

    def kill_operator(self, operator: OperatorProcess) -> None:
        """SIGKILL: no Lease release, no clean-up of any kind."""
        operator.stop(kill=True)

    def start_operator_again(self, operator: OperatorProcess) -> OperatorProcess:
        """A stopped replica started again as itself, on its own addresses (as a Pod that
        restarts keeps its Service's port); it takes `operator`'s place."""
        if operator.process.poll() is None:
            raise MeshError(f"{operator.identity} is still running")
        again = start_operator(
            self.work_dir / "operator.kubeconfig",
            self.work_dir,
            identity=operator.identity,
            extra_args=operator.extra_args,
            grpc_address=operator.grpc_address,
            webhook_address=operator.webhook_address,
        )
        self.operators[self.operators.index(operator)] = again
        if self.operator is operator:
            self.operator = again
        return again

    def close(self) -> None:
        for workload in reversed(self.started):
            workload.stop()
        self.started.clear()
        if self.front is not None:
            self.front.close()
        for operator in reversed(self.operators):
            operator.stop()
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
            config_server=self.config_server,
            # Read again for each workload: a root rotation changes it while the mesh runs.
            trust_bundle=trust_bundle(self.cluster),
        )
        self.started.append(workload)
        workload.start()
        self.say(f"workload {namespace}/{name} up at {workload.address} (sidecar ready)")
        return workload
