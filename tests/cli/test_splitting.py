"""`kubectl smi split get|set` against the real apiserver: shares from the hub weights, the
Programmed condition, and writes that touch only `spec.backends`."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from smimesh.testing import clusters
from tests.cli.conftest import Run, run_smi

pytestmark = pytest.mark.cluster


def make_split(
    cluster: clusters.Cluster,
    namespace: str,
    name: str,
    weights: dict[str, Any],
    *,
    version: str = "v1alpha4",
    extra_spec: dict[str, Any] | None = None,
) -> None:
    body = {
        "apiVersion": f"split.smi-spec.io/{version}",
        "kind": "TrafficSplit",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": name},
            "annotations": {"owner": "flagger"},
        },
        "spec": {
            "service": name,
            "backends": [{"service": s, "weight": w} for s, w in weights.items()],
            **(extra_spec or {}),
        },
    }
    created = cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    assert created.returncode == 0, created.stderr


def write_conditions(
    cluster: clusters.Cluster,
    namespace: str,
    name: str,
    conditions: list[tuple[str, str, str, str]],
) -> None:
    """Conditions as `smimesh.operator.statuses` writes them, through the status subresource."""
    body = {
        "status": {
            "conditions": [
                {
                    "type": type_,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "observedGeneration": 1,
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
                for type_, status, reason, message in conditions
            ]
        }
    }
    patched = cluster.kubectl(
        "patch",
        "trafficsplits.v1alpha4.split.smi-spec.io",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(body),
    )
    assert patched.returncode == 0, patched.stderr


def read(cluster: clusters.Cluster, namespace: str, name: str) -> dict[str, Any]:
    got = cluster.kubectl(
        "get",
        "trafficsplits.v1alpha4.split.smi-spec.io",
        name,
        "-n",
        namespace,
        "-o",
        "json",
        "--show-managed-fields",
    )
    assert got.returncode == 0, got.stderr
    loaded: dict[str, Any] = json.loads(got.stdout)
    return loaded


def test_get_shows_exact_shares_and_the_programmed_condition(
    smi: Run, installed: clusters.Cluster, namespace: str
) -> None:
    make_split(installed, namespace, "web", {"web-v1": 2, "web-v2": 1})
    write_conditions(
        installed, namespace, "web", [("Programmed", "True", "Programmed", "every proxy ACKed")]
    )

    table = smi("split", "get", "-n", namespace)
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert ["web", "web", "web-v1", "2", "≈66.67%", "True", "Programmed"] in rows
    assert ["web", "web", "web-v2", "1", "≈33.33%", "True", "Programmed"] in rows

    data = json.loads(smi("split", "get", "web", "-n", namespace, "-o", "json").stdout)
    assert data["service"] == "web"
    assert [(b["service"], b["weight"], b["share"]) for b in data["backends"]] == [
        ("web-v1", 2, "2/3"),
        ("web-v2", 1, "1/3"),
    ]
    assert data["programmed"]["status"] == "True"
    assert data["storedAs"] == "split.smi-spec.io/v1alpha4"


def test_get_across_namespaces_names_the_namespace_and_yaml_parses(
    smi: Run, installed: clusters.Cluster, namespace: str
) -> None:
    make_split(installed, namespace, "api", {"api-v1": 0, "api-v2": 0})

    listed = smi("split", "get", "-A")
    assert listed.returncode == 0, listed.stderr
    assert [namespace, "api", "api", "api-v1", "0", "0%", "Unknown", "NoStatus"] in [
        line.split() for line in listed.stdout.splitlines()
    ]
    assert f"{namespace}/api: every weight is 0" in listed.stderr

    as_yaml = yaml.safe_load(smi("split", "get", "-A", "-o", "yaml").stdout)
    assert {"namespace": namespace, "name": "api"}.items() <= next(
        item for item in as_yaml if item["namespace"] == namespace
    ).items()


def test_get_of_a_missing_split_exits_1(
    smi: Run, installed: clusters.Cluster, namespace: str
) -> None:
    result = smi("split", "get", "nope", "-n", namespace)
    assert result.returncode == 1
    assert f"trafficsplit 'nope' not found in namespace '{namespace}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_namespace_and_all_namespaces_together_exit_2(smi: Run) -> None:
    result = smi("split", "get", "-n", "x", "-A")
    assert result.returncode == 2
    assert "exclude each other" in result.stderr


def test_set_changes_only_the_named_weights_and_nothing_else(
    smi: Run, installed: clusters.Cluster, namespace: str
) -> None:
    matches = {"matches": [{"kind": "HTTPRouteGroup", "name": "routes"}]}
    make_split(
        installed,
        namespace,
        "shop",
        {"shop-v1": 90, "shop-v2": 10, "shop-v3": 0},
        extra_spec=matches,
    )
    write_conditions(installed, namespace, "shop", [("Accepted", "True", "Accepted", "")])
    before = read(installed, namespace, "shop")

    result = smi("split", "set", "shop", "shop-v2=30", "shop-v3=10", "-n", namespace)
    assert result.returncode == 0, result.stderr
    assert "shop-v1=90 (69.23%)" not in result.stdout  # 90/130 is not exact
    assert "shop-v1=90 (≈69.23%)" in result.stdout

    after = read(installed, namespace, "shop")
    assert after["spec"]["backends"] == [
        {"service": "shop-v1", "weight": 90},
        {"service": "shop-v2", "weight": 30},
        {"service": "shop-v3", "weight": 10},
    ]
    assert after["spec"]["matches"] == before["spec"]["matches"]
    assert after["spec"]["service"] == "shop"
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert after["status"] == before["status"]
    managers = {m["manager"] for m in after["metadata"]["managedFields"]}
    assert "smimesh" in managers


def test_set_refuses_unknown_backends_and_negative_weights_with_exit_2(
    smi: Run, installed: clusters.Cluster, namespace: str
) -> None:
    make_split(installed, namespace, "pay", {"pay-v1": 1, "pay-v2": 1})
    before = read(installed, namespace, "pay")["spec"]

    unknown = smi("split", "set", "pay", "pay-v9=5", "-n", namespace)
    assert unknown.returncode == 2
    assert "has no backend 'pay-v9' (its backends: pay-v1, pay-v2)" in unknown.stderr
    negative = smi("split", "set", "pay", "pay-v1=-1", "-n", namespace)
    assert negative.returncode == 2
    assert "cannot be negative" in negative.stderr
    malformed = smi("split", "set", "pay", "pay-v1", "-n", namespace)
    assert malformed.returncode == 2
    fraction = smi("split", "set", "pay", "pay-v1=0.5", "-n", namespace)
    assert fraction.returncode == 2
    missing = smi("split", "set", "nope", "pay-v1=1", "-n", namespace)
    assert missing.returncode == 1

    assert read(installed, namespace, "pay")["spec"] == before
    for result in (unknown, negative, malformed, fraction, missing):
        assert "Traceback" not in result.stderr


@pytest.fixture
def unconverted_crds(installed: clusters.Cluster, smi: Run) -> Any:
    """The CRDs without conversion, so v1alpha1 objects can be written (no webhook runs yet);
    smimesh's own CRDs are put back afterwards."""
    crds = run_smi("crds", "--conversion", "None", "--stdout")
    assert crds.returncode == 0, crds.stderr
    # A replace, not an apply: an apply keeps the webhook fields other managers own, and the
    # apiserver refuses them beside `strategy: None`.
    replaced = installed.kubectl("replace", "-f", "-", input=crds.stdout)
    assert replaced.returncode == 0, replaced.stderr
    yield
    restored = smi("install")
    assert restored.returncode == 0, restored.stderr


