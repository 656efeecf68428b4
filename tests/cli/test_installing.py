"""`kubectl smi install|uninstall` against the real apiserver: server-side apply as field
manager smimesh, server dry runs, rendering into another namespace, deletion."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from smimesh.kube import kustomizing, names
from smimesh.testing import clusters
from tests.cli.conftest import Run, run_smi

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
RENDERED = kustomizing.render_builtin(ROOT / "smimesh" / "manifests")


def test_install_applies_everything_server_side_as_smimesh(
    smi: Run, installed: clusters.Cluster
) -> None:
    again = smi("install")  # idempotent: an upgrade in place
    assert again.returncode == 0, again.stderr
    assert "✔ deployment/smimesh-system/smimesh-operator applied" in again.stdout
    assert again.stdout.splitlines()[-1].startswith(
        f"{len(RENDERED)} objects applied in smimesh-system"
    )

    got = installed.kubectl(
        "get",
        "deployment",
        "smimesh-operator",
        "-n",
        "smimesh-system",
        "-o",
        "json",
        "--show-managed-fields",
    )
    deployment = json.loads(got.stdout)
    applied = [m for m in deployment["metadata"]["managedFields"] if m["operation"] == "Apply"]
    # Ours among the appliers (a cluster of SMIMESH_CLUSTER=existing may have had others).
    assert "smimesh" in {m["manager"] for m in applied}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "smimesh.operator"]
    for crd in ("trafficsplits.split.smi-spec.io", "traffictargets.access.smi-spec.io"):
        established = installed.kubectl(
            "get",
            "crd",
            crd,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Established')].status}",
        )
        assert established.stdout == "True"


def test_dry_run_into_a_new_namespace_persists_nothing(smi: Run, cluster: clusters.Cluster) -> None:
    target = f"mesh-{uuid.uuid4().hex[:8]}"
    result = smi("install", "--dry-run", "--namespace", target)
    assert result.returncode == 0, result.stderr
    assert f"✔ namespace/{target} applied (server dry run)" in result.stdout
    assert (
        f"- deployment/{target}/smimesh-operator: not checked (its namespace is not created yet)"
        in result.stdout
    )
    assert result.stdout.splitlines()[-1].startswith(f"{len(RENDERED)} objects checked in {target}")
    assert cluster.kubectl("get", "namespace", target).returncode != 0


def test_render_moves_every_namespace_reference_and_needs_no_cluster(tmp_path: Path) -> None:
    result = run_smi(
        "install", "--render", "--ha", "-n", "mesh", f"--kubeconfig={tmp_path / 'absent'}"
    )
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    assert [o["kind"] for o in objects] == [o["kind"] for o in RENDERED]
    assert [o["kind"] for o in objects[:6]] == ["Namespace", *["CustomResourceDefinition"] * 5]
    assert objects[0]["metadata"]["name"] == "mesh"
    for obj in objects:
        if obj["kind"] in ("Service", "Deployment", "ServiceAccount", "Role", "RoleBinding"):
            # The aggregated API's reader binding lives beside its Role, in kube-system.
            reader = obj["metadata"]["name"].endswith(":extension-apiserver-authentication-reader")
            wanted = "kube-system" if reader else "mesh"
            assert obj["metadata"]["namespace"] == wanted, obj["kind"]
        for hook in obj.get("webhooks", []):
            assert hook["clientConfig"]["service"]["namespace"] == "mesh"
    binding = next(o for o in objects if o["kind"] == "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "smimesh-operator", "namespace": "mesh"}
    ]
    crd = next(o for o in objects if o["kind"] == "CustomResourceDefinition")
    assert crd["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["namespace"] == "mesh"
    apiservice = next(o for o in objects if o["kind"] == "APIService")
    assert apiservice["spec"]["service"]["namespace"] == "mesh"
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "smimesh-system" not in result.stdout


def test_uninstall_dry_run_deletes_nothing_and_keeps_the_crds(
    smi: Run, installed: clusters.Cluster
) -> None:
    result = smi("uninstall", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "✔ deployment/smimesh-system/smimesh-operator deleted (server dry run)" in result.stdout
    assert (
        "- customresourcedefinition/trafficsplits.split.smi-spec.io: kept (pass --crds to "
        "delete it)" in result.stdout
    )
    # The namespace goes after everything the manifests hold; only the trust bundles the
    # operator wrote into meshed namespaces (other tests' ones, in a shared cluster) follow.
    lines = result.stdout.splitlines()
    after = lines[lines.index("✔ namespace/smimesh-system deleted (server dry run)") + 1 :]
    assert all(
        line.startswith("✔ configmap/")
        and line.endswith(f"/{names.TRUST_BUNDLE_CONFIGMAP} deleted (server dry run)")
        for line in after
    ), after
    still = installed.kubectl("get", "deployment", "smimesh-operator", "-n", "smimesh-system")
    assert still.returncode == 0, still.stderr


def test_uninstall_deletes_in_reverse_order_and_tolerates_what_is_gone(
    smi: Run, cluster: clusters.Cluster, namespace: str, tmp_path: Path
) -> None:
    # A kustomization of our own, so that the session's real installation stays.
    (tmp_path / "objects.yaml").write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "v1",
                    "kind": kind,
                    "metadata": {"name": "smimesh-test", "namespace": namespace},
                }
                for kind in ("ConfigMap", "ServiceAccount")
            ]
        )
    )
    (tmp_path / "kustomization.yaml").write_text("resources: [objects.yaml]\n")
    installed = smi("install", f"--manifests={tmp_path}")
    assert installed.returncode == 0, installed.stderr
    assert cluster.kubectl("get", "configmap", "smimesh-test", "-n", namespace).returncode == 0
    # A trust bundle as the session's operator writes one: manifests without the operator
    # leave the operator's bundles alone.
    bundle = cluster.kubectl(
        "create", "configmap", names.TRUST_BUNDLE_CONFIGMAP, "-n", namespace, "--from-literal=a=b"
    )
    assert bundle.returncode == 0, bundle.stderr
    labelled = cluster.kubectl(
        "label", "configmap", names.TRUST_BUNDLE_CONFIGMAP, "-n", namespace,
        f"{names.PART_OF_LABEL}={names.PART_OF}",
    )  # fmt: skip
    assert labelled.returncode == 0, labelled.stderr

    removed = smi("uninstall", f"--manifests={tmp_path}")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == [
        f"✔ configmap/{namespace}/smimesh-test deleted",
        f"✔ serviceaccount/{namespace}/smimesh-test deleted",
    ]
    assert cluster.kubectl("get", "configmap", "smimesh-test", "-n", namespace).returncode != 0
    kept = cluster.kubectl("get", "configmap", names.TRUST_BUNDLE_CONFIGMAP, "-n", namespace)
    assert kept.returncode == 0, kept.stderr
    again = smi("uninstall", f"--manifests={tmp_path}")
    assert again.returncode == 0
    assert f"- configmap/{namespace}/smimesh-test: already gone" in again.stdout


def test_missing_manifests_exit_2(smi: Run, tmp_path: Path) -> None:
    result = smi("install", f"--manifests={tmp_path / 'nowhere'}")
    assert result.returncode == 2
    assert "no manifests at" in result.stderr


def test_wait_with_a_dry_run_is_a_usage_error(tmp_path: Path) -> None:
    result = run_smi("install", "--dry-run", "--wait", f"--kubeconfig={tmp_path / 'absent'}")
    assert result.returncode == 2
    assert "--wait waits for a real install: drop --dry-run and --render" in result.stderr


def test_render_with_an_image_runs_that_image_and_names_no_other() -> None:
    result = run_smi("install", "--render", "--image", "registry.example/smimesh:dev")
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example/smimesh:dev"
    )
    assert "ghcr.io/smimesh" not in result.stdout
