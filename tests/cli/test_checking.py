"""`kubectl smi check [--pre]`: the check catalog against the real apiserver, each state of
the operator's Lease and Deployment, webhook trust, text and JSON output, exit codes."""

from __future__ import annotations

import datetime
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smimesh.testing import clusters
from tests.cli.conftest import Run, run_smi

pytestmark = pytest.mark.cluster


def outcomes(result: Any) -> dict[str, dict[str, str]]:
    report = json.loads(result.stdout)
    return {check["description"]: check for check in report["checks"]}


def apply(cluster: clusters.Cluster, body: dict[str, Any]) -> None:
    applied = cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    assert applied.returncode == 0, applied.stderr


def lease(cluster: clusters.Cluster, namespace: str, *, age: float) -> None:
    """The operator's Lease, as `smimesh.operator.leading` writes it, renewed `age` s ago."""
    renewed = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=age)
    stamp = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    apply(
        cluster,
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "smimesh-operator", "namespace": namespace},
            "spec": {
                "holderIdentity": "operator-0",
                "leaseDurationSeconds": 15,
                "acquireTime": stamp,
                "renewTime": stamp,
            },
        },
    )


def deployment(cluster: clusters.Cluster, namespace: str) -> None:
    """An operator Deployment; no controller-manager runs here, so it never becomes ready."""
    labels = {"app.kubernetes.io/name": "smimesh-operator"}
    apply(
        cluster,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "smimesh-operator", "namespace": namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "operator", "image": "smimesh:test"}]},
                },
            },
        },
    )


def test_pre_checks_pass_for_an_admin(smi: Run) -> None:
    result = smi("check", "--pre", "-o", "json")
    assert result.returncode == 0, result.stdout
    found = outcomes(result)
    assert found["can create customresourcedefinitions"]["status"] == "ok"
    assert found["can create deployments in the mesh namespace"]["status"] == "ok"
    assert {check["group"] for check in found.values()} == {"kubernetes-api", "pre-installation"}


def test_pre_checks_fail_with_a_hint_for_a_user_without_rights(
    smi: Run, cluster: clusters.Cluster, namespace: str, tmp_path: Path
) -> None:
    created = cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    assert created.returncode == 0, created.stderr
    kubeconfig = cluster.kubeconfig_for(namespace, "nobody", tmp_path / "nobody.kubeconfig")
    result = run_smi("check", "--pre", f"--kubeconfig={kubeconfig}")
    assert result.returncode == 1, result.stdout
    assert "✖ can create customresourcedefinitions" in result.stdout
    assert "hint: installing needs cluster-admin rights" in result.stdout
    assert "some checks failed ✖" in result.stdout


def test_a_fresh_lease_and_no_deployment_mean_an_operator_outside_the_cluster(
    smi: Run, installed: clusters.Cluster, namespace: str
) -> None:
    lease(installed, namespace, age=1)
    found = outcomes(smi("check", "-n", namespace, "-o", "json"))

    assert found["can reach the Kubernetes API"]["status"] == "ok"
    for crd in ("trafficsplits.split.smi-spec.io", "httproutegroups.specs.smi-spec.io"):
        check = found[f"CRD {crd} is installed and serves every version"]
        assert check["status"] == "ok"
        assert "stores v1alpha4" in check["detail"]
    assert found["the mesh namespace exists"]["status"] == "ok"
    assert found["an operator holds the leader Lease"] == {
        "group": "smimesh-operator",
        "description": "an operator holds the leader Lease",
        "status": "ok",
        "detail": "held by operator-0",
        "hint": "",
    }
    assert found["the leader renews its Lease"]["status"] == "ok"
    assert found["the operator Deployment is ready"]["status"] == "skip"


def test_a_stale_lease_fails_and_exits_1(
    smi: Run, installed: clusters.Cluster, namespace: str
) -> None:
    lease(installed, namespace, age=120)
    result = smi("check", "-n", namespace)
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if "renews its Lease" in line)
    assert re.fullmatch(
        r"✖ the leader renews its Lease \(operator-0 last renewed it 12\ds ago "
        r"\(it expires after 15s\)\)",
        line,
    ), line
    assert "hint: the leader stopped or cannot reach the API" in result.stdout


def test_an_unready_deployment_warns_while_a_leader_runs_elsewhere_and_fails_without(
    smi: Run, installed: clusters.Cluster, namespace: str
) -> None:
    deployment(installed, namespace)
    lease(installed, namespace, age=1)
    found = outcomes(smi("check", "-n", namespace, "-o", "json"))
    assert found["the operator Deployment is ready"]["status"] == "warn"
    assert "runs elsewhere" in found["the operator Deployment is ready"]["detail"]
    assert found["the operator Service exists (webhooks :443, config :15010)"]["status"] == "fail"

    lease(installed, namespace, age=300)
    found = outcomes(smi("check", "-n", namespace, "-o", "json"))
    assert found["the operator Deployment is ready"]["status"] == "fail"
    assert found["the operator Deployment is ready"]["detail"] == "0/2 replicas ready"


def test_a_missing_namespace_and_lease_fail(smi: Run, installed: clusters.Cluster) -> None:
    result = smi("check", "-n", f"absent-{uuid.uuid4().hex[:6]}", "-o", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["success"] is False
    found = {check["description"]: check for check in report["checks"]}
    assert found["the mesh namespace exists"]["status"] == "fail"
    assert found["an operator holds the leader Lease"]["status"] == "fail"
    assert found["the leader renews its Lease"]["status"] == "skip"


@pytest.fixture
def untrusted_webhook(installed: clusters.Cluster) -> Iterator[str]:
    """A smimesh-labelled webhook configuration without a caBundle, matching no real
    resource and ignored on failure, so it cannot disturb other tests."""
    name = f"smimesh-test-{uuid.uuid4().hex[:6]}"
    apply(
        installed,
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "smimesh"}},
            "webhooks": [
                {
                    "name": "nothing.smimesh.dev",
                    "clientConfig": {"url": "https://127.0.0.1:1/validate"},
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": ["example.invalid"],
                            "apiVersions": ["v1"],
                            "resources": ["nothings"],
                        }
                    ],
                    "failurePolicy": "Ignore",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                }
            ],
        },
    )
    yield name
    installed.kubectl("delete", "validatingwebhookconfiguration", name)


def test_a_webhook_without_a_ca_bundle_fails(
    smi: Run, untrusted_webhook: str, namespace: str
) -> None:
    found = outcomes(smi("check", "-n", namespace, "-o", "json"))
    assert found["webhook configurations are installed"]["status"] == "ok"
    assert untrusted_webhook in found["webhook configurations are installed"]["detail"]
    trusted = found["every webhook has a caBundle"]
    assert trusted["status"] == "fail"
    assert f"{untrusted_webhook}/nothing.smimesh.dev" in trusted["detail"]
    assert trusted["hint"]
