"""Pods on the real test node, for the node tier: manifests of the test image and awaited
states (Running, a Deployment rolled out), all through the cluster's kubectl; and the
installed `kubectl smi` plugin run against the node's cluster (`smi`)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from smimesh._aio import waiting
from smimesh.kube import installing, names
from smimesh.testing import clusters, images, nodes
from smimesh.testing.meshimage import project

TIMEOUT = 90.0
KUBECTL_SMI = Path(sys.executable).with_name("kubectl-smi")
ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def installed_mesh(
    node_cluster: nodes.NodeCluster, cluster: clusters.Cluster, *, say: Callable[[str], None]
) -> Iterator[str]:
    """The mesh installed from this tree's image (imported into the node's containerd;
    `kubectl smi install --image --wait`); yields the image. Uninstalled afterwards with its
    CRDs (the next module may install with Helm, which refuses CRDs it does not own), and
    awaited until its namespace is gone, so the next install does not find it terminating."""
    packed = project.project_image(ROOT)
    started = time.monotonic()
    images.import_layout(node_cluster.node.ctr(), packed.layout, project.IMAGE)
    say(f"image imported in {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    done = smi(cluster, "install", "--image", project.IMAGE, "--wait", "--timeout", "240")
    assert done.returncode == 0, done.stdout + done.stderr
    say(f"mesh installed and rolled out in {time.monotonic() - started:.1f}s")
    yield project.IMAGE
    removed = smi(cluster, "uninstall", "--crds")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    crds = [f"crd/{path.stem}" for path in (installing.MANIFESTS / "crds").glob("*.yaml")]
    for thing in (f"namespace/{names.MESH_NAMESPACE}", *crds):
        gone = cluster.kubectl("wait", "--for=delete", thing, "--timeout=120s")
        assert gone.returncode == 0 or "not found" in gone.stderr, gone.stderr


def plugin_env(cluster: clusters.Cluster) -> dict[str, str]:
    """This environment, pointed at `cluster`: its kubeconfig, its kubectl first on PATH."""
    path = f"{Path(cluster.kubectl_binary).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PATH": path}


def smi(
    cluster: clusters.Cluster, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The installed `kubectl smi` plugin, as a user runs it, against the node's cluster."""
    return subprocess.run([str(KUBECTL_SMI), *args], env=plugin_env(cluster), capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


def pod(name: str, command: str, **spec: Any) -> dict[str, Any]:
    """A Pod of the test image running `sh -c command`, never pulled."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [container("main", command)],
            **spec,
        },
    }


def container(name: str, command: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": images.TEST_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", command],
        **extra,
    }


def server(port: int = 8080) -> str:
    """A command serving `/index.html` (the Pod's hostname) over HTTP on `port`."""
    return f"mkdir -p /www && hostname > /www/index.html && exec busybox httpd -f -p {port} -h /www"


def apply(cluster: clusters.Cluster, namespace: str, *objects: dict[str, Any]) -> None:
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    done = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(document))
    assert done.returncode == 0, done.stderr


def read(cluster: clusters.Cluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    done = cluster.kubectl("get", "-n", namespace, kind, name, "-o", "json")
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def running(cluster: clusters.Cluster, namespace: str, name: str) -> dict[str, Any]:
    """Wait until the Pod is Running with every container ready; return it."""

    def ready() -> dict[str, Any] | None:
        found = read(cluster, namespace, "pod", name)
        statuses = found["status"].get("containerStatuses", [])
        ok = found["status"].get("phase") == "Running" and all(s["ready"] for s in statuses)
        return found if ok and statuses else None

    return waiting.eventually_sync(
        ready,
        timeout=TIMEOUT,
        message=lambda: (
            f"pod {namespace}/{name} not running: "
            + cluster.kubectl("describe", "-n", namespace, "pod", name).stdout[-2500:]
        ),
        interval=0.2,
    )


def exec_in(cluster: clusters.Cluster, namespace: str, name: str, command: str) -> str:
    """`kubectl exec` a shell command in the Pod's main container; its output."""
    done = cluster.kubectl("exec", "-n", namespace, name, "-c", "main", "--", "sh", "-c", command)
    assert done.returncode == 0, f"{command!r} failed: {done.stdout}{done.stderr}"
    return done.stdout
