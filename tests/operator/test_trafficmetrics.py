"""TrafficMetrics from sidecar scrapes: the sidecars' own Telemetry renders the text (the real
exposition), `smimesh.telemetry` parses it, and the objects validate as SMI models."""

from __future__ import annotations

import datetime

import pytest

from smimesh.operator import trafficmetrics
from smimesh.proxyconfig import workloads
from smimesh.sidecar import metrics
from smimesh.smi import documents
from smimesh.telemetry import trafficstats

pytestmark = pytest.mark.fast

WEB = workloads.Workload("shop", "Deployment", "web", "web-1")
API1 = workloads.Workload("shop", "Deployment", "api", "api-1")
API2 = workloads.Workload("shop", "Deployment", "api", "api-2")
DB = workloads.Workload("data", "Deployment", "db", "db-1")
UNMESHED = workloads.Workload()
NOW = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)


def sidecar(pod: workloads.Workload, telemetry: metrics.Telemetry) -> trafficmetrics.Sidecar:
    text = telemetry.render().decode()
    return trafficmetrics.Sidecar(
        pod.namespace, pod.pod, trafficstats.parse(text), started=NOW.timestamp() - 90
    )


def shop() -> list[trafficmetrics.Sidecar]:
    """web-1 calls api-1 (30 ok, 10 failed) and api-2 (5 ok); api-1 calls db-1 twice; an
    unmeshed client calls api-1 three times."""
    web, api1, api2 = metrics.Telemetry(), metrics.Telemetry(), metrics.Telemetry()
    for _ in range(30):
        web.request("client", WEB, API1, 200, 3.0)
        api1.request("server", WEB, API1, 200, 3.0)
    for _ in range(10):
        web.request("client", WEB, API1, 503, 40.0)
        api1.request("server", WEB, API1, 503, 40.0)
    for _ in range(5):
        web.request("client", WEB, API2, 200, 1.0)
        api2.request("server", WEB, API2, 200, 1.0)
    for _ in range(2):
        api1.request("client", API1, DB, 200, 7.0)
    for _ in range(3):
        api1.request("server", UNMESHED, API1, 200, 1.0)
    return [sidecar(WEB, web), sidecar(API1, api1), sidecar(API2, api2)]


def values(found: list[dict[str, str]]) -> dict[str, str]:
    return {m["name"]: m["value"] for m in found}


def test_a_pod_reports_what_it_received_from_every_caller() -> None:
    target = trafficmetrics.Target("Pod", "api-1", "shop")
    wire = trafficmetrics.traffic_metrics(target, shop(), now=NOW).to_wire()
    assert wire["resource"] == {"kind": "Pod", "name": "api-1", "namespace": "shop"}
    assert wire["edge"] == {"direction": "from", "side": "server"}
    assert wire["metadata"] == {
        "name": "api-1",
        "namespace": "shop",
        "creationTimestamp": "2026-11-25T12:00:00Z",
    }
    assert wire["window"] == "90s"
    found = values(wire["metrics"])
    assert (found["success_count"], found["failure_count"]) == ("33", "10")
    # 43 requests, 3 of them within 1 ms: p50 (rank 21.5) is in the (2, 5] ms bucket of 30.
    assert found["p50_response_latency"] == f"{round((2 + 3 * (21.5 - 3) / 30) * 1000)}u"
    assert found["p99_response_latency"].endswith(("m", "u"))
    assert [m["unit"] for m in wire["metrics"][:3]] == ["seconds"] * 3


def test_a_deployment_sums_its_pods_and_a_namespace_sums_everything_in_it() -> None:
    sidecars = shop()
    api = trafficmetrics.traffic_metrics(
        trafficmetrics.Target("Deployment", "api", "shop"), sidecars, now=NOW
    )
    assert values(api.to_wire()["metrics"])["success_count"] == "38"
    namespace = trafficmetrics.traffic_metrics(
        trafficmetrics.Target("Namespace", "shop"), sidecars, now=NOW
    ).to_wire()
    assert "namespace" not in namespace["metadata"]
    assert values(namespace["metrics"])["success_count"] == "38"
    assert trafficmetrics.deployments("shop", sidecars) == [
        trafficmetrics.Target("Deployment", "api", "shop"),
        trafficmetrics.Target("Deployment", "web", "shop"),
    ]


def test_edges_name_callers_and_destinations_and_leave_out_anonymous_callers() -> None:
    listed = trafficmetrics.edge_list(
        trafficmetrics.Target("Pod", "api-1", "shop"), shop(), now=NOW
    ).to_wire()
    assert listed["kind"] == "TrafficMetricsList"
    assert listed["resource"] == {"kind": "Pod", "name": "api-1", "namespace": "shop"}
    edges = [
        (item["edge"]["direction"], item["edge"]["side"], item["edge"]["resource"]["name"])
        for item in listed["items"]
    ]
    assert edges == [("from", "server", "web-1"), ("to", "client", "db-1")]
    web_edge, db_edge = listed["items"]
    assert values(web_edge["metrics"])["success_count"] == "30"
    assert values(web_edge["metrics"])["failure_count"] == "10"
    assert values(db_edge["metrics"])["success_count"] == "2"
    assert db_edge["edge"]["resource"] == {"kind": "Pod", "name": "db-1", "namespace": "data"}


def test_deployment_edges_are_between_deployments() -> None:
    listed = trafficmetrics.edge_list(
        trafficmetrics.Target("Deployment", "web", "shop"), shop(), now=NOW
    ).to_wire()
    assert [
        (i["edge"]["direction"], i["edge"]["resource"], values(i["metrics"])["success_count"])
        for i in listed["items"]
    ] == [("to", {"kind": "Deployment", "name": "api", "namespace": "shop"}, "35")]


def test_a_resource_without_traffic_has_counts_but_no_latency() -> None:
    wire = trafficmetrics.traffic_metrics(
        trafficmetrics.Target("Pod", "idle-1", "shop"), shop(), now=NOW
    ).to_wire()
    assert values(wire["metrics"]) == {"success_count": "0", "failure_count": "0"}


def test_a_list_has_one_item_per_target_in_order_and_parses_as_smi() -> None:
    targets = [trafficmetrics.Target("Pod", name, "shop") for name in ("web-1", "api-2")]
    listed = trafficmetrics.traffic_metrics_list("Pod", "shop", targets, shop(), now=NOW)
    wire = listed.to_wire()
    assert wire["resource"] == {"kind": "Pod", "namespace": "shop"}
    assert [item["resource"]["name"] for item in wire["items"]] == ["api-2", "web-1"]
    assert [values(item["metrics"])["success_count"] for item in wire["items"]] == ["5", "0"]
    parsed = documents.parse(wire)
    assert (parsed.kind, parsed.problems) == ("TrafficMetricsList", ())
    assert parsed.obj is not None


def test_latencies_are_quantities_of_seconds_to_the_microsecond() -> None:
    assert trafficmetrics.seconds(10.0) == "10m"
    assert trafficmetrics.seconds(3.25) == "3250u"
    assert trafficmetrics.seconds(0.0) == "0"
    assert trafficmetrics.window([], NOW) is None
