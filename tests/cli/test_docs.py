"""The guides in docs/: every YAML block parses as Kubernetes objects, the SMI objects among
them pass `kubectl smi validate`, and the Flagger and Argo Rollouts manifests use what
smimesh supports (providers, the `osm_*` metrics the sidecar emits, the SMI router)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from smimesh.smi import kinds
from tests.cli.conftest import run_smi

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
SIDECAR_METRICS = Path(__file__).resolve().parents[2] / "smimesh" / "sidecar" / "metrics.py"


def blocks(name: str) -> list[list[dict[str, Any]]]:
    text = (DOCS / name).read_text()
    found = [list(yaml.safe_load_all(block)) for block in BLOCK.findall(text)]
    assert found, f"{name} has no YAML blocks"
    return found


def objects(name: str) -> list[dict[str, Any]]:
    return [d for block in blocks(name) for d in block if isinstance(d, dict) and "kind" in d]


GUIDES = sorted(path.name for path in DOCS.glob("*.md"))


@pytest.mark.parametrize("name", GUIDES)
def test_every_yaml_block_is_a_kubernetes_object_or_a_patch(name: str) -> None:
    text = (DOCS / name).read_text()
    for block in BLOCK.findall(text):
        for document in yaml.safe_load_all(block):
            assert isinstance(document, dict), block
            if "kind" in document:
                assert document.get("apiVersion"), document
                assert document.get("metadata", {}).get("name"), document
            else:  # a merge patch, as Argo Rollouts sends it
                assert set(document) == {"spec"}, document


@pytest.mark.parametrize("name", ["flagger.md", "argo-rollouts.md"])
def test_smi_objects_in_the_guides_are_valid(name: str, tmp_path: Path) -> None:
    groups = kinds.groups()
    smi = [o for o in objects(name) if o["apiVersion"].partition("/")[0] in groups]
    assert smi, f"{name} shows no SMI object"
    path = tmp_path / "smi.yaml"
    path.write_text(yaml.safe_dump_all(smi))
    result = run_smi("validate", "-f", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(smi)} valid, 0 invalid" in result.stdout


def test_the_flagger_canary_uses_an_smi_provider_and_our_metrics() -> None:
    found = objects("flagger.md")
    canary = next(o for o in found if o["kind"] == "Canary")
    assert canary["spec"]["provider"] in ("osm", "smi:v1alpha2")
    templates = {o["metadata"]["name"]: o for o in found if o["kind"] == "MetricTemplate"}
    referenced = {
        m["templateRef"]["name"]
        for m in canary["spec"]["analysis"]["metrics"]
        if "templateRef" in m
    }
    assert referenced == set(templates)
    queries = " ".join(t["spec"]["query"] for t in templates.values())
    emitted = SIDECAR_METRICS.read_text()
    for metric in ("osm_request_total", "osm_request_duration_ms"):
        assert metric in queries
        assert f'"{metric}"' in emitted  # the sidecar really exports this name
    for label in ("destination_namespace", "destination_kind", "destination_name", "side"):
        assert label in queries
    split = next(o for o in found if o["kind"] == "TrafficSplit")
    assert split["apiVersion"] == "split.smi-spec.io/v1alpha2"  # what provider osm writes


def test_the_argo_rollout_routes_through_an_smi_traffic_split() -> None:
    found = objects("argo-rollouts.md")
    rollout = next(o for o in found if o["kind"] == "Rollout")
    canary = rollout["spec"]["strategy"]["canary"]
    smi = canary["trafficRouting"]["smi"]
    split = next(o for o in found if o["kind"] == "TrafficSplit")
    assert smi["trafficSplitName"] == split["metadata"]["name"]
    assert split["apiVersion"] == "split.smi-spec.io/v1alpha1"  # Argo's default
    assert split["spec"]["service"] == smi["rootService"]
    services = {o["metadata"]["name"] for o in found if o["kind"] == "Service"}
    assert {smi["rootService"], canary["stableService"], canary["canaryService"]} <= services
    assert {b["service"] for b in split["spec"]["backends"]} == {
        canary["stableService"],
        canary["canaryService"],
    }
    analysis = next(o for o in found if o["kind"] == "AnalysisTemplate")
    assert "osm_request_total" in analysis["spec"]["metrics"][0]["provider"]["prometheus"]["query"]
