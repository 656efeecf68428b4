"""The guides in docs/: every YAML block parses as Kubernetes objects, the SMI objects among
them pass `kubectl smi validate`, and the Flagger and Argo Rollouts manifests use what
smimesh supports (providers, the `osm_*` metrics the sidecar emits, the SMI router); every
command the README names answers `--help` with an example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from smimesh.proxyconfig import workloads
from smimesh.sidecar import metrics
from smimesh.smi import kinds
from tests.cli.conftest import run_smi
from tests.guides import BLOCK, objects

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
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


def _emitted_series() -> dict[str, set[str]]:
    """What a sidecar's /metrics shows after one request: series name -> its label names."""
    telemetry = metrics.Telemetry()
    telemetry.request(
        "inbound",
        workloads.Workload.of_pod("test", "client-1", "Deployment", "client"),
        workloads.Workload.of_pod("test", "podinfo-1", "Deployment", "podinfo"),
        200,
        3.0,
    )
    series: dict[str, set[str]] = {}
    for line in telemetry.render().decode().splitlines():
        if line and not line.startswith("#"):
            name, _, labels = line.partition("{")
            found = {pair.split("=")[0] for pair in labels.split("}")[0].split(",") if pair}
            series.setdefault(name, set()).update(found)
    return series


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
    emitted = _emitted_series()
    series = ("osm_request_total", "osm_request_duration_ms_bucket")
    for metric in series:
        assert metric.removesuffix("_bucket") in queries
        assert metric in emitted  # the sidecar really exports this series
    for label in ("destination_namespace", "destination_kind", "destination_name", "side"):
        assert label in queries
        assert all(label in emitted[metric] for metric in series), label
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


def readme_commands() -> list[str]:
    """The commands the README lists for `kubectl smi` ("`install`, `uninstall`, ...,
    `split get|set`, ..."), each alternative spelled out."""
    text = (ROOT / "README.md").read_text()
    listed = text[text.index("finds the plugin:") : text.index("Every command")]
    commands = []
    for quoted in re.findall(r"`([a-z][a-z |]*)`", listed):
        head, _, tails = quoted.rpartition(" ")
        commands += [f"{head} {tail}".strip() for tail in tails.split("|")]
    return commands


def test_the_readme_names_the_commands_of_the_plugin() -> None:
    listed = readme_commands()
    assert {"install", "split get", "split set", "ca rotate", "proxy config", "demo"} <= set(listed)
    help_text = run_smi("--help").stdout
    for command in {c.split()[0] for c in listed}:
        assert re.search(rf"^\W*{command}\b", help_text, re.MULTILINE), command


@pytest.mark.parametrize("command", readme_commands())
def test_every_command_the_readme_names_answers_help_with_an_example(command: str) -> None:
    result = run_smi(*command.split(), "--help")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Usage:" in result.stdout
    example = result.stdout.partition("Example")[2]  # "Example:" or "Examples:"
    assert re.search(rf"(kubectl smi|smimesh) {command}\b", example), result.stdout
