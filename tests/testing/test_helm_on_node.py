"""The Helm chart on the real node (issue #17, item 3): `helm install --wait` of the chart
with this tree's image rolls the operator out as real Pods, `helm upgrade --wait` rolls the
changed Deployment out again, and `helm uninstall` leaves nothing (`crds.keep=false`), so the
mesh tests after this module install onto a clean cluster. Uses the session's node."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from smimesh.kube import names
from smimesh.testing import clusters, images, nodes
from smimesh.testing.meshimage import project
from tests import clusterstate
from tests.charts.conftest import CHART, Helm

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "mesh-helm"
RELEASE = "smimesh"


def _operator(cluster: clusters.Cluster) -> dict[str, object]:
    got = cluster.kubectl("get", "deployment", names.OPERATOR_DEPLOYMENT, "-n", NAMESPACE,
                          "-o", "json")  # fmt: skip
    assert got.returncode == 0, got.stderr
    found: dict[str, object] = json.loads(got.stdout)
    return found


def test_helm_installs_upgrades_and_uninstalls_the_mesh_on_real_pods(
    run_helm: Helm, node_cluster: nodes.NodeCluster, node_api: clusters.Cluster
) -> None:
    packed = project.project_image(ROOT)
    images.import_layout(node_cluster.node.ctr(), packed.layout, project.IMAGE)
    types = clusterstate.resource_types(node_api)
    before = clusterstate.snapshot(node_api, types)
    kubeconfig = f"--kubeconfig={node_api.kubeconfig}"
    common = ("-n", "default", kubeconfig, "--set", f"namespace={NAMESPACE}",
              "--set", "crds.keep=false", "--wait", "--timeout", "4m")  # fmt: skip
    started = time.monotonic()
    installed = run_helm("install", RELEASE, str(CHART), *common)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    print(f"helm install --wait: {time.monotonic() - started:.1f}s")
    status = _operator(node_api)["status"]
    assert isinstance(status, dict)
    assert status.get("availableReplicas") == 1, status

    started = time.monotonic()
    upgraded = run_helm("upgrade", RELEASE, str(CHART), *common, "--set", "accessMode=strict")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    print(f"helm upgrade --wait: {time.monotonic() - started:.1f}s")
    operator = _operator(node_api)
    spec, status = operator["spec"], operator["status"]
    assert isinstance(spec, dict)
    assert isinstance(status, dict)
    assert "--access=strict" in spec["template"]["spec"]["containers"][0]["args"]
    assert status.get("updatedReplicas") == status.get("availableReplicas") == 1, status

    removed = run_helm("uninstall", RELEASE, "-n", "default", kubeconfig, "--wait")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    clusterstate.assert_nothing_left(node_api, types, before, (NAMESPACE,))
