"""Fixtures for the chart tests: the pinned helm (`smimesh.testing.helm`, built once and
cached), run with its own config, cache and data directories."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "smimesh"
Helm = Callable[..., subprocess.CompletedProcess[str]]

HELM_LABELS = frozenset(
    {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance",
     "app.kubernetes.io/version"}
)  # fmt: skip
"""What the chart adds to every object's metadata labels (never to selectors or templates)."""
HELM_ANNOTATIONS = frozenset({"helm.sh/resource-policy"})


def template(run_helm: Helm, *values: str) -> list[dict[str, Any]]:
    """`helm template smimesh CHART --set VALUES...` as objects."""
    sets = [arg for value in values for arg in ("--set", value)]
    result = run_helm("template", "smimesh", str(CHART), *sets)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


def normalized(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the labels and annotations Helm's chart adds (an empty map left
    by them removed, as the kustomization has none there)."""
    meta = dict(obj["metadata"])
    for field, added in (("labels", HELM_LABELS), ("annotations", HELM_ANNOTATIONS)):
        kept = {k: v for k, v in (meta.get(field) or {}).items() if k not in added}
        if kept:
            meta[field] = kept
        else:
            meta.pop(field, None)
    return {**obj, "metadata": meta}


def by_identity(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """`(kind, namespace, name)` -> object; two objects with one identity is a failure."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in found, f"{key} twice"
        found[key] = obj
    return found
