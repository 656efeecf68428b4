"""`helm install`, `helm upgrade` and `helm uninstall` of the chart on a real apiserver: the
release creates the kustomization's objects, a changed value reaches the Deployment, and
uninstalling leaves nothing but the CRDs it keeps by default (with `crds.keep=false`, nothing).

The objects are checked, not Pods: on the local control plane no operator Pod runs. On a
cluster of their own (`tests.clusterstate`), as cluster-scoped names are one per cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from smimesh.kube import installing, kustomizing, names
from smimesh.testing import clusters
from tests import clusterstate
from tests.charts.conftest import CHART, Helm

pytestmark = pytest.mark.cluster

RELEASE = "smimesh"
RENDERED = kustomizing.render_builtin(installing.MANIFESTS)


@pytest.fixture(scope="module")
def own(request: pytest.FixtureRequest) -> Iterator[clusters.Cluster]:
    with clusterstate.own(request) as mine:
        yield mine


def _deployment(cluster: clusters.Cluster) -> dict[str, object]:
    got = cluster.kubectl(
        "get", "deployment", names.OPERATOR_DEPLOYMENT, "-n", names.MESH_NAMESPACE, "-o", "json"
    )
    assert got.returncode == 0, got.stderr
    deployment: dict[str, object] = json.loads(got.stdout)
    return deployment


def test_install_upgrade_uninstall_leave_nothing_behind(
    run_helm: Helm, own: clusters.Cluster
) -> None:
    types = clusterstate.resource_types(own)
    before = clusterstate.snapshot(own, types)
    kubeconfig = f"--kubeconfig={own.kubeconfig}"
    # The release's own record lives in `default`; the mesh in its namespace.
    # --take-ownership: on a shared cluster the CRDs may be there, applied by kubectl smi.
    installed = run_helm(
        "install", RELEASE, str(CHART), "-n", "default", kubeconfig, "--take-ownership"
    )
    assert installed.returncode == 0, installed.stderr
    now = clusterstate.snapshot(own, types)
    for obj in RENDERED:
        meta = obj["metadata"]
        key = f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"
        assert key in now, key
        assert now[key]["annotations"]["meta.helm.sh/release-name"] == RELEASE  # type: ignore[index]

    upgraded = run_helm(
        "upgrade", RELEASE, str(CHART), "-n", "default", kubeconfig,
        "--set", "image.tag=0.1.1-test", "--set", "ha=true", "--set", "accessMode=strict",
    )  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stderr
    spec = _deployment(own)["spec"]
    assert isinstance(spec, dict)
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["containers"][0]["image"] == f"{names.IMAGE_REPOSITORY}:0.1.1-test"
    assert "--access=strict" in pod["containers"][0]["args"]
    assert "podAntiAffinity" in pod["affinity"]

    removed = run_helm("uninstall", RELEASE, "-n", "default", kubeconfig)
    assert removed.returncode == 0, removed.stderr
    crds = frozenset(
        f"CustomResourceDefinition//{o['metadata']['name']}"
        for o in RENDERED
        if o["kind"] == "CustomResourceDefinition"
    )
    clusterstate.assert_nothing_left(own, types, before, (names.MESH_NAMESPACE,), kept=crds)

    # The kept CRDs are adopted again by the next release; without `keep` they go with it.
    # (Another mesh namespace: on the local control plane the first one stays terminating.)
    again = run_helm(
        "install", RELEASE, str(CHART), "-n", "default", kubeconfig,
        "--set", "crds.keep=false", "--set", "namespace=mesh-again",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    gone = run_helm("uninstall", RELEASE, "-n", "default", kubeconfig)
    assert gone.returncode == 0, gone.stderr
    clusterstate.assert_nothing_left(own, types, before, (names.MESH_NAMESPACE, "mesh-again"))
