"""What a cluster holds, to prove an install leaves nothing behind once uninstalled: a cluster of
its own for the tests that install and remove the whole mesh (`own`), every object's
`kind/namespace/name` (`snapshot`), and the check that only a terminating mesh namespace
differs (`assert_nothing_left`).

Used by tests/packaging/ and tests/charts/. Cluster-scoped names (CRDs, ClusterRoles, webhook
configurations) are one per cluster, so those tests cannot share the session's cluster, where
other suites keep smimesh installed: on the local control plane they start their own; on any
other (`SMIMESH_CLUSTER=node|kind|existing`) they use the session's, uninstalled first (the
CRDs stay, and the chart test's Helm release takes them over) and installed again afterwards.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smimesh._aio import waiting
from smimesh.kube import names
from smimesh.testing import clusters

AUTOMANAGED = "kube-aggregator.kubernetes.io/automanaged"
"""The label of the APIServices the apiserver registers by itself for the groups of CRDs: they
come and go with the CRDs."""
SKIPPED = frozenset({"events", "events.events.k8s.io", "leases.coordination.k8s.io"})
"""Kinds whose objects come and go by themselves (the apiserver's own Leases, Events)."""


def _say(message: str) -> None:
    print(f"[smimesh] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def own(request: pytest.FixtureRequest) -> Iterator[clusters.Cluster]:
    """A cluster for tests that install and uninstall smimesh as a whole (see the module);
    `request` gives the session's `cluster` fixture when it is not the local control plane."""
    if clusters.mode_from_env() == "local":
        with clusters.provide("local", say=_say) as cluster:
            yield cluster
        return
    session: clusters.Cluster = request.getfixturevalue("cluster")
    kubectl_smi = str(Path(sys.executable).parent / "kubectl-smi")
    kubeconfig = f"--kubeconfig={session.kubeconfig}"
    # The session's install goes first (but its CRDs: other suites' SMI objects stay).
    removed = subprocess.run(
        [kubectl_smi, "uninstall", kubeconfig], capture_output=True, text=True, timeout=180
    )
    assert removed.returncode == 0, removed.stderr
    waiting.eventually_sync(  # a real namespace controller finishes the mesh namespace
        lambda: session.kubectl("get", "namespace", names.MESH_NAMESPACE).returncode != 0,
        timeout=180,
        message=f"namespace {names.MESH_NAMESPACE} was not deleted",
        interval=1,
    )
    try:
        yield session
    finally:
        subprocess.run([kubectl_smi, "install", kubeconfig], capture_output=True, timeout=180)


def resource_types(cluster: clusters.Cluster) -> list[str]:
    """Every listable resource type (call it before an aggregated API without a server
    registers: discovery fails for it)."""
    found = cluster.kubectl("api-resources", "--verbs=list", "-o", "name")
    assert found.returncode == 0, found.stderr
    return [name for name in found.stdout.split() if name not in SKIPPED]


def snapshot(cluster: clusters.Cluster, types: list[str]) -> dict[str, dict[str, object]]:
    """`kind/namespace/name` -> metadata of every object of `types`, in all namespaces."""
    got = cluster.kubectl("get", ",".join(types), "-A", "-o", "json", "--ignore-not-found")
    assert got.returncode == 0, got.stderr
    items = json.loads(got.stdout or '{"items": []}')["items"]
    return {
        f"{item['kind']}/{item['metadata'].get('namespace', '')}/{item['metadata']['name']}": item[
            "metadata"
        ]
        for item in items
        if AUTOMANAGED not in (item["metadata"].get("labels") or {})
    }


def assert_nothing_left(
    cluster: clusters.Cluster,
    types: list[str],
    before: dict[str, dict[str, object]],
    namespaces: tuple[str, ...],
    *,
    kept: frozenset[str] = frozenset(),
) -> None:
    """Every object absent `before` is gone again but the mesh `namespaces`, which may still
    be terminating (the local control plane runs no namespace controller to finish them), and
    `kept` (keys as `snapshot` gives them)."""

    def left() -> bool:
        now = snapshot(cluster, types)
        extra = {key: meta for key, meta in now.items() if key not in before and key not in kept}
        for namespace in namespaces:
            terminating = f"Namespace//{namespace}"
            if cluster.mode == "local" and "deletionTimestamp" in extra.get(terminating, {}):
                del extra[terminating]
        state["extra"] = sorted(extra)
        return not extra

    state: dict[str, list[str]] = {"extra": []}
    waiting.eventually_sync(
        left, timeout=120, message=lambda: f"left behind: {state['extra']}", interval=0.5
    )
