"""Manifests: every workload kind's pod template is injected; Lists recurse; others pass."""

from __future__ import annotations

import copy
import re

import pytest

from smimesh.webhooks.injection import errors, settings, workloads

from .manifests import KINDS, SERVICE, pod_spec, workload

pytestmark = pytest.mark.fast

CONFIG = settings.InjectionSettings()


@pytest.mark.parametrize("kind", KINDS)
def test_every_workload_kind_gets_the_sidecar_in_its_pods(kind: str) -> None:
    document = workload(kind)
    injected, reports = workloads.inject_manifest(document, config=CONFIG)
    assert [str(report) for report in reports] == [f'{kind.lower()} "web" injected']
    spec = pod_spec(injected)
    assert [c["name"] for c in spec["initContainers"]] == ["smimesh-init", "smimesh-proxy"]
    assert spec["containers"][0]["readinessProbe"]["httpGet"]["port"] == 15020
    assert document == workload(kind), "the input is not changed"


@pytest.mark.parametrize("kind", KINDS)
def test_injecting_a_manifest_twice_is_injecting_it_once(kind: str) -> None:
    once, _ = workloads.inject_manifest(workload(kind), config=CONFIG)
    twice, reports = workloads.inject_manifest(once, config=CONFIG)
    assert twice == once
    assert reports[0].action == "skipped"
    assert "smimesh.dev/injected" in reports[0].detail


def test_an_opted_out_template_is_skipped_and_unchanged() -> None:
    document = workload("Deployment")
    document["spec"]["template"]["metadata"]["annotations"] = {"smimesh.dev/inject": "disabled"}
    injected, reports = workloads.inject_manifest(document, config=CONFIG)
    assert injected == document
    assert str(reports[0]) == ('deployment "web" skipped (annotation smimesh.dev/inject=disabled)')


def test_a_host_network_daemonset_is_skipped() -> None:
    document = workload("DaemonSet", hostNetwork=True)
    injected, reports = workloads.inject_manifest(document, config=CONFIG)
    assert injected == document
    assert reports[0].action == "skipped"
    assert "hostNetwork" in reports[0].detail


def test_objects_in_the_mesh_namespace_are_skipped() -> None:
    document = workload("Deployment")
    document["metadata"]["namespace"] = "smimesh-system"
    assert workloads.inject_manifest(document, config=CONFIG)[1][0].action == "skipped"


def test_other_kinds_pass_through_unchanged() -> None:
    injected, reports = workloads.inject_manifest(SERVICE, config=CONFIG)
    assert injected == SERVICE
    assert str(reports[0]) == 'service "web" passed through'


def test_a_list_is_injected_item_by_item() -> None:
    document = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [workload("Deployment"), copy.deepcopy(SERVICE), workload("Job", "batch")],
    }
    injected, reports = workloads.inject_manifest(document, config=CONFIG)
    assert [report.action for report in reports] == ["injected", "passed-through", "injected"]
    assert injected["items"][1] == SERVICE
    assert "initContainers" in pod_spec(injected["items"][2])


def test_a_workload_without_a_template_is_an_error() -> None:
    with pytest.raises(
        errors.InjectionError, match=re.escape('deployment "web" has no spec.template')
    ):
        workloads.inject_manifest(
            {"kind": "Deployment", "metadata": {"name": "web"}, "spec": {}}, config=CONFIG
        )
