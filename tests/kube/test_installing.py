"""The one install path (`smimesh.kube.installing`), as the tests' local meshes take it: the
same objects `kubectl smi install` renders, applied server-side as field manager smimesh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smimesh.kube import installing, names
from smimesh.testing import clusters, meshes


@pytest.mark.cluster
def test_a_local_mesh_installs_as_kubectl_smi_install_does(cluster: clusters.Cluster) -> None:
    meshes.install(cluster)
    got = cluster.kubectl(
        "get", "deployment", names.OPERATOR_SERVICE, "-n", names.MESH_NAMESPACE,
        "-o", "json", "--show-managed-fields",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    managed = json.loads(got.stdout)["metadata"]["managedFields"]
    assert names.FIELD_MANAGER in {m["manager"] for m in managed if m["operation"] == "Apply"}
    for obj in installing.rendered(kubectl=cluster.kubectl_binary):
        if obj["kind"] == "CustomResourceDefinition":
            established = cluster.kubectl(
                "get", "crd", obj["metadata"]["name"],
                "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}",
            )  # fmt: skip
            assert established.stdout == "True", obj["metadata"]["name"]


@pytest.mark.fast
def test_missing_manifests_are_named(tmp_path: Path) -> None:
    with pytest.raises(installing.NoManifestsError, match="no manifests at"):
        installing.rendered(tmp_path / "nowhere")
