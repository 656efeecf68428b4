"""`smimesh workload run`: a process outside Kubernetes joins the mesh until it is stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smimesh.testing import clusters, meshes

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
        deadline = time.monotonic() + 20
        while True:
            reply = httpx.post(f"{client.app_url(8080)}/call", json={"url": url}, timeout=30).json()
            if reply["ok"] == 1:
                break
            assert time.monotonic() < deadline, reply
            time.sleep(0.3)
        pod = json.loads(
            cluster.kubectl("-n", namespace, "get", "pod", "vm-1", "-o", "json").stdout
        )
        assert pod["spec"]["serviceAccountName"] == "legacy"
        assert pod["status"]["phase"] == "Running"
    finally:
        joined.send_signal(signal.SIGTERM)
        assert joined.wait(30) == 0


def test_missing_config_server_is_a_usage_error() -> None:
    result = subprocess.run(
        [str(BIN / "smimesh"), "workload", "run", "--", "true"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--config-server is required" in result.stderr
