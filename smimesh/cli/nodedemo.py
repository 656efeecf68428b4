"""`smimesh demo --cluster node`: the demo's stage on real Pods.

Starts the project's real node (`smimesh.testing.nodes`: kubelet, containerd, kube-proxy,
CoreDNS beside etcd + kube-apiserver), builds the smimesh image from the source tree it runs
in and imports it, installs the mesh with `kubectl smi install --wait` as a user does, and
runs the client and podinfo v1/v2 as injected Pods of the conformance test app. `demo` then
walks the same TrafficSplit through them, talking to each app through the apiserver's pod
proxy (`conformance.apps.PodApp`). Needs root and a source checkout (the Dockerfile).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smimesh.conformance import apps, deploying, profiles
from smimesh.testing import clusters, controlplane, gotools, images, nodechecks, nodenetwork, nodes
from smimesh.testing.meshimage import failures, project

READY_TIMEOUT = 180
PODS = (("client-1", "client", {"app": "client"}),
        ("podinfo-v1-1", "podinfo", {"app": "podinfo", "version": "v1"}),
        ("podinfo-v2-1", "podinfo", {"app": "podinfo", "version": "v2"}))  # fmt: skip


class NodeDemoError(RuntimeError):
    """The node stage could not be set up; the message says which step and why."""


@dataclass(frozen=True)
class Stage:
    cluster: clusters.Cluster
    client: apps.App
    v1: apps.App
    v2: apps.App


def source_tree(start: Path) -> Path:
    """The checkout the image is built from: `start` or a parent holding the Dockerfile."""
    for folder in (start, *start.parents):
        if (folder / "Dockerfile").is_file() and (folder / "smimesh").is_dir():
            return folder
    raise NodeDemoError(
        f"--cluster node builds the smimesh image from a source checkout; no Dockerfile with "
        f"smimesh/ beside it in {start} or above it: run it from a clone of the project"
    )


def manifests(namespace: str) -> list[dict[str, Any]]:
    """The demo's namespace (labelled for injection), ServiceAccounts, Services and Pods."""
    profile = profiles.PROFILES["smimesh"]
    objects: list[dict[str, Any]] = [profile.namespace(namespace, "permissive")]
    for account in ("client", "podinfo"):
        objects.append({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": account, "namespace": namespace}})  # fmt: skip
    for service, selector in (("podinfo", {"app": "podinfo"}),
                              ("podinfo-v1", {"app": "podinfo", "version": "v1"}),
                              ("podinfo-v2", {"app": "podinfo", "version": "v2"})):  # fmt: skip
        objects.append(deploying.service(namespace, service, selector))
    for pod, account, labels in PODS:
        made = deploying.app_pod(namespace, pod, account, labels, profile, project.IMAGE)
        made["spec"]["terminationGracePeriodSeconds"] = 2
        objects.append(made)
    return objects


def _kubectl_smi() -> str:
    beside = Path(sys.executable).with_name("kubectl-smi")
    found = str(beside) if beside.is_file() else shutil.which("kubectl-smi")
    if found is None:
        raise NodeDemoError("kubectl-smi is not installed beside smimesh (pip install smimesh)")
    return found


def _check(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        raise NodeDemoError(f"{what} failed: {(done.stderr or done.stdout).strip()[-1500:]}")


@contextlib.contextmanager
def running(
    namespace: str, *, say: Callable[[str], None], step: Callable[[str], None]
) -> Iterator[Stage]:
    """The node, the mesh installed from this tree's image and the demo's Pods Ready; all
    torn down afterwards (also on Ctrl-C)."""
    root = source_tree(Path.cwd())
    step("building the smimesh image from the Dockerfile (cached when nothing changed)")
    try:
        packed = project.project_image(root, say=say)
    except failures.BuildError as exc:
        raise NodeDemoError(f"the image: {exc}") from None
    step("starting a real node: containerd, kubelet, kube-proxy, CoreDNS, the control plane")
    try:
        with nodes.running(say=say) as made:
            plane = made.plane
            cluster = clusters.Cluster("node", plane.kubeconfig, str(plane.binaries.kubectl))
            images.import_layout(made.node.ctr(), packed.layout, project.IMAGE)
            say(f"imported {project.IMAGE} into the node's containerd")
            step("installing smimesh: kubectl smi install --wait (the operator as a Deployment)")
            path = f"{plane.binaries.kubectl.parent}{os.pathsep}{os.environ.get('PATH', '')}"
            env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "PATH": path}
            installed = subprocess.run(
                [_kubectl_smi(), "install", "--image", project.IMAGE, "--wait"],
                env=env, capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
            _check(installed, "kubectl smi install")
            say("the operator is rolled out")
            step("starting a client and podinfo v1 and v2 as injected Pods")
            document = {"apiVersion": "v1", "kind": "List", "items": manifests(namespace)}
            _check(cluster.kubectl("apply", "-f", "-", input=json.dumps(document)), "applying")
            ready = cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod",
                                    "--all", f"--timeout={READY_TIMEOUT}s")  # fmt: skip
            _check(ready, "waiting for the Pods")
            say(f"{len(PODS)} Pods Ready, each with its sidecar (mTLS by ServiceAccount)")
            api = cluster.api_client()
            client, v1, v2 = (apps.PodApp(api, namespace, pod) for pod, _, _ in PODS)
            yield Stage(cluster, client, v1, v2)
    except (gotools.GoToolError, images.ImageError, nodes.NodeError, nodechecks.NodeCheckError,
            nodenetwork.NodeNetworkError, controlplane.ControlPlaneError) as exc:  # fmt: skip
        raise NodeDemoError(str(exc)) from None
