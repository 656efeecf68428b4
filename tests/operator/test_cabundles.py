"""Planning the caBundle patches: idempotent, Service reference kept in a cluster, replaced by
the URL in local mode and restored afterwards; CRDs without webhook conversion left alone."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from smimesh.operator import cabundles

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = b"-----BEGIN CERTIFICATE-----\nroots\n-----END CERTIFICATE-----\n"
ENCODED = base64.b64encode(BUNDLE).decode()
SERVICE = {
    "namespace": "smimesh-system",
    "name": "smimesh-operator",
    "path": "/convert",
    "port": 443,
}


def _crd(client_config: dict[str, Any], strategy: str = "Webhook") -> dict[str, Any]:
    conversion: dict[str, Any] = {"strategy": strategy}
    if strategy == "Webhook":
        conversion["webhook"] = {"conversionReviewVersions": ["v1"], "clientConfig": client_config}
    return {"spec": {"conversion": conversion}}


def test_in_a_cluster_only_the_bundle_is_added_to_the_service_reference() -> None:
    patch = cabundles.crd_patch(_crd({"service": SERVICE}), cabundles.Endpoint(BUNDLE))
    assert patch == {
        "spec": {
            "conversion": {"webhook": {"clientConfig": {"service": SERVICE, "caBundle": ENCODED}}}
        }
    }


def test_a_current_crd_is_not_written_again() -> None:
    current = _crd({"service": SERVICE, "caBundle": ENCODED})
    assert cabundles.crd_patch(current, cabundles.Endpoint(BUNDLE)) is None


def test_local_mode_replaces_the_service_reference_with_the_url() -> None:
    endpoint = cabundles.Endpoint(BUNDLE, "https://127.0.0.1:9443/")
    patch = cabundles.crd_patch(_crd({"service": SERVICE}), endpoint)
    assert patch is not None
    assert patch["spec"]["conversion"]["webhook"]["clientConfig"] == {
        "url": "https://127.0.0.1:9443/convert",
        "caBundle": ENCODED,
        "service": None,
    }


def test_a_crd_converted_without_webhook_is_left_alone() -> None:
    assert cabundles.crd_patch(_crd({}, strategy="None"), cabundles.Endpoint(BUNDLE)) is None


def test_every_webhook_of_a_configuration_is_patched_behind_a_name_test() -> None:
    configuration = {
        "webhooks": [
            {"name": "a.smimesh.dev", "clientConfig": {"service": SERVICE}},
            {"name": "b.smimesh.dev", "clientConfig": {"service": SERVICE, "caBundle": ENCODED}},
        ]
    }
    endpoint = cabundles.Endpoint(BUNDLE, "https://127.0.0.1:9443")
    patch = cabundles.webhook_patch(configuration, endpoint, cabundles.MUTATE_PATH)
    assert patch == [
        {"op": "test", "path": "/webhooks/0/name", "value": "a.smimesh.dev"},
        {
            "op": "add",
            "path": "/webhooks/0/clientConfig",
            "value": {"url": "https://127.0.0.1:9443/mutate", "caBundle": ENCODED},
        },
        {"op": "test", "path": "/webhooks/1/name", "value": "b.smimesh.dev"},
        {
            "op": "add",
            "path": "/webhooks/1/clientConfig",
            "value": {"url": "https://127.0.0.1:9443/mutate", "caBundle": ENCODED},
        },
    ]
    in_cluster = cabundles.webhook_patch(configuration, cabundles.Endpoint(BUNDLE), "/mutate")
    assert in_cluster is not None
    assert [op["path"] for op in in_cluster] == ["/webhooks/0/name", "/webhooks/0/clientConfig"]


def test_leaving_local_mode_restores_the_service_reference() -> None:
    local = _crd({"url": "https://127.0.0.1:9443/convert", "caBundle": ENCODED})
    patch = cabundles.service_patch(local, "smimesh-system")
    assert patch == {
        "spec": {"conversion": {"webhook": {"clientConfig": {"url": None, "service": SERVICE}}}}
    }
    assert cabundles.service_patch(_crd({"service": SERVICE}), "smimesh-system") is None


def test_leaving_local_mode_restores_the_webhooks_service_references() -> None:
    configuration = {
        "webhooks": [
            {
                "name": "inject.smimesh.dev",
                "clientConfig": {"url": "https://127.0.0.1:9443/mutate", "caBundle": ENCODED},
            }
        ]
    }
    patch = cabundles.webhook_service_patch(configuration, "smimesh-system", "/mutate")
    assert patch == [
        {"op": "test", "path": "/webhooks/0/name", "value": "inject.smimesh.dev"},
        {
            "op": "add",
            "path": "/webhooks/0/clientConfig",
            "value": {"caBundle": ENCODED, "service": {**SERVICE, "path": "/mutate"}},
        },
    ]
    served = {"webhooks": [{"name": "a", "clientConfig": {"service": SERVICE}}]}
    assert cabundles.webhook_service_patch(served, "smimesh-system", "/mutate") is None


def test_the_crds_that_convert_are_those_with_several_versions() -> None:
    assert cabundles.conversion_crds() == (
        "trafficsplits.split.smi-spec.io",
        "traffictargets.access.smi-spec.io",
        "httproutegroups.specs.smi-spec.io",
        "tcproutes.specs.smi-spec.io",
    )


def test_rbac_lets_the_operator_patch_exactly_the_converting_crds() -> None:
    documents = yaml.safe_load_all(
        (ROOT / "smimesh" / "manifests" / "base" / "rbac.yaml").read_text()
    )
    role = next(d for d in documents if d["kind"] == "ClusterRole")
    patchable = [
        rule
        for rule in role["rules"]
        if "customresourcedefinitions" in rule["resources"] and "patch" in rule["verbs"]
    ]
    assert [sorted(rule["resourceNames"]) for rule in patchable] == [
        sorted(cabundles.conversion_crds())
    ]


def test_the_apiservice_gets_the_bundle_and_loses_any_insecure_skip() -> None:
    insecure = {"spec": {"service": SERVICE, "insecureSkipTLSVerify": True}}
    assert cabundles.apiservice_patch(insecure, cabundles.Endpoint(BUNDLE)) == {
        "spec": {"caBundle": ENCODED, "insecureSkipTLSVerify": None}
    }
    current = {"spec": {"service": SERVICE, "caBundle": ENCODED}}
    assert cabundles.apiservice_patch(current, cabundles.Endpoint(BUNDLE)) is None


def test_rbac_lets_the_operator_patch_only_its_own_apiservice() -> None:
    documents = yaml.safe_load_all(
        (ROOT / "smimesh" / "manifests" / "base" / "rbac.yaml").read_text()
    )
    role = next(d for d in documents if d["kind"] == "ClusterRole")
    [rule] = [r for r in role["rules"] if "apiservices" in r["resources"]]
    assert rule["resourceNames"] == [cabundles.APISERVICE]
    assert sorted(rule["verbs"]) == ["get", "patch"]
