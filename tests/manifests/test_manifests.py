"""smimesh/manifests/: the kustomize base and the HA overlay render, validate against the Kubernetes
schemas (kubernetes-validate, strict) and are accepted by the real apiserver (server-side
apply, server dry run); the operator's Deployment is hardened as DESIGN.md asks; the
built-in renderer of `kubectl smi install` agrees with `kubectl kustomize`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from smimesh.kube import kustomizing
from smimesh.smi import crdgen
from smimesh.testing import binaries, clusters

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "smimesh" / "manifests"
HA = BASE / "overlays" / "ha"


@pytest.fixture(scope="module")
def kubectl() -> str:
    return str(binaries.ensure_binaries().kubectl)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


@pytest.mark.parametrize("directory", [BASE, HA], ids=["base", "ha"])
def test_builtin_renderer_agrees_with_kubectl_kustomize(kubectl: str, directory: Path) -> None:
    assert kustomizing.render_builtin(directory) == kustomizing.render(directory, kubectl=kubectl)


@pytest.mark.fast
@pytest.mark.parametrize("directory", [BASE, HA], ids=["base", "ha"])
def test_rendered_objects_are_valid_kubernetes(directory: Path) -> None:
    for obj in kustomizing.render_builtin(directory):
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.fast
def test_crd_kustomization_lists_exactly_the_generated_crds() -> None:
    listed = yaml.safe_load((BASE / "crds" / "Kustomization").read_text())["resources"]
    assert sorted(listed) == sorted(crdgen.rendered())


@pytest.mark.fast
def test_the_operator_runs_hardened_with_its_identity_from_the_pod_name() -> None:
    objects = kustomizing.render_builtin(BASE)
    deployment = by_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 1
    assert container["command"] == ["python", "-m", "smimesh.operator"]
    assert container["args"] == ["--grpc-address=0.0.0.0:15010", "--identity=$(POD_NAME)"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert pod["serviceAccountName"] == "smimesh-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["tcpSocket"]["port"] == "grpc-config"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"webhooks": 9443, "grpc-config": 15010}

    service = by_kind(objects, "Service")
    assert {(p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        (443, "webhooks"),
        (15010, "grpc-config"),
    }
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    budget = by_kind(objects, "PodDisruptionBudget")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


@pytest.mark.fast
def test_the_ha_overlay_runs_two_operators_on_different_nodes() -> None:
    deployment = by_kind(kustomizing.render_builtin(HA), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (required,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["topologyKey"] == "kubernetes.io/hostname"
    assert required["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.fixture
def mesh_namespace(cluster: clusters.Cluster) -> None:
    """smimesh-system must exist for a server dry run of the objects inside it."""
    cluster.kubectl("create", "namespace", "smimesh-system")  # AlreadyExists is fine


@pytest.mark.cluster
@pytest.mark.usefixtures("mesh_namespace")
@pytest.mark.parametrize("directory", [BASE, HA], ids=["base", "ha"])
def test_the_apiserver_accepts_the_manifests(cluster: clusters.Cluster, directory: Path) -> None:
    result = cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-k", str(directory)
    )
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/smimesh-operator serverside-applied (server dry run)" in result.stdout
    assert "poddisruptionbudget.policy/smimesh-operator serverside-applied" in result.stdout
