"""`kubectl smi install` as a user runs it: from a virtualenv holding only the wheel, outside
the source tree, onto a real apiserver; `--image` and `--wait` (the rollout followed step by
step); `kubectl smi uninstall` removing every object install made and the operator's trust
bundles, so that nothing is left but what the user asked to keep.

On the local control plane no controller rolls Deployments out, so the rollout test writes
the Deployment's status as its controller would; on `SMIMESH_CLUSTER=node` the real
kube-controller-manager does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from smimesh._aio import waiting
from smimesh.kube import installing, kustomizing, names
from smimesh.testing import clusters
from tests import clusterstate
from tests.packaging.conftest import ROOT, Venv

pytestmark = pytest.mark.cluster

KUBECTL_SMI = [str(Path(sys.executable).parent / "kubectl-smi")]
"""The checkout's CLI (this test run's), for the tests that are not about the wheel."""
SOURCE_MANIFESTS = ROOT / "smimesh" / "manifests"
CRDS = frozenset(
    f"CustomResourceDefinition//{o['metadata']['name']}"
    for o in kustomizing.render_builtin(SOURCE_MANIFESTS)
    if o["kind"] == "CustomResourceDefinition"
)


@pytest.fixture(scope="module")
def own(request: pytest.FixtureRequest) -> Iterator[clusters.Cluster]:
    with clusterstate.own(request) as mine:
        yield mine


@pytest.fixture(scope="module")
def types(own: clusters.Cluster) -> list[str]:
    return clusterstate.resource_types(own)


def test_the_installed_wheel_reads_its_own_manifests(venv: Venv, tmp_path: Path) -> None:
    where = venv.run(
        str(venv.bin / "python"),
        "-c",
        "import smimesh, smimesh.kube.installing as i; print(smimesh.__file__); print(i.MANIFESTS)",
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    package, manifests = where.stdout.split()
    assert Path(package).is_relative_to(venv.root), package
    assert Path(manifests).is_relative_to(venv.root), manifests
    rendered = venv.run(str(venv.bin / "kubectl-smi"), "install", "--render", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert list(yaml.safe_load_all(rendered.stdout)) == kustomizing.render_builtin(SOURCE_MANIFESTS)


def test_install_from_the_wheel_then_uninstall_leaves_nothing(
    venv: Venv, own: clusters.Cluster, types: list[str], tmp_path: Path
) -> None:
    before = clusterstate.snapshot(own, types)
    smi = [str(venv.bin / "kubectl-smi")]
    kubeconfig = f"--kubeconfig={own.kubeconfig}"
    installed = venv.run(*smi, "install", kubeconfig, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    count = len(kustomizing.render_builtin(SOURCE_MANIFESTS))
    assert installed.stdout.splitlines()[-1].startswith(f"{count} objects applied")
    deployment = own.kubectl(
        "get", "deployment", names.OPERATOR_DEPLOYMENT, "-n", names.MESH_NAMESPACE, "-o", "json"
    )
    assert deployment.returncode == 0, deployment.stderr
    image = json.loads(deployment.stdout)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == installing.DEFAULT_IMAGE == f"{names.IMAGE_REPOSITORY}:0.1.0"

    # The operator's trust bundle in a meshed namespace, as it writes one.
    meshed = f"meshed-{uuid.uuid4().hex[:6]}"
    assert own.kubectl("create", "namespace", meshed).returncode == 0
    bundle = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names.TRUST_BUNDLE_CONFIGMAP,
            "namespace": meshed,
            "labels": {names.PART_OF_LABEL: names.PART_OF},
        },
        "data": {names.TRUST_BUNDLE_KEY: "not a real bundle"},
    }
    assert own.kubectl("apply", "-f", "-", input=json.dumps(bundle)).returncode == 0

    kept = venv.run(*smi, "uninstall", kubeconfig, cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    lines = kept.stdout.splitlines()
    # The operator's Deployment first (so it writes no bundle again), the bundles last.
    assert lines.index("✔ deployment/smimesh-system/smimesh-operator deleted") < lines.index(
        f"✔ namespace/{names.MESH_NAMESPACE} deleted"
    )
    assert lines[-1] == f"✔ configmap/{meshed}/{names.TRUST_BUNDLE_CONFIGMAP} deleted"
    clusterstate.assert_nothing_left(
        own, types, before, (names.MESH_NAMESPACE,), kept=CRDS | {f"Namespace//{meshed}"}
    )
    # --crds removes the CRDs too; what is already gone is said so, not an error.
    removed = venv.run(*smi, "uninstall", "--crds", kubeconfig, cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert "- deployment/smimesh-system/smimesh-operator: already gone" in removed.stdout
    assert "✔ customresourcedefinition/trafficsplits.split.smi-spec.io deleted" in removed.stdout
    clusterstate.assert_nothing_left(
        own, types, before, (names.MESH_NAMESPACE,), kept=frozenset({f"Namespace//{meshed}"})
    )
    assert own.kubectl("delete", "namespace", meshed, "--wait=false").returncode == 0


def _roll_out(cluster: clusters.Cluster, namespace: str) -> None:
    """What the Deployment controller writes once every replica is updated and available."""
    got = cluster.kubectl(
        "get", "deployment", names.OPERATOR_DEPLOYMENT, "-n", namespace, "-o", "json"
    )
    assert got.returncode == 0, got.stderr
    deployment = json.loads(got.stdout)
    replicas = deployment["spec"]["replicas"]
    status = {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }
    patched = cluster.kubectl(
        "patch", "deployment", names.OPERATOR_DEPLOYMENT, "-n", namespace,
        "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip
    assert patched.returncode == 0, patched.stderr


def test_install_image_and_wait_follow_the_rollout(own: clusters.Cluster, tmp_path: Path) -> None:
    namespace = f"mesh-{uuid.uuid4().hex[:6]}"
    image = "registry.example/smimesh/operator:test"
    argv = [*KUBECTL_SMI, "install", "-n", namespace, "--image", image, "--wait",
            "--timeout", "120", f"--kubeconfig={own.kubeconfig}"]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
        reader.start()
        if own.mode == "local":
            waiting.eventually_sync(
                lambda: any("waiting for deployment/" in line for line in lines),
                timeout=120,
                message="install never started waiting",
            )
            _roll_out(own, namespace)
        code = proc.wait(timeout=150)
        reader.join(timeout=10)
        assert code == 0, "".join(lines) + (proc.stderr.read() if proc.stderr else "")
    text = "".join(lines)
    assert f"waiting for deployment/{namespace}/{names.OPERATOR_DEPLOYMENT}" in text
    assert "  rolled out" in text
    got = own.kubectl(
        "get", "deployment", names.OPERATOR_DEPLOYMENT, "-n", namespace,
        "-o", "jsonpath={.spec.template.spec.containers[0].image}",
    )  # fmt: skip
    assert got.stdout == image
    removed = subprocess.run(
        [*KUBECTL_SMI, "uninstall", "-n", namespace, f"--kubeconfig={own.kubeconfig}"],
        capture_output=True, text=True, check=False, timeout=180,
    )  # fmt: skip
    assert removed.returncode == 0, removed.stderr


def test_wait_fails_clearly_when_the_rollout_does_not_come(own: clusters.Cluster) -> None:
    namespace = f"mesh-{uuid.uuid4().hex[:6]}"
    kubeconfig = f"--kubeconfig={own.kubeconfig}"
    # An image no node can pull: on a real node the Pod never becomes available either.
    argv = [*KUBECTL_SMI, "install", "-n", namespace, "--image", "nowhere.invalid/x:0",
            "--wait", "--timeout", "3", kubeconfig]  # fmt: skip
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=180)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"deployment {namespace}/smimesh-operator did not roll out in 3s" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        subprocess.run(
            [*KUBECTL_SMI, "uninstall", "-n", namespace, kubeconfig],
            capture_output=True, check=False, timeout=180,
        )  # fmt: skip
