"""A local node for the local control plane, which has no kubelet: it registers a Node, binds
the Pods no node runs whose containers use one given image (the smimesh image), and runs
each as a local workload (`workloads`, `registering`): the container's command as a process
on an address of 10.77.0.0/16, status Running/Ready with that podIP once it answers, and
EndpointSlices. A Pod the injection webhook meshed (`smimesh.dev/injected`) gets our sidecar
beside the app, as `LocalWorkload` runs it: its declared ports, except those the pod
excludes from interception, move to app ports behind the sidecar.

`podplans.plan` decides whether and how to run a Pod; `LocalNode` reconciles on every Pod event
(a watch wakes it; it also relists every few seconds). Used by tests of `smimesh conformance
run --target current`; only for the local control plane, where no controller marks a Node
without heartbeats NotReady. Deleting a Pod stops its processes; stopping the node deletes
the Pods it ran.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from kubernetes import client, watch

from smimesh._aio import waiting
from smimesh.testing import podplans, reaping, registering, workloads

NODE_NAME = "smimesh-local-node"


class NodeError(RuntimeError):
    """A Pod did not come up on the local node; the message says why."""


def _wait_ports(
    address: str, ports: Collection[int], *, timeout: float, log: Callable[[], str]
) -> None:
    silent = list(ports)

    def listening() -> bool:
        while silent:
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex((address, silent[0])) != 0:
                    return False
            silent.pop(0)
        return True

    waiting.eventually_sync(
        listening,
        timeout=timeout,
        message=lambda: f"nothing listens on {address}:{silent[0]} after {timeout:.0f}s:\n{log()}",
        interval=0.1,
        error=NodeError,
    )


@dataclass
class _Pod:
    """One Pod the node runs: a local workload (its address, registration and, for meshed
    pods, its sidecar), plus the app process of a pod without a sidecar."""

    plan: podplans.PodPlan
    workload: workloads.LocalWorkload
    app: subprocess.Popen[bytes] | None = None
    started: Future[None] | None = None

    def log(self) -> str:
        return self.workload.log("app")[-3000:]

    def start(self, api: client.ApiClient, *, node: str, timeout: float) -> None:
        planned, workload = self.plan, self.workload
        values = {"metadata.name": planned.name, "metadata.namespace": planned.namespace,
                  "status.podIP": workload.address, "spec.serviceAccountName":
                  planned.service_account}  # fmt: skip
        env = {**planned.env, **{name: values[path] for name, path in planned.fields.items()}}
        command = (podplans.executable(planned.command[0]), *planned.command[1:])
        registering.adopt(api, workload.registration, node=node)
        if planned.meshed:
            workload.spec.env, workload.spec.command = env, command
            workload.start(ready_timeout=timeout)
        else:
            with (workload.log_dir / "app.log").open("wb") as out:
                self.app = subprocess.Popen(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env, "HOST": workload.address},
                    start_new_session=True,
                )
            reaping.hold_group(self.app.pid)  # killed by the reaper if the runner dies
        ports = [planned.app_ports.get(port, port) for port in planned.ports]
        _wait_ports(workload.address, ports, timeout=timeout, log=self.log)
        registering.mark_running(api, workload.registration)

    def stop(self, api: client.ApiClient) -> None:
        if self.started is not None:
            with contextlib.suppress(Exception):  # a failed start is reported where it ran
                self.started.result()
        if self.app is not None:
            workloads.stop_groups([self.app])
        self.workload.stop()  # unregisters too (slices and Pod go) and removes its directory


@dataclass
class LocalNode:
    """Use as a context manager: registers the Node, runs Pods until closed."""

    api: client.ApiClient
    image: str
    config_server: str
    trust_bundle: bytes
    namespaces: Collection[str] | None = None
    """Only Pods in these namespaces (all if None)."""
    name: str = NODE_NAME
    ready_timeout: float = 60.0
    say: Callable[[str], None] = lambda message: None
    pods: dict[str, _Pod] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    """Pod uid -> why it could not run (it is not retried)."""

    def __post_init__(self) -> None:
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._starts = ThreadPoolExecutor(8, thread_name_prefix="node-start")
        self._stops = ThreadPoolExecutor(8, thread_name_prefix="node-stop")
        self._threads = [
            threading.Thread(target=self._watch, name="node-watch", daemon=True),
            threading.Thread(target=self._loop, name="node-loop", daemon=True),
        ]

    def __enter__(self) -> LocalNode:
        core = client.CoreV1Api(self.api)
        node = client.V1Node(
            metadata=client.V1ObjectMeta(
                name=self.name, labels={"kubernetes.io/hostname": self.name}
            )
        )
        try:
            core.create_node(node)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        ready = {"type": "Ready", "status": "True", "reason": "LocalNode",
                 "message": "processes on this host run the Pods"}  # fmt: skip
        core.patch_node_status(self.name, {"status": {"conditions": [ready]}})
        for thread in self._threads:
            thread.start()
        self.say(f"local node {self.name} runs Pods of image {self.image}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(15)
        for uid in list(self.pods):
            self._stop(uid)
        self._starts.shutdown(wait=True)
        self._stops.shutdown(wait=True)
        with contextlib.suppress(client.ApiException):
            client.CoreV1Api(self.api).delete_node(self.name)

    def _watch(self) -> None:
        """Wake the reconciler on every Pod event; the stream restarts every few seconds."""
        core = client.CoreV1Api(self.api)
        while not self._stopping.is_set():
            try:
                events = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    # From any version ("0"): a consistent start would wait for the pod cache
                    # to reach etcd's revision, which an idle cache without progress
                    # notifications never does (504 "Too large resource version").
                    core.list_pod_for_all_namespaces,
                    resource_version="0",
                    timeout_seconds=5,
                )
                for _ in events:
                    self._wake.set()
                    if self._stopping.is_set():
                        return
            except Exception as exc:  # the apiserver restarting, say: keep watching
                self.say(f"local node: pod watch failed ({exc}); again in 1s")
                self._stopping.wait(1.0)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(3.0)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._reconcile()
            except Exception as exc:  # reported; the next event or relist tries again
                self.say(f"local node: reconciling failed: {type(exc).__name__}: {exc}")

    def _listed(self) -> list[dict[str, Any]]:
        core = client.CoreV1Api(self.api)
        if self.namespaces is None:
            found = core.list_pod_for_all_namespaces().items
        else:
            found = [p for ns in self.namespaces for p in core.list_namespaced_pod(ns).items]
        serialize = self.api.sanitize_for_serialization
        return [serialize(pod) for pod in found]  # type: ignore[no-untyped-call]

    def _reconcile(self) -> None:
        present = set()
        for raw in self._listed():
            meta, spec = raw["metadata"], raw.get("spec") or {}
            uid = str(meta.get("uid"))
            if spec.get("nodeName") not in (None, "", self.name):
                continue
            present.add(uid)
            if meta.get("deletionTimestamp"):
                if uid in self.pods:
                    self._stop(uid)
                continue
            if uid in self.pods or uid in self.failures:
                continue
            planned = podplans.plan(raw, image=self.image)
            if planned is None:
                continue
            if not spec.get("nodeName") and not self._bind(planned):
                continue
            workload = workloads.LocalWorkload(
                workloads.WorkloadSpec(
                    namespace=planned.namespace,
                    name=planned.name,
                    service_account=planned.service_account,
                    command=planned.command,
                    labels=planned.labels,
                    app_ports=planned.app_ports,
                ),
                api=self.api,
                config_server=self.config_server,
                trust_bundle=self.trust_bundle,
            )
            pod = _Pod(planned, workload)
            self.pods[uid] = pod
            pod.started = self._starts.submit(self._start, uid, pod)
        for uid in [uid for uid in self.pods if uid not in present]:
            self._stop(uid)

    def _bind(self, planned: podplans.PodPlan) -> bool:
        binding = client.V1Binding(
            metadata=client.V1ObjectMeta(name=planned.name),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=self.name),
        )
        try:
            client.CoreV1Api(self.api).create_namespaced_pod_binding(
                planned.name, planned.namespace, binding, _preload_content=False
            )
        except client.ApiException as exc:
            if exc.status in (404, 409):  # gone, or bound elsewhere meanwhile
                return False
            raise
        return True

    def _start(self, uid: str, pod: _Pod) -> None:
        where = f"{pod.plan.namespace}/{pod.plan.name}"
        try:
            pod.start(self.api, node=self.name, timeout=self.ready_timeout)
        except Exception as exc:
            self.failures[uid] = f"{type(exc).__name__}: {exc}"
            self.say(f"local node: {where} failed to start: {self.failures[uid]}")
            failed = {"phase": "Failed", "reason": "LocalNodeError", "message": str(exc)[-2000:]}
            with contextlib.suppress(client.ApiException):  # a meshed pod is deleted already
                client.CoreV1Api(self.api).patch_namespaced_pod_status(
                    pod.plan.name, pod.plan.namespace, {"status": failed}
                )
            raise
        self.say(f"local node: {where} running at {pod.workload.address}"
                 f"{' with its sidecar' if pod.plan.meshed else ''}")  # fmt: skip

    def _stop(self, uid: str) -> None:
        pod = self.pods.pop(uid, None)
        if pod is not None:
            self._stops.submit(pod.stop, self.api)
