"""`smimesh workload run`: a process outside Kubernetes joins the mesh until it is stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smimesh._aio import waiting
from smimesh.testing import clusters, meshes
from tests.testing import support

pytestmark = pytest.mark.cluster
BIN = Path(sys.executable).parent


@pytest.fixture
def mesh(cluster: clusters.Cluster) -> Iterator[meshes.LocalMesh]:
    with meshes.LocalMesh(cluster) as local:
        yield local


def test_a_process_joins_the_mesh_and_leaves_it_on_sigterm(
    mesh: meshes.LocalMesh, cluster: clusters.Cluster
) -> None:
    assert mesh.operator is not None
    namespace = mesh.namespace(f"wl-{uuid.uuid4().hex[:6]}")
    mesh.service(namespace, "vm", {"app": "vm"})
    with subprocess.Popen(
        [
            str(BIN / "smimesh"), "workload", "run", "-n", namespace,
            "--service-account", "legacy", "-l", "app=vm", "--name", "vm-1",
            "--config-server", mesh.operator.grpc_address,
            "--kubeconfig", str(cluster.kubeconfig),
            "--", sys.executable, "-m", "smimesh.conformance.testapp",
        ],
        stderr=subprocess.PIPE, text=True,
    ) as joined:  # fmt: skip
        _exercise(mesh, cluster, namespace, joined)
    gone = cluster.kubectl("-n", namespace, "get", "pod", "vm-1")
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr


def _exercise(
    mesh: meshes.LocalMesh,
    cluster: clusters.Cluster,
    namespace: str,
    joined: subprocess.Popen[str],
) -> None:
    try:
        assert joined.stderr is not None
        announced = joined.stderr.readline()
        assert f"{namespace}/vm-1 at 10.77." in announced, announced
        assert "behind vm" in announced
        client = mesh.workload(namespace, "client-1", "client", {"app": "client"})
        url = f"http://vm.{namespace}.svc.cluster.local/echo"
        _eventually_ok(client.app_url(8080), url)
        pod = json.loads(
            cluster.kubectl("-n", namespace, "get", "pod", "vm-1", "-o", "json").stdout
        )
        assert pod["spec"]["serviceAccountName"] == "legacy"
        assert pod["status"]["phase"] == "Running"
    finally:
        joined.send_signal(signal.SIGTERM)
        assert joined.wait(30) == 0


def test_with_netns_a_process_joins_in_a_network_namespace_and_calls_services_by_name(
    mesh: meshes.LocalMesh, cluster: clusters.Cluster
) -> None:
    support.require_netns()
    assert mesh.operator is not None
    namespace = mesh.namespace(f"wl-{uuid.uuid4().hex[:6]}")
    mesh.service(namespace, "vm", {"app": "vm"})
    mesh.service(namespace, "client", {"app": "client"})
    with subprocess.Popen(
        [
            str(BIN / "smimesh"), "workload", "run", "--netns", "-n", namespace,
            "--service-account", "legacy", "-l", "app=vm", "--name", "vm-1",
            "--config-server", mesh.operator.grpc_address,
            "--kubeconfig", str(cluster.kubeconfig),
            "--", sys.executable, "-m", "smimesh.conformance.testapp",
        ],
        stderr=subprocess.PIPE, text=True,
    ) as joined:  # fmt: skip
        try:
            assert joined.stderr is not None
            announced = joined.stderr.readline()
            found = re.search(r"vm-1 at (10\.78\.\S+) in network namespace (\S+) ", announced)
            assert found is not None, announced
            address, netns = found.groups()
            assert netns in _namespaces()
            client = mesh.workload(namespace, "client-1", "client", {"app": "client"})
            # Into the namespace through its sidecar, and out of it with no proxy settings.
            _eventually_ok(client.app_url(8080), f"http://vm.{namespace}.svc.cluster.local/")
            _eventually_ok(f"http://{address}:18080", f"http://client.{namespace}.svc/echo")
        finally:
            joined.send_signal(signal.SIGTERM)
            assert joined.wait(30) == 0
    assert netns not in _namespaces()
    assert cluster.kubectl("-n", namespace, "get", "pod", "vm-1").returncode != 0


def _namespaces() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split(" ")[0] for line in listed.stdout.splitlines()]


def _eventually_ok(app: str, url: str) -> None:
    """The app at `app` calls `url` until one call succeeds (configs take a moment)."""
    reply: dict[str, object] = {}

    def answered() -> bool:
        nonlocal reply
        reply = httpx.post(f"{app}/call", json={"url": url}, timeout=30).json()
        return reply["ok"] == 1

    waiting.eventually_sync(
        answered, timeout=20, message=lambda: str(reply), interval=0.3, error=AssertionError
    )


def test_netns_on_a_host_without_ip_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "smimesh"), "workload", "run", "--netns", "--config-server", "x:1", "--",
         "true"],
        capture_output=True, text=True, check=False, env={"PATH": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 1
    reason = "ip is not installed" if os.geteuid() == 0 else "need root"
    assert f"--netns cannot run here: {reason}" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_server_is_a_usage_error() -> None:
    result = subprocess.run(
        [str(BIN / "smimesh"), "workload", "run", "--", "true"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--config-server is required" in result.stderr
