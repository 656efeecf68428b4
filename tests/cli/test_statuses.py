"""`kubectl smi status`: every SMI object with the conditions the operator writes."""

from __future__ import annotations

import json

import pytest
import yaml

from smimesh.testing import clusters
from tests.cli.conftest import Run
from tests.cli.test_splitting import make_split, write_conditions

pytestmark = pytest.mark.cluster


def make_route_group(cluster: clusters.Cluster, namespace: str, name: str) -> None:
    body = {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"matches": [{"name": "all", "pathRegex": "/.*"}]},
    }
    created = cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    assert created.returncode == 0, created.stderr


def test_status_shows_each_objects_conditions_and_the_failing_reason(
    smi: Run, installed: clusters.Cluster, namespace: str
) -> None:
    make_split(installed, namespace, "web", {"web-v1": 1, "web-v2": 1})
    write_conditions(
        installed,
        namespace,
        "web",
        [
            ("Accepted", "True", "Accepted", ""),
            ("ResolvedRefs", "False", "BackendNotFound", "service web-v2 does not exist"),
            ("Programmed", "False", "Pending", "waiting for demo/web-1"),
        ],
    )
    make_route_group(installed, namespace, "routes")

    table = smi("status", "-n", namespace)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "KIND",
        "NAME",
        "ACCEPTED",
        "RESOLVEDREFS",
        "PROGRAMMED",
        "PROBLEMS",
    ]
    split_line = next(line for line in lines if line.startswith("TrafficSplit"))
    assert split_line.split()[:5] == ["TrafficSplit", "web", "True", "False", "False"]
    assert "ResolvedRefs: BackendNotFound (service web-v2 does not exist)" in split_line
    assert "Programmed: Pending (waiting for demo/web-1)" in split_line
    routes_line = next(line for line in lines if line.startswith("HTTPRouteGroup"))
    assert routes_line.split() == ["HTTPRouteGroup", "routes", "-", "-", "-"]

    data = json.loads(smi("status", "-n", namespace, "-o", "json").stdout)
    by_kind = {item["kind"]: item for item in data}
    assert [(c["type"], c["status"]) for c in by_kind["TrafficSplit"]["conditions"]] == [
        ("Accepted", "True"),
        ("ResolvedRefs", "False"),
        ("Programmed", "False"),
    ]
    assert by_kind["HTTPRouteGroup"]["conditions"] == []
    assert yaml.safe_load(smi("status", "-n", namespace, "-o", "yaml").stdout) == data


def test_status_across_namespaces_includes_this_namespace(
    smi: Run, installed: clusters.Cluster, namespace: str
) -> None:
    make_route_group(installed, namespace, "mine")
    result = smi("status", "-A")
    assert result.returncode == 0, result.stderr
    assert [namespace, "HTTPRouteGroup", "mine", "-", "-", "-"] in [
        line.split() for line in result.stdout.splitlines()
    ]


def test_an_empty_namespace_says_so_and_a_bad_format_exits_2(
    smi: Run, installed: clusters.Cluster, namespace: str
) -> None:
    empty = smi("status", "-n", namespace)
    assert empty.returncode == 0
    assert f"No SMI objects found in namespace {namespace}." in empty.stderr
    bad = smi("status", "-o", "xml")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
