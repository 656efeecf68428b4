"""`helm template` renders the same objects as the kustomization `kubectl smi install` applies:
the same set of kind/namespace/name and, once Helm's own labels are set aside, the same
objects, for the default values and for each value against what install does with it (the HA
overlay, `--namespace`, `--image`); `helm lint --strict` passes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

import smimesh
from smimesh.kube import installing, kustomizing, names
from tests.charts.conftest import CHART, HELM_LABELS, Helm, by_identity, normalized, template

MANIFESTS = installing.MANIFESTS


def _assert_same(chart: list[dict[str, Any]], kustomized: list[dict[str, Any]]) -> None:
    got = by_identity([normalized(obj) for obj in chart])
    wanted = by_identity(kustomized)
    assert sorted(got) == sorted(wanted)
    for key, obj in wanted.items():
        assert got[key] == obj, key


def test_the_default_values_render_the_kustomization(run_helm: Helm) -> None:
    chart = template(run_helm)
    _assert_same(chart, kustomizing.render_builtin(MANIFESTS))
    for obj in chart:
        labels = obj["metadata"]["labels"]
        assert set(labels) >= HELM_LABELS, obj["metadata"]["name"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    crds = [o for o in chart if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 5
    assert all(o["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"} for o in crds)
    deployment = next(o for o in chart if o["kind"] == "Deployment")
    # Helm's labels stay off the selector and the Pod template (an upgrade could not change them).
    assert not HELM_LABELS & set(deployment["spec"]["selector"]["matchLabels"])
    assert not HELM_LABELS & set(deployment["spec"]["template"]["metadata"]["labels"])


def test_ha_renders_the_ha_overlay(run_helm: Helm) -> None:
    _assert_same(
        template(run_helm, "ha=true"), kustomizing.render_builtin(MANIFESTS / "overlays" / "ha")
    )


def test_the_namespace_value_moves_what_install_moves(run_helm: Helm) -> None:
    moved = installing.relocate(kustomizing.render_builtin(MANIFESTS), "mesh")
    _assert_same(template(run_helm, "namespace=mesh"), moved)


def test_the_image_values_set_what_install_image_sets(run_helm: Helm) -> None:
    image = "registry.example/mesh/smimesh:7"
    chart = template(run_helm, "image.repository=registry.example/mesh/smimesh", "image.tag=7")
    _assert_same(chart, installing.with_image(kustomizing.render_builtin(MANIFESTS), image))
    (deployment,) = [o for o in template(run_helm) if o["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == installing.DEFAULT_IMAGE


def test_replicas_access_mode_and_kept_crds_are_values(run_helm: Helm) -> None:
    chart = template(run_helm, "replicas=3", "accessMode=strict", "crds.keep=false")
    deployment = next(o for o in chart if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-1] == "--access=strict"
    crds = [o for o in chart if o["kind"] == "CustomResourceDefinition"]
    assert crds
    assert all("annotations" not in o["metadata"] for o in crds)
    without = template(run_helm, "crds.install=false", "createNamespace=false")
    kinds = {o["kind"] for o in without}
    assert "CustomResourceDefinition" not in kinds
    assert "Namespace" not in kinds
    assert {o["metadata"]["name"] for o in without if o["kind"] == "Deployment"} == {
        names.OPERATOR_DEPLOYMENT
    }


def test_an_unknown_access_mode_is_refused_with_its_reason(run_helm: Helm) -> None:
    result = run_helm("template", "smimesh", str(CHART), "--set", "accessMode=open")
    assert result.returncode != 0
    assert 'accessMode must be "", "permissive" or "strict", not "open"' in result.stderr


@pytest.mark.parametrize("values", [[], ["ha=true", "namespace=mesh", "accessMode=strict"]])
def test_helm_lint_passes(run_helm: Helm, values: list[str]) -> None:
    sets = [arg for value in values for arg in ("--set", value)]
    result = run_helm("lint", "--strict", str(CHART), *sets)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.fast
def test_the_chart_is_versioned_with_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == chart["version"] == smimesh.__version__
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == names.IMAGE_REPOSITORY
    assert values["namespace"] == names.MESH_NAMESPACE
