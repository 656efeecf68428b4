"""Fixtures for the CLI tests: run the installed console script against the session's cluster,
smimesh installed there by `kubectl smi install` itself, and a running local mesh for the
commands that talk to sidecars."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from smimesh.testing import clusters, meshes, workloads

BIN = Path(sys.executable).parent
Run = Callable[..., subprocess.CompletedProcess[str]]


def run_smi(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`kubectl-smi ARGS` as a user runs it (wide terminal, so help text is not wrapped)."""
    return subprocess.run(
        [str(BIN / "kubectl-smi"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


@pytest.fixture(scope="session")
def smi(cluster: clusters.Cluster) -> Run:
    """`kubectl-smi ARGS --kubeconfig=<the test cluster>`."""

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_smi(*args, f"--kubeconfig={cluster.kubeconfig}", stdin=stdin)

    return run


@pytest.fixture(scope="session")
def installed(smi: Run, cluster: clusters.Cluster) -> clusters.Cluster:
    """smimesh installed by `kubectl smi install` (CRDs Established when it returns)."""
    result = smi("install")
    assert result.returncode == 0, result.stdout + result.stderr
    return cluster


@dataclass
class Meshed:
    """A LocalMesh with one permissive namespace: caller `a-1` (app a), callee `b-1` behind
    Service `b`, and Service `gone` that selects no pod."""

    mesh: meshes.LocalMesh
    namespace: str
    a: workloads.LocalWorkload
    b: workloads.LocalWorkload

    def call(self, service: str, *, count: int = 1) -> dict[str, Any]:
        """`a`'s app calls `service` `count` times through its sidecar."""
        response = httpx.post(
            f"{self.a.app_url(8080)}/call",
            json={
                "url": f"http://{service}.{self.namespace}.svc.cluster.local/echo",
                "count": count,
                "concurrency": 4,
            },
            timeout=60,
        )
        response.raise_for_status()
        return dict(response.json())


@pytest.fixture(scope="module")
def meshed(cluster: clusters.Cluster) -> Iterator[Meshed]:
    """A running mesh for the commands that talk to sidecars (one per test module)."""
    with meshes.LocalMesh(cluster) as mesh:
        namespace = mesh.namespace(f"cli-{uuid.uuid4().hex[:6]}")
        mesh.service(namespace, "b", {"app": "b"})
        mesh.service(namespace, "gone", {"app": "gone"})
        a = mesh.workload(namespace, "a-1", "service-a", {"app": "a"})
        b = mesh.workload(namespace, "b-1", "service-b", {"app": "b"})
        yield Meshed(mesh, namespace, a, b)
