"""The built-in kustomization renderer of `kubectl smi install` (used when no kubectl is on
PATH): the subset it supports, and a clear refusal of the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from smimesh.kube import kustomizing

pytestmark = pytest.mark.fast


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory


def test_patches_merge_replicas_set_and_order_is_kustomizes(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "base/kustomization.yaml": "resources: [objects.yaml]\n",
            "base/objects.yaml": (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: op, namespace: ns}\n"
                "spec: {replicas: 1, paused: true, template: {spec: {containers: []}}}\n"
                "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n"
            ),
            "overlay/kustomization.yaml": (
                "resources: [../base]\nreplicas: [{name: op, count: 3}]\n"
                "patches: [{path: patch.yaml, target: {kind: Deployment, name: op}}]\n"
            ),
            "overlay/patch.yaml": (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: op}\n"
                "spec: {paused: null, template: {spec: {hostNetwork: false}}}\n"
            ),
        },
    )
    namespace, deployment = kustomizing.render_builtin(root / "overlay")
    assert namespace["kind"] == "Namespace"
    assert deployment["spec"] == {
        "replicas": 3,
        "template": {"spec": {"containers": [], "hostNetwork": False}},
    }


def test_features_outside_the_subset_are_refused_by_name(tmp_path: Path) -> None:
    write(tmp_path, {"kustomization.yaml": "resources: []\nnamePrefix: x-\n"})
    with pytest.raises(kustomizing.RenderError, match="namePrefix need `kubectl kustomize`"):
        kustomizing.render_builtin(tmp_path)


def test_a_patch_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "kustomization.yaml": "resources: []\npatches: [{path: patch.yaml}]\n",
            "patch.yaml": "kind: Service\nmetadata: {name: nope}\nspec: {}\n",
        },
    )
    with pytest.raises(kustomizing.RenderError, match="matches nothing"):
        kustomizing.render_builtin(tmp_path)
