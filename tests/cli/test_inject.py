"""`kubectl smi inject` as users run it: a real subprocess, YAML out, reports on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from smimesh.testing import clusters
from tests.webhooks.injection.manifests import KINDS, SERVICE, pod_spec, workload

KUBECTL_SMI = Path(sys.executable).parent / "kubectl-smi"


def _run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBECTL_SMI), "inject", *args],
        input=input,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _write(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return path


def _proxy_names(document: dict[str, Any]) -> list[str]:
    spec = pod_spec(document)
    containers = [*spec.get("initContainers", []), *spec["containers"]]
    return [c["name"] for c in containers if c["name"].startswith("smimesh-")]


def test_a_deployment_file_comes_out_injected_with_a_report(tmp_path: Path) -> None:
    result = _run("-f", str(_write(tmp_path / "web.yaml", workload("Deployment"), SERVICE)))
    assert result.returncode == 0, result.stderr
    deployment, service = yaml.safe_load_all(result.stdout)
    assert _proxy_names(deployment) == ["smimesh-init", "smimesh-proxy"]
    assert service == SERVICE
    assert result.stderr.splitlines() == [
        'deployment "web" injected',
        'service "web" passed through',
        "1 of 2 objects injected",
    ]


def test_a_directory_of_every_kind_with_a_list_and_json(tmp_path: Path) -> None:
    for kind in KINDS:
        _write(tmp_path / f"{kind.lower()}.yaml", workload(kind, kind.lower()))
    (tmp_path / "nested").mkdir()
    items = {"apiVersion": "v1", "kind": "List", "items": [workload("Pod", "listed"), SERVICE]}
    (tmp_path / "nested" / "list.json").write_text(json.dumps(items), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a manifest", encoding="utf-8")
    result = _run("-f", str(tmp_path))
    assert result.returncode == 0, result.stderr
    documents = {document["kind"]: document for document in yaml.safe_load_all(result.stdout)}
    assert sorted(documents) == sorted([*KINDS, "List"])
    listed = documents.pop("List")
    for document in documents.values():
        assert _proxy_names(document) == ["smimesh-init", "smimesh-proxy"], document["kind"]
    assert _proxy_names(listed["items"][0]) == ["smimesh-init", "smimesh-proxy"]
    assert listed["items"][1] == SERVICE
    assert f"{len(KINDS) + 1} of {len(KINDS) + 2} objects injected" in result.stderr


def test_stdin_and_idempotency_injecting_the_output_again_changes_nothing() -> None:
    first = _run("-f", "-", input=yaml.safe_dump(workload("StatefulSet")))
    assert first.returncode == 0, first.stderr
    second = _run("-f", "-", input=first.stdout)
    assert second.returncode == 0, second.stderr
    assert list(yaml.safe_load_all(second.stdout)) == list(yaml.safe_load_all(first.stdout))
    assert 'statefulset "web" skipped (annotation smimesh.dev/injected is set)' in second.stderr


def test_opted_out_and_host_network_pods_are_left_alone() -> None:
    opted_out = workload("Deployment", "quiet")
    opted_out["spec"]["template"]["metadata"]["annotations"] = {"smimesh.dev/inject": "disabled"}
    host = workload("DaemonSet", "agent", hostNetwork=True)
    result = _run("-f", "-", input=yaml.safe_dump_all([opted_out, host]))
    assert result.returncode == 0, result.stderr
    assert list(yaml.safe_load_all(result.stdout)) == [opted_out, host]
    assert 'deployment "quiet" skipped (annotation smimesh.dev/inject=disabled)' in result.stderr
    assert 'daemonset "agent" skipped (hostNetwork pods' in result.stderr


def test_options_choose_classic_sidecars_cni_and_the_image() -> None:
    result = _run(
        "-f",
        "-",
        "--no-native-sidecars",
        "--cni",
        "--proxy-image",
        "registry.local/proxy:dev",
        input=yaml.safe_dump(workload("Pod")),
    )
    assert result.returncode == 0, result.stderr
    (pod,) = yaml.safe_load_all(result.stdout)
    assert "initContainers" not in pod["spec"]
    assert pod["spec"]["containers"][0]["image"] == "registry.local/proxy:dev"
    assert "lifecycle" in pod["spec"]["containers"][0]


def test_an_object_that_cannot_be_injected_exits_1_and_prints_nothing() -> None:
    bad = workload("Pod")
    bad["metadata"]["annotations"] = {"smimesh.dev/exclude-outbound-ports": "postgres"}
    result = _run("-f", "-", input=yaml.safe_dump_all([workload("Deployment"), bad]))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "<stdin>: document 2: annotation smimesh.dev/exclude-outbound-ports" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("kind: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "document 1 is not a Kubernetes object"),
        ("apiVersion: v1\nkind: Service\n---\nhello\n", "document 2 is not a Kubernetes object"),
    ],
)
def test_unreadable_input_exits_2_with_the_file_named(
    tmp_path: Path, content: str, says: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(content, encoding="utf-8")
    result = _run("-f", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"error: {path}: " in result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = _run("-f", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "absent.yaml: no such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_teaches_by_example() -> None:
    result = subprocess.run(
        [str(KUBECTL_SMI), "inject", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "Example: kubectl smi inject -f deploy.yaml | kubectl apply -f -" in result.stdout


@pytest.mark.cluster
def test_the_output_applies_to_a_real_apiserver(
    cluster: clusters.Cluster, namespace: str, tmp_path: Path
) -> None:
    created = cluster.kubectl("-n", namespace, "create", "serviceaccount", "web")
    assert created.returncode == 0, created.stderr
    _write(tmp_path / "all.yaml", *(workload(kind, kind.lower()) for kind in KINDS), SERVICE)
    injected = _run("-f", str(tmp_path / "all.yaml"))
    assert injected.returncode == 0, injected.stderr
    applied = cluster.kubectl("-n", namespace, "apply", "-f", "-", input=injected.stdout)
    assert applied.returncode == 0, applied.stderr
    stored = cluster.kubectl("-n", namespace, "get", "deployment", "deployment", "-o", "json")
    assert _proxy_names(json.loads(stored.stdout)) == ["smimesh-init", "smimesh-proxy"]
