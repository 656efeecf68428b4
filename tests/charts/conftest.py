"""Fixtures for the chart tests: the pinned helm (`smimesh.testing.helm`, built once and
cached), run with its own config, cache and data directories."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from smimesh.testing import helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "smimesh"
Helm = Callable[..., subprocess.CompletedProcess[str]]

HELM_LABELS = frozenset(
    {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance",
     "app.kubernetes.io/version"}
)  # fmt: skip
"""What the chart adds to every object's metadata labels (never to selectors or templates)."""
HELM_ANNOTATIONS = frozenset({"helm.sh/resource-policy"})


@pytest.fixture(scope="session")
def run_helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """`helm ARGS`; the caller checks the return code."""
    executable = helm.ensure()
    home = tmp_path_factory.mktemp("helm")
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(executable), *args], capture_output=True, text=True, check=False,
            timeout=300, env=env,
        )  # fmt: skip

    return run


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
