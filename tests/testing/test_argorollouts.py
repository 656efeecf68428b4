"""`argorollouts`: the real controller starts on the session's cluster under its own
ServiceAccount and leaves no CRD or RBAC behind; a missing wrapper module, a failed build and
a controller that exits are each an `ArgoRolloutsError` that says what happened."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from smimesh.testing import argorollouts, clusters, gotools

CRDS = ("rollouts.argoproj.io", "analysistemplates.argoproj.io")
LEFT_BEHIND = (
    *(f"crd/{name}" for name in CRDS),
    "clusterrole/argo-rollouts",
    "clusterrolebinding/argo-rollouts",
    "serviceaccount/argo-rollouts",
)


def _established(cluster: clusters.Cluster, crd: str) -> str:
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
    done = cluster.kubectl("get", f"crd/{crd}", "-o", f"jsonpath={jsonpath}")
    assert done.returncode == 0, done.stderr
    return done.stdout


def _present(cluster: clusters.Cluster) -> list[str]:
    """Those of `LEFT_BEHIND` the cluster still has."""
    done = cluster.kubectl(
        "get", "-n", argorollouts.NAMESPACE, "--ignore-not-found", "-o", "name", *LEFT_BEHIND
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.cluster
def test_the_controller_runs_as_its_service_account_and_leaves_nothing_behind(
    cluster: clusters.Cluster, tmp_path: Path
) -> None:
    versions = ("v1alpha1", "v1alpha3")
    with argorollouts.running(cluster, tmp_path, traffic_split_api_versions=versions) as started:
        assert set(started) == set(versions)
        controller = started["v1alpha3"]
        controller.check()
        started["v1alpha1"].check()
        assert [_established(cluster, crd) for crd in CRDS] == ["True", "True"]
        whoami = subprocess.run(
            [cluster.kubectl_binary, f"--kubeconfig={tmp_path / 'kubeconfig'}", "auth", "whoami",
             "-o", "json"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert whoami.returncode == 0, whoami.stderr
        user = json.loads(whoami.stdout)["status"]["userInfo"]["username"]
        assert user == "system:serviceaccount:argo-rollouts:argo-rollouts"
        assert f"--kubeconfig={tmp_path / 'kubeconfig'}" in controller.argv
        # Two controllers: each owns the Rollouts labelled with its own instance id.
        assert "--traffic-split-api-version=v1alpha3" in controller.argv
        assert f"--instance-id={argorollouts.instance('v1alpha3')}" in controller.argv
        for version in versions:
            log = (tmp_path / version / "rollouts-controller.log").read_text()
            assert argorollouts.STARTED in log
            assert "forbidden" not in log.lower(), log[-2000:]
    assert _present(cluster) == []


@pytest.mark.cluster
def test_a_controller_that_exits_is_an_error_with_its_log_and_is_cleaned_up(
    cluster: clusters.Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMIMESH_CACHE", str(tmp_path / "cache"))
    fake = gotools.tool_path(argorollouts.CONTROLLER)
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho 'no such cluster'\nexit 3\n")
    fake.chmod(0o755)
    with (
        pytest.raises(argorollouts.ArgoRolloutsError, match=r"exited with code 3") as raised,
        argorollouts.running(cluster, tmp_path / "run"),
    ):
        pytest.fail("the controller cannot have started")
    assert "no such cluster" in str(raised.value)
    assert _present(cluster) == []


def test_a_failed_build_is_an_error_with_go_s_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMIMESH_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "go.mod").write_text("module broken\n\ngo 1.26\n")
    monkeypatch.setenv("SMIMESH_ARGO_ROLLOUTS_MODULE", str(broken))
    nowhere = clusters.Cluster("local", tmp_path / "kubeconfig", "kubectl")
    with (
        pytest.raises(argorollouts.ArgoRolloutsError, match=r"`go` failed .*\n.*no required"),
        argorollouts.running(nowhere, tmp_path / "run"),
    ):
        pytest.fail("nothing can have started")
    tools = gotools.tool_path(argorollouts.CONTROLLER).parent
    assert list(tools.iterdir()) == []  # no executable, no staging folder


@pytest.mark.fast
def test_a_missing_wrapper_module_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SMIMESH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SMIMESH_ARGO_ROLLOUTS_MODULE", str(tmp_path / "nowhere"))
    nowhere = clusters.Cluster("local", tmp_path / "kubeconfig", "kubectl")
    with (
        pytest.raises(argorollouts.ArgoRolloutsError, match=r"wrapper module .* not at .*nowhere"),
        argorollouts.running(nowhere, tmp_path / "run"),
    ):
        pytest.fail("nothing can have started")
    assert argorollouts.main() == 1
    assert "error: the Go wrapper module" in capsys.readouterr().err
