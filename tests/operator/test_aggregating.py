"""The TrafficMetrics API through the real aggregator: a local mesh (operator process under its
own RBAC, workloads with sidecars), real requests between workloads, then `kubectl get --raw`
on the apiserver, which proxies to the operator with its front-proxy certificate. Directly,
without the aggregator's certificate, the operator refuses to say anything."""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from smimesh.conformance import stages
from smimesh.testing import apiservices, clusters, meshes
from tests.cli.conftest import run_smi

pytestmark = pytest.mark.cluster

API = "/apis/metrics.smi-spec.io/v1alpha1"
CALLS = 7


@dataclass
class Shop:
    mesh: meshes.LocalMesh
    namespace: str

    def get(self, path: str) -> dict[str, Any]:
        found = self.mesh.cluster.kubectl("get", "--raw", path)
        assert found.returncode == 0, found.stderr
        document: dict[str, Any] = json.loads(found.stdout)
        return document


@pytest.fixture(scope="module")
def shop(cluster: clusters.Cluster) -> Iterator[Shop]:
    """web-1 (app web) calls api-1 (app api, behind Service api) CALLS times."""
    with meshes.LocalMesh(cluster) as mesh:
        namespace = mesh.namespace(f"tm-{uuid.uuid4().hex[:6]}")
        mesh.service(namespace, "api", {"app": "api"})
        web = mesh.workload(namespace, "web-1", "web", {"app": "web"})
        mesh.workload(namespace, "api-1", "api", {"app": "api"})
        tally = stages.call(web, f"http://api.{namespace}.svc.cluster.local/echo", count=CALLS)
        assert (tally.ok, tally.failed) == (CALLS, 0)
        apiservices.wait_available(cluster)
        yield Shop(mesh, namespace)
        if mesh.operator is not None:
            print(f"--- operator log ---\n{mesh.operator.logs()[-5000:]}")


def values(document: dict[str, Any]) -> dict[str, str]:
    return {metric["name"]: metric["value"] for metric in document["metrics"]}


def test_discovery_lists_the_kinds_and_their_edges(shop: Shop) -> None:
    listed = shop.get(API)
    assert listed["kind"] == "APIResourceList"
    names = {resource["name"] for resource in listed["resources"]}
    assert {"pods", "pods/edges", "deployments", "namespaces", "namespaces/edges"} <= names
    # The aggregator merges it into the cluster's discovery (kubectl's aggregated /apis).
    shown = shop.mesh.cluster.kubectl(
        "api-resources", "--api-group=metrics.smi-spec.io", "-o", "name"
    )
    assert shown.returncode == 0, shown.stderr
    assert set(shown.stdout.split()) == {
        "deployments.metrics.smi-spec.io",
        "namespaces.metrics.smi-spec.io",
        "pods.metrics.smi-spec.io",
    }


def test_a_pod_reports_exactly_the_requests_it_answered_and_their_latency(shop: Shop) -> None:
    got = shop.get(f"{API}/namespaces/{shop.namespace}/pods/api-1")
    assert got["kind"] == "TrafficMetrics"
    assert got["resource"] == {"kind": "Pod", "name": "api-1", "namespace": shop.namespace}
    assert got["edge"] == {"direction": "from", "side": "server"}
    assert got["window"].endswith("s")
    found = values(got)
    assert (found["success_count"], found["failure_count"]) == (str(CALLS), "0")
    latency = next(m for m in got["metrics"] if m["name"] == "p99_response_latency")
    assert latency["unit"] == "seconds"
    assert latency["value"] not in ("", "0")


def test_a_list_has_every_meshed_pod_of_the_namespace(shop: Shop) -> None:
    listed = shop.get(f"{API}/namespaces/{shop.namespace}/pods")
    assert listed["kind"] == "TrafficMetricsList"
    assert listed["resource"] == {"kind": "Pod", "namespace": shop.namespace}
    counts = {item["resource"]["name"]: values(item)["success_count"] for item in listed["items"]}
    assert counts == {"api-1": str(CALLS), "web-1": "0"}
    selected = shop.get(f"{API}/namespaces/{shop.namespace}/pods?labelSelector=app%3Dweb")
    assert [item["resource"]["name"] for item in selected["items"]] == ["web-1"]


def test_edges_show_the_caller_and_the_callee(shop: Shop) -> None:
    callee = shop.get(f"{API}/namespaces/{shop.namespace}/pods/api-1/edges")
    [edge] = callee["items"]
    assert edge["edge"]["direction"] == "from"
    assert edge["edge"]["side"] == "server"
    assert edge["edge"]["resource"] == {"kind": "Pod", "name": "web-1", "namespace": shop.namespace}
    assert values(edge)["success_count"] == str(CALLS)

    caller = shop.get(f"{API}/namespaces/{shop.namespace}/pods/web-1/edges")
    [edge] = caller["items"]
    assert (edge["edge"]["direction"], edge["edge"]["side"]) == ("to", "client")
    assert edge["edge"]["resource"]["name"] == "api-1"
    assert values(edge)["success_count"] == str(CALLS)


