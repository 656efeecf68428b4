"""The workload labels both sides of the metrics speak: the sidecar that writes them and
telemetry that reads them back use this one type (`smimesh.proxyconfig.workloads`)."""

from __future__ import annotations

import pytest

from smimesh.proxyconfig import workloads
from smimesh.sidecar import metrics
from smimesh.telemetry import trafficstats

pytestmark = pytest.mark.fast

NS = "shop"


def test_a_deployments_pod_is_reported_as_its_deployment() -> None:
    assert workloads.Workload.of_pod(NS, "web-6f9c8d7b5c-abc12") == workloads.Workload(
        NS, "Deployment", "web", "web-6f9c8d7b5c-abc12"
    )
    assert workloads.Workload.of_pod(NS, "db-0") == workloads.Workload(NS, "Pod", "db-0", "db-0")


def test_the_client_headers_give_the_server_side_the_callers_pod() -> None:
    me = workloads.Workload.of_pod(NS, "web-6f9c8d7b5c-abc12")
    headers = {name.decode(): value.decode() for name, value in me.headers()}
    assert {name.encode() for name in headers} == workloads.STATS_HEADERS
    verified = workloads.Workload(NS, "ServiceAccount", "web")
    assert workloads.Workload.from_headers(headers, verified) == me


def test_owner_drops_the_pod_and_str_names_the_workload() -> None:
    pod = workloads.Workload(NS, "Deployment", "web", "web-1")
    assert pod.owner == workloads.Workload(NS, "Deployment", "web")
    assert str(pod) == "shop/deployment/web"
    assert str(workloads.Workload(NS, "Service", "api")) == "shop/svc/api"
    assert str(workloads.Workload()) == "(unknown)"


def test_what_the_sidecar_writes_telemetry_reads_as_the_same_workloads() -> None:
    source = workloads.Workload.of_pod(NS, "web-6f9c8d7b5c-abc12")
    destination = workloads.Workload.of_pod(NS, "api-7d4b9c6f8d-xyz12")
    telemetry = metrics.Telemetry()
    telemetry.request("server", source, destination, 200, 3.0)
    (key,) = trafficstats.parse(telemetry.render().decode())
    assert (key.source, key.destination) == (source, destination)
    assert type(key.source) is workloads.Workload
