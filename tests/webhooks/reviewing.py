"""Review bodies as the apiserver sends them, for the builder tests."""

from __future__ import annotations

from typing import Any

SPLIT_V1ALPHA1: dict[str, Any] = {
    "apiVersion": "split.smi-spec.io/v1alpha1",
    "kind": "TrafficSplit",
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "uid": "6f1c",
        "resourceVersion": "42",
        "generation": 1,
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [
            {
                "manager": "flagger",
                "operation": "Update",
                "apiVersion": "split.smi-spec.io/v1alpha1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:backends": {}}},
            }
        ],
    },
    "spec": {
        "service": "web",
        "backends": [{"service": "web-v1", "weight": "500m"}, {"service": "web-v2", "weight": "1"}],
    },
}


def conversion(desired: str, *objects: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": "c0nv", "desiredAPIVersion": desired, "objects": list(objects)},
    }


def admission(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    source = obj or old or {}
    group, _, version = str(source.get("apiVersion", "v1")).rpartition("/")
    request: dict[str, Any] = {
        "uid": "4dm1",
        "kind": {"group": group, "version": version, "kind": source.get("kind", "")},
        "namespace": "shop",
        "operation": operation,
        "object": obj,
    }
    if old is not None:
        request["oldObject"] = old
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def split(backends: list[tuple[str, int]], version: str = "v1alpha4") -> dict[str, Any]:
    return {
        "apiVersion": f"split.smi-spec.io/{version}",
        "kind": "TrafficSplit",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "service": "web",
            "backends": [{"service": name, "weight": weight} for name, weight in backends],
        },
    }