def test_deployments_and_namespaces_sum_their_pods(shop: Shop) -> None:
    deployment = shop.get(f"{API}/namespaces/{shop.namespace}/deployments/api")
    assert values(deployment)["success_count"] == str(CALLS)
    namespace = shop.get(f"{API}/namespaces/{shop.namespace}")
    assert namespace["resource"] == {"kind": "Namespace", "name": shop.namespace}
    assert values(namespace)["success_count"] == str(CALLS)


def test_an_unknown_pod_is_not_found(shop: Shop) -> None:
    missing = shop.mesh.cluster.kubectl(
        "get", "--raw", f"{API}/namespaces/{shop.namespace}/pods/nope"
    )
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr
    assert f'pods "nope" not found in namespace "{shop.namespace}"' in missing.stderr


def _direct(shop: Shop, **kwargs: Any) -> httpx.Response:
    """A request to the operator itself, bypassing the aggregator (the mesh CA verifies it)."""
    assert shop.mesh.operator is not None
    assert shop.mesh.operator.webhook_address is not None
    context = ssl.create_default_context(cadata=shop.mesh.bundle.decode())
    if "cert" in kwargs:
        context.load_cert_chain(*kwargs.pop("cert"))
    url = f"https://{shop.mesh.operator.webhook_address}{API}/namespaces/{shop.namespace}/pods"
    return httpx.get(url, verify=context, timeout=10, trust_env=False, **kwargs)


def test_a_caller_without_the_front_proxy_certificate_is_refused(shop: Shop) -> None:
    spoofed = _direct(shop, headers={"X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
    assert spoofed.status_code == 401
    assert spoofed.json()["reason"] == "Unauthorized"
    assert "items" not in spoofed.json()


def test_the_front_proxy_user_is_authorized_by_subject_access_review(shop: Shop) -> None:
    if shop.mesh.cluster.mode != "local":
        pytest.skip("needs the local control plane's front-proxy client certificate")
    pki = shop.mesh.cluster.kubeconfig.parent / "pki"
    cert = (str(pki / "front-proxy-client.crt"), str(pki / "front-proxy-client.key"))
    denied = _direct(shop, cert=cert, headers={"X-Remote-User": "nobody"})
    assert denied.status_code == 403
    assert "cannot list it" in denied.json()["message"]
    allowed = _direct(
        shop, cert=cert, headers={"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}
    )
    assert allowed.status_code == 200
    assert allowed.json()["kind"] == "TrafficMetricsList"


def test_kubectl_smi_stat_reads_the_api_through_the_apiserver(shop: Shop) -> None:
    kubeconfig = f"--kubeconfig={shop.mesh.cluster.kubeconfig}"
    shown = run_smi("stat", "--from-api", "-n", shop.namespace, "-o", "json", kubeconfig)
    assert shown.returncode == 0, shown.stderr
    pods = {row["pod"]: row for row in json.loads(shown.stdout)["pods"]}
    assert set(pods) == {"api-1", "web-1"}
    assert (pods["api-1"]["success"], pods["api-1"]["failure"]) == (CALLS, 0)
    assert pods["api-1"]["successRate"] == 1.0
    assert pods["api-1"]["p99Ms"] > 0
    assert pods["web-1"]["successRate"] is None
    table = run_smi("stat", "--from-api", "-n", shop.namespace, kubeconfig)
    assert table.returncode == 0, table.stderr
    [api_row] = [line.split() for line in table.stdout.splitlines() if "api-1" in line]
    assert api_row[:3] == ["api-1", "100.00%", str(CALLS)]


def test_stat_from_the_api_says_what_is_wrong_while_the_operator_is_unreachable(
    shop: Shop,
) -> None:
    operator = shop.mesh.operator
    assert operator is not None
    assert operator.webhook_address is not None
    with shop.mesh.cluster.api_client() as api:
        apiservices.unregister(api)
        try:
            shown = run_smi(
                "stat",
                "--from-api",
                "-n",
                shop.namespace,
                f"--kubeconfig={shop.mesh.cluster.kubeconfig}",
            )
        finally:
            apiservices.register(api, operator.webhook_address)
    assert shown.returncode == 1
    assert "the TrafficMetrics API answered 503" in shown.stderr
    assert "kubectl get apiservice v1alpha1.metrics.smi-spec.io" in shown.stderr
    assert "Traceback" not in shown.stderr