@pytest.mark.usefixtures("unconverted_crds")
def test_v1alpha1_quantity_weights_keep_their_ratio_and_set_writes_v1alpha1(
    smi: Run, installed: clusters.Cluster, namespace: str
) -> None:
    # Argo Rollouts' default: v1alpha1 with Quantity weights. "1" and "500m" are 2:1.
    make_split(installed, namespace, "argo", {"stable": "1", "canary": "500m"}, version="v1alpha1")

    data = json.loads(smi("split", "get", "argo", "-n", namespace, "-o", "json").stdout)
    assert data["storedAs"] == "split.smi-spec.io/v1alpha1"
    assert [(b["weight"], b.get("written"), b["percent"]) for b in data["backends"]] == [
        (2, "1", "≈66.67%"),
        (1, "500m", "≈33.33%"),
    ]

    result = smi("split", "set", "argo", "canary=2", "-n", namespace)
    assert result.returncode == 0, result.stderr
    assert "stable=2 (50%), canary=2 (50%)" in result.stdout
    written = installed.kubectl(
        "get", "trafficsplits.v1alpha1.split.smi-spec.io", "argo", "-n", namespace, "-o", "json"
    )
    assert json.loads(written.stdout)["spec"]["backends"] == [
        {"service": "stable", "weight": 2},
        {"service": "canary", "weight": 2},
    ]
