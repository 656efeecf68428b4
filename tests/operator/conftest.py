"""Fixtures for operator tests: the mesh installed from manifests/, and operators running
as real processes (`python -m smimesh.operator`) under their own ServiceAccount's RBAC."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smimesh.testing import clusters, controlplane
from tests.operator.scenarios import OperatorProcess, apply, service, workload

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def mesh_installed(cluster: clusters.Cluster) -> clusters.Cluster:
    """Namespace, CRDs and RBAC applied the way users apply them."""
    applied = cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "manifests")
    )
    assert applied.returncode == 0, applied.stderr
    ready = cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    assert ready.returncode == 0, ready.stderr
    return cluster


@pytest.fixture
def start_operator(
    mesh_installed: clusters.Cluster, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators as the smimesh-operator ServiceAccount; all are stopped afterwards."""
    kubeconfig = mesh_installed.kubeconfig_for(
        "smimesh-system", "smimesh-operator", tmp_path / "operator.kubeconfig"
    )
    started: list[OperatorProcess] = []

    def start(identity: str = "operator-a", *, lease_duration: float = 3.0) -> OperatorProcess:
        address = f"127.0.0.1:{controlplane.free_port()}"
        log = tmp_path / f"{identity}.log"
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
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        operator = OperatorProcess(process, address, identity, log)
        started.append(operator)
        deadline = time.monotonic() + 30
        while "config server on port" not in operator.logs():
            assert process.poll() is None, operator.logs()
            assert time.monotonic() < deadline, operator.logs()
            time.sleep(0.1)
        return operator

    yield start
    for operator in started:
        operator.stop()
        # Shown by pytest when the test failed: what the operator said.
        print(f"--- {operator.identity} log ---\n{operator.logs()[-6000:]}")


@pytest.fixture
def canary(mesh_installed: clusters.Cluster, namespace: str) -> str:
    cluster = mesh_installed
    apply(cluster, service(namespace, "root"), service(namespace, "v1"), service(namespace, "v2"))
    workload(cluster, namespace, "client-1", "client", "10.20.0.1", [])
    workload(cluster, namespace, "v1-1", "backend", "10.20.0.2", ["root", "v1"])
    workload(cluster, namespace, "v2-1", "backend", "10.20.0.3", ["root", "v2"])
    return namespace
