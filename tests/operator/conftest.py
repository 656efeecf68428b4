"""Fixtures for operator tests: the mesh installed from smimesh/manifests/, and operators running
as real processes (`python -m smimesh.operator`) under their own ServiceAccount's RBAC."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smimesh.testing import clusters, controlplane, meshes
from smimesh.testing.meshes import OperatorProcess
from tests.operator.scenarios import apply, forget_webhooks, service, workload


@pytest.fixture(scope="session")
def mesh_installed(cluster: clusters.Cluster) -> clusters.Cluster:
    """Namespace, CRDs and RBAC applied the way users apply them (the webhook configurations
    are removed again: `test_webhooks_on_apiserver` installs them with an operator to serve)."""
    forget_webhooks(cluster)
    meshes.install(cluster)
    forget_webhooks(cluster)
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

    def start(
        identity: str = "operator-a",
        *,
        lease_duration: float = 3.0,
        extra_args: tuple[str, ...] = (),
    ) -> OperatorProcess:
        # Local mode: the apiserver calls this operator's webhooks by URL (the test control
        # plane has no Service routing); a free port each, so operators never collide.
        webhooks = f"127.0.0.1:{controlplane.free_port()}"
        operator = meshes.start_operator(
            kubeconfig,
            tmp_path,
            identity=identity,
            lease_duration=lease_duration,
            extra_args=(
                "--webhook-address",
                webhooks,
                "--webhook-url",
                f"https://{webhooks}",
                *extra_args,
            ),
        )
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.stop()
        # Shown by pytest when the test failed: what the operator said.
        print(f"--- {operator.identity} log ---\n{operator.logs()[-6000:]}")
    forget_webhooks(mesh_installed)


@pytest.fixture
def canary(mesh_installed: clusters.Cluster, namespace: str) -> str:
    cluster = mesh_installed
    apply(cluster, service(namespace, "root"), service(namespace, "v1"), service(namespace, "v2"))
    workload(cluster, namespace, "client-1", "client", "10.20.0.1", [])
    workload(cluster, namespace, "v1-1", "backend", "10.20.0.2", ["root", "v1"])
    workload(cluster, namespace, "v2-1", "backend", "10.20.0.3", ["root", "v2"])
    return namespace
