"""`--target current` for real: the local control plane plus our operator (a LocalMesh) and a
local node (`smimesh.testing.kubelet`) that runs the test-app Pods the suite deploys, meshed
by our injection webhook. The suite reaches the apps through the apiserver's pod proxy on the
control port, which strict mode must not close."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from smimesh.conformance import apps, deploying, profiles
from smimesh.testing import clusters, kubelet, meshes

pytestmark = pytest.mark.cluster


def _say(message: str) -> None:
    print(f"[node] {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def node(cluster: clusters.Cluster) -> Iterator[kubelet.LocalNode]:
    with (
        meshes.LocalMesh(cluster) as mesh,
        cluster.api_client() as api,
        kubelet.LocalNode(
            api,
            image=deploying.DEFAULT_IMAGE,
            config_server=mesh.operator.grpc_address if mesh.operator else "",
            trust_bundle=mesh.bundle,
            say=_say,
        ) as local_node,
    ):
        yield local_node


def test_the_control_port_answers_under_strict_mode_while_mesh_traffic_is_denied(
    cluster: clusters.Cluster, node: kubelet.LocalNode
) -> None:
    prefix = f"cur-{uuid.uuid4().hex[:5]}"
    stage = deploying.deploy(cluster, profiles.PROFILES["smimesh"], prefix=prefix, timeout=120)
    space = stage.strict
    a, b = space.apps["a"], space.apps["b"]
    raw = json.loads(cluster.kubectl("-n", space.name, "get", "pod", "b-1", "-o", "json").stdout)
    annotations = raw["metadata"]["annotations"]
    assert "smimesh.dev/injected" in annotations, "the injection webhook did not mesh the Pod"
    assert annotations["smimesh.dev/exclude-inbound-ports"] == str(apps.CONTROL_PORT)
    assert raw["spec"]["nodeName"] == node.name

    tally = stage.call(a, space.url("b"))
    assert dict(tally.codes) == {"403": 1}, "strict mode let a reach b without a TrafficTarget"
    assert stage.received(b, a) == 0
    assert b.request("GET", "/metrics", timeout=10)["name"] == f"{space.name}/b-1"
    with cluster.api_client() as api:
        mesh_port = apps.PodApp(api, space.name, "b-1", port=apps.MESH_PORT)
        with pytest.raises(apps.AppError):
            mesh_port.request("GET", "/metrics", timeout=10)
    deploying.remove(cluster, prefix=prefix)


def test_the_cli_grades_the_mesh_in_the_current_cluster(
    cluster: clusters.Cluster, node: kubelet.LocalNode
) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "smimesh"), "conformance", "run",
            "--target", "current", "--mesh", "smimesh",
            "--kubeconfig", str(cluster.kubeconfig), "--ready-timeout", "120",
            "--focus", "access/tcproute-allows", "--focus", "split/weights-75-25",
            "--focus", "specs/get-only", "-o", "json",
        ],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:] + result.stdout[-4000:]
    outcomes = {c["case"]: c["outcome"] for c in json.loads(result.stdout)}
    assert outcomes == {
        "access/tcproute-allows-exactly-once": "passed",
        "specs/get-only": "passed",
        "split/weights-75-25": "passed",
    }
    assert "deploying the test app for mesh smimesh" in result.stderr
