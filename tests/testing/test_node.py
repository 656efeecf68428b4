"""The real test node runs real Pods: Ready, logs and exec through the apiserver, Pod IPs
reachable from the host, Deployments rolled out by kube-controller-manager, projected
ServiceAccount tokens that TokenReview accepts, iptables in a Pod's namespace (and never in
the host's), ClusterIP Services through kube-proxy (hairpin too) and cluster DNS that answers
cluster names only. One node per session (`node_cluster`, tests/conftest.py)."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest
from kubernetes import client

from smimesh._aio import waiting
from smimesh.testing import clusters, nodechecks, nodenetwork, nodes
from tests.testing import nodepods

pytestmark = pytest.mark.node


def test_the_node_is_ready_at_its_internal_ip(
    node_cluster: nodes.NodeCluster, node_api: clusters.Cluster
) -> None:
    found = nodepods.read(node_api, "default", "node", nodes.NODE_NAME)
    conditions = {c["type"]: c["status"] for c in found["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    addresses = {a["type"]: a["address"] for a in found["status"]["addresses"]}
    assert addresses["InternalIP"] == node_cluster.network.node_address


def test_a_pod_runs_and_its_log_is_read_through_the_apiserver(
    node_api: clusters.Cluster, node_namespace: str
) -> None:
    started = time.monotonic()
    nodepods.apply(
        node_api, node_namespace, nodepods.pod("talker", "echo hello-from-a-pod; sleep infinity")
    )
    nodepods.running(node_api, node_namespace, "talker")
    print(f"pod running in {time.monotonic() - started:.1f}s")
    logs = node_api.kubectl("logs", "-n", node_namespace, "talker")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.strip() == "hello-from-a-pod"


def test_kubectl_exec_runs_in_the_pods_container(
    node_api: clusters.Cluster, node_namespace: str
) -> None:
    nodepods.apply(node_api, node_namespace, nodepods.pod("shell", "sleep infinity"))
    nodepods.running(node_api, node_namespace, "shell")
    assert nodepods.exec_in(node_api, node_namespace, "shell", "hostname").strip() == "shell"


def test_the_host_reaches_a_pod_ip(node_api: clusters.Cluster, node_namespace: str) -> None:
    nodepods.apply(node_api, node_namespace, nodepods.pod("web", nodepods.server()))
    found = nodepods.running(node_api, node_namespace, "web")
    address = found["status"]["podIP"]
    assert address.startswith(nodenetwork.POD_CIDR.rsplit(".", 2)[0])

    def served() -> str | None:
        try:
            return httpx.get(f"http://{address}:8080/", timeout=2).text.strip()
        except httpx.TransportError:
            return None

    assert waiting.eventually_sync(served, timeout=20, message="the Pod IP did not answer") == "web"


def test_a_deployment_is_rolled_out_by_the_controller_manager(
    node_api: clusters.Cluster, node_namespace: str
) -> None:
    template = nodepods.pod("rolled", "sleep infinity")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "rolled"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "rolled"}},
            "template": {"metadata": template["metadata"], "spec": template["spec"]},
        },
    }
    nodepods.apply(node_api, node_namespace, deployment)
    rollout = node_api.kubectl(
        "rollout", "status", "-n", node_namespace, "deployment/rolled", "--timeout=90s"
    )
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr
    status = nodepods.read(node_api, node_namespace, "deployment", "rolled")["status"]
    assert status["readyReplicas"] == 2


def test_the_projected_token_is_mounted_and_accepted_by_token_review(
    node_cluster: nodes.NodeCluster, node_api: clusters.Cluster, node_namespace: str
) -> None:
    nodepods.apply(node_api, node_namespace, nodepods.pod("bearer", "sleep infinity"))
    found = nodepods.running(node_api, node_namespace, "bearer")
    token = nodepods.exec_in(
        node_api,
        node_namespace,
        "bearer",
        "cat /var/run/secrets/kubernetes.io/serviceaccount/token",
    ).strip()
    with node_api.api_client() as api:
        review = client.AuthenticationV1Api(api).create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
        )
    assert review.status.authenticated, review.status.error
    assert review.status.user.username == f"system:serviceaccount:{node_namespace}:default"
    assert review.status.user.extra["authentication.kubernetes.io/pod-uid"] == [
        found["metadata"]["uid"]
    ]


def test_an_init_container_with_net_admin_writes_iptables_in_the_pods_namespace_only(
    node_api: clusters.Cluster, node_namespace: str
) -> None:
    rules = (
        "iptables -t nat -N SMIMESH_PROBE && "
        "iptables -t nat -A OUTPUT -p tcp --dport 9 -j SMIMESH_PROBE"
    )
    init = nodepods.container(
        "intercept", rules, securityContext={"capabilities": {"add": ["NET_ADMIN"]}}
    )
    spec = nodepods.pod("intercepted", "sleep infinity", initContainers=[init])
    spec["spec"]["containers"][0]["securityContext"] = {"capabilities": {"add": ["NET_ADMIN"]}}
    nodepods.apply(node_api, node_namespace, spec)
    nodepods.running(node_api, node_namespace, "intercepted")
    inside = nodepods.exec_in(node_api, node_namespace, "intercepted", "iptables -t nat -S")
    assert "-A OUTPUT -p tcp -m tcp --dport 9 -j SMIMESH_PROBE" in inside
    host = nodechecks.host_nat_rules()
    assert "SMIMESH_PROBE" not in host
    assert nodechecks.leaked_chains(host) == []


def test_a_cluster_ip_service_reaches_its_pod_from_another_pod_and_from_itself(
    node_api: clusters.Cluster, node_namespace: str
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    nodepods.apply(
        node_api,
        node_namespace,
        service,
        nodepods.pod("echo", nodepods.server()),
        nodepods.pod("caller", "sleep infinity"),
    )
    nodepods.running(node_api, node_namespace, "echo")
    nodepods.running(node_api, node_namespace, "caller")
    address = nodepods.read(node_api, node_namespace, "service", "echo")["spec"]["clusterIP"]

    def through_the_service(pod: str) -> str | None:
        done = node_api.kubectl(
            "exec",
            "-n",
            node_namespace,
            pod,
            "--",
            "curl",
            "-sS",
            "--max-time",
            "2",
            f"http://{address}/",
        )
        return done.stdout.strip() if done.returncode == 0 else None

    for caller in ("caller", "echo"):  # "echo" calls its own Service: hairpin
        reply = waiting.eventually_sync(
            lambda caller=caller: through_the_service(caller),
            timeout=30,
            message=f"{caller} did not reach the Service {address}",
            interval=0.5,
        )
        assert reply == "echo"


def test_cluster_dns_resolves_service_names_and_nothing_outside(
    node_cluster: nodes.NodeCluster, node_api: clusters.Cluster, node_namespace: str
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "named"},
        "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]},
    }
    nodepods.apply(node_api, node_namespace, service, nodepods.pod("resolver", "sleep infinity"))
    nodepods.running(node_api, node_namespace, "resolver")
    address = nodepods.read(node_api, node_namespace, "service", "named")["spec"]["clusterIP"]
    short = nodepods.exec_in(node_api, node_namespace, "resolver", "getent hosts named")
    assert short.split()[0] == address
    full = nodepods.exec_in(
        node_api,
        node_namespace,
        "resolver",
        f"getent hosts named.{node_namespace}.svc.cluster.local",
    )
    assert full.split()[0] == address
    outside = node_api.kubectl(
        "exec", "-n", node_namespace, "resolver", "--", "getent", "hosts", "deb.debian.org"
    )
    assert outside.returncode != 0
    assert outside.stdout == ""
    refused = 5
    assert nodes.dns_query(node_cluster.network.node_address, "deb.debian.org") == (refused, False)


def test_the_nodes_namespace_has_no_route_off_the_machine(node_cluster: nodes.NodeCluster) -> None:
    """Asked of the routing table only: no packet is sent."""
    netns = node_cluster.network.name
    routes = subprocess.run(["ip", "-n", netns, "route", "show", "default"], capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert routes.stdout == ""
    lookup = subprocess.run(["ip", "-n", netns, "route", "get", "192.0.2.1"], capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert lookup.returncode != 0
    assert "unreachable" in lookup.stderr
