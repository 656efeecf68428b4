"""smimesh on real Pods (issue #17, item 4): the image built here is imported into the node's
containerd, `kubectl smi install --image --wait` puts the operator in as a Deployment, and a
labelled namespace's Pods are injected by the webhook, intercepted by the init container's
iptables rules, get their token, certificate and config from the operator through its
Service's DNS name, pass their (rewritten) probes, and a client Pod's plain `curl` reaches a
Service through both sidecars over mTLS; in strict mode plaintext is refused and
TrafficTargets decide. Uses the session's node (`node_cluster`, tests/conftest.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smimesh._aio import waiting
from smimesh.conformance import running
from smimesh.kube import names
from smimesh.testing import clusters
from tests.testing import nodepods

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def meshed(node_api: clusters.Cluster, mesh_on_node: str) -> Iterator[str]:
    """A namespace labelled for injection with a `web` Deployment + Service and a `client`
    Pod, each with its own ServiceAccount, created at once as a user would."""
    namespace = f"meshed-{os.urandom(4).hex()}"
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": namespace, "labels": {names.NAMESPACE_MESH_LABEL: "enabled"}}},
        _account(namespace, "web"),
        _account(namespace, "client"),
        _web(namespace),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
         "spec": {"selector": {"app": "web"},
                  "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                             "appProtocol": "http"}]}},
        {**nodepods.pod("client", "exec sleep infinity", serviceAccountName="client"),
         "metadata": {"name": "client", "namespace": namespace, "labels": {"app": "client"}}},
    ]  # fmt: skip
    started = time.monotonic()
    nodepods.apply(node_api, namespace, *objects)
    nodepods.running(node_api, namespace, "client")
    _rolled_out(node_api, namespace, "web")
    print(f"meshed pods ready in {time.monotonic() - started:.1f}s")
    yield namespace
    node_api.kubectl("delete", "namespace", namespace, "--wait=false")


def _account(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace}}  # fmt: skip


def _web(namespace: str) -> dict[str, Any]:
    template = nodepods.pod("web", nodepods.server(8080), serviceAccountName="web")
    main = template["spec"]["containers"][0]
    main["ports"] = [{"name": "http", "containerPort": 8080}]
    main["readinessProbe"] = {"httpGet": {"path": "/index.html", "port": 8080},
                              "periodSeconds": 2}  # fmt: skip
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": template["metadata"], "spec": template["spec"]}},
    }  # fmt: skip


def _rolled_out(cluster: clusters.Cluster, namespace: str, name: str) -> None:
    done = cluster.kubectl("rollout", "status", "-n", namespace, f"deployment/{name}",
                           f"--timeout={int(nodepods.TIMEOUT)}s")  # fmt: skip
    assert done.returncode == 0, (
        done.stdout
        + done.stderr
        + cluster.kubectl("describe", "-n", namespace, "pods").stdout[-3000:]
    )


def _web_pod(cluster: clusters.Cluster, namespace: str) -> dict[str, Any]:
    done = cluster.kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "json")
    assert done.returncode == 0, done.stderr
    pods: list[dict[str, Any]] = json.loads(done.stdout)["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def _curl(cluster: clusters.Cluster, namespace: str, url: str) -> tuple[int, str]:
    """The client's plain curl: (status, body)."""
    out = nodepods.exec_in(cluster, namespace, "client",
                           f"curl -sS -m 5 -w '\\n%{{http_code}}' {url}")  # fmt: skip
    body, _, status = out.rpartition("\n")
    return int(status), body


def _metrics(pod: dict[str, Any]) -> str:
    """The sidecar's Prometheus page, scraped from the host at the Pod IP as Prometheus does."""
    url = f"http://{pod['status']['podIP']}:{names.SIDECAR_METRICS_PORT}/metrics"
    return httpx.get(url, timeout=5).text


def test_the_operator_runs_as_a_deployment_of_the_built_image(
    node_api: clusters.Cluster, mesh_on_node: str
) -> None:
    found = nodepods.read(node_api, names.MESH_NAMESPACE, "deployment", names.OPERATOR_SERVICE)
    assert found["status"].get("availableReplicas") == 1
    assert found["spec"]["template"]["spec"]["containers"][0]["image"] == mesh_on_node
    checked = nodepods.smi(node_api, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_meshed_pods_are_injected_and_pass_their_rewritten_probes(
    node_api: clusters.Cluster, meshed: str
) -> None:
    pod = _web_pod(node_api, meshed)
    init = {c["name"]: c for c in pod["spec"]["initContainers"]}
    assert set(init) == {names.INIT_CONTAINER, names.PROXY_CONTAINER}
    assert init[names.PROXY_CONTAINER]["restartPolicy"] == "Always"  # a native sidecar
    statuses = {s["name"]: s for s in pod["status"]["initContainerStatuses"]}
    assert statuses[names.INIT_CONTAINER]["state"]["terminated"]["exitCode"] == 0
    assert statuses[names.PROXY_CONTAINER]["ready"] is True
    # kubelet's probe of the app goes to the proxy's probe port, which asks the app.
    probe = pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["port"] == names.SIDECAR_PROBE_PORT, probe
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    logs = node_api.kubectl("logs", "-n", meshed, pod["metadata"]["name"],
                            "-c", names.INIT_CONTAINER).stdout  # fmt: skip
    assert "iptables rules written" in logs, logs


def test_a_plain_curl_goes_through_both_sidecars_over_mtls(
    node_api: clusters.Cluster, meshed: str
) -> None:
    web = _web_pod(node_api, meshed)
    for url in ("http://web/index.html", f"http://web.{meshed}.svc.cluster.local/index.html"):
        status, body = _curl(node_api, meshed, url)
        assert (status, body.strip()) == (200, web["metadata"]["name"]), url
    client_pod = nodepods.read(node_api, meshed, "pod", "client")
    client_side = _metrics(client_pod)
    server_side = _metrics(web)
    # The server's sidecar names the caller from the certificate it verified (no header is
    # trusted for it): the request came over mTLS with the client's ServiceAccount identity.
    assert _has_sample(client_side, side="client", source_name="client", destination_name="web")
    assert _has_sample(server_side, side="server", source_name="client", destination_name="web")


def test_strict_mode_refuses_plaintext_and_traffic_targets_decide(
    node_api: clusters.Cluster, meshed: str
) -> None:
    done = node_api.kubectl("annotate", "namespace", meshed, "--overwrite",
                            f"{names.NAMESPACE_ACCESS_ANNOTATION}=strict")  # fmt: skip
    assert done.returncode == 0, done.stderr
    nodepods.apply(node_api, meshed,
        {"apiVersion": "specs.smi-spec.io/v1alpha4", "kind": "HTTPRouteGroup",
         "metadata": {"name": "web-routes"},
         "spec": {"matches": [{"name": "index", "pathRegex": "/index\\.html",
                               "methods": ["GET"]}]}},
        {"apiVersion": "access.smi-spec.io/v1alpha3", "kind": "TrafficTarget",
         "metadata": {"name": "client-to-web"},
         "spec": {"destination": {"kind": "ServiceAccount", "name": "web", "namespace": meshed},
                  "rules": [{"kind": "HTTPRouteGroup", "name": "web-routes",
                             "matches": ["index"]}],
                  "sources": [{"kind": "ServiceAccount", "name": "client",
                               "namespace": meshed}]}},
    )  # fmt: skip

    def decided() -> tuple[int, int] | None:
        allowed = _curl(node_api, meshed, "http://web/index.html")[0]
        denied = _curl(node_api, meshed, "http://web/elsewhere")[0]
        return (allowed, denied) if (allowed, denied) == (200, 403) else None

    waiting.eventually_sync(decided, timeout=30, interval=0.5,
                            message="the TrafficTarget was not enforced")  # fmt: skip
    # The host is no workload of the mesh: its plaintext to the app's port is intercepted by
    # the Pod's rules and refused by the sidecar.
    address = _web_pod(node_api, meshed)["status"]["podIP"]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{address}:8080/index.html", timeout=5)


def _has_sample(page: str, **labels: str) -> bool:
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return any(
        line.startswith("osm_request_total{") and all(w in line for w in wanted)
        and not line.rstrip().endswith(" 0.0")
        for line in page.splitlines()
    )  # fmt: skip


def test_the_conformance_suite_passes_on_real_pods(
    node_api: clusters.Cluster, mesh_on_node: str, tmp_path: Path
) -> None:
    """`smimesh conformance run --target current --mesh smimesh`, as a user grades a cluster:
    the test app as injected Pods of the image, every case, its report (docs/conformance-node.md
    is one such run)."""
    report = tmp_path / "conformance.md"
    smimesh_cli = Path(sys.executable).with_name("smimesh")
    env = nodepods.plugin_env(node_api)
    started = time.monotonic()
    done = subprocess.run(
        [str(smimesh_cli), "conformance", "run", "--target", "current", "--mesh", "smimesh",
         "--image", mesh_on_node, "--report", str(report)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    print(f"conformance on real Pods in {time.monotonic() - started:.1f}s")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    every = len(running.select([]))
    assert f"{every} passed, 0 failed, 0 error, 0 skipped" in done.stdout, done.stdout[-2000:]
    assert report.read_text().count("✔ passed") == every


DEMO_STEP = re.compile(r"weights\s+(\d+)/(\d+): v1\s+(\d+)%\s+v2\s+(\d+)%\s+\(failed (\d+)\)")


def test_the_demo_walks_a_canary_on_real_pods() -> None:
    """`smimesh demo --cluster node`, as a user runs it from a checkout: a node of its own (on
    another link and Pod CIDR than the session's), the image, the install, three injected
    Pods, and every weight's share measured. 200 requests a step: one standard deviation is at
    most 3.5 points, so each share is asserted within 12 points of its weight."""
    env = {**os.environ, "SMIMESH_NODE_LINK": "10.79.0.12/30", "SMIMESH_POD_CIDR": "10.244.20.0/24"}
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("smimesh")), "demo", "--cluster", "node",
         "--requests", "200"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    print(f"demo on real Pods in {time.monotonic() - started:.1f}s")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    steps = [tuple(int(g) for g in m.groups()) for m in DEMO_STEP.finditer(done.stdout)]
    assert [(w1, w2) for w1, w2, *_ in steps] == [(100, 0), (90, 10), (75, 25), (50, 50),
                                                  (25, 75), (0, 100)], done.stdout  # fmt: skip
    for w1, w2, got1, got2, failed in steps:
        assert failed == 0, done.stdout
        assert abs(got1 - w1) <= 12, (w1, w2, got1, got2)
        assert abs(got2 - w2) <= 12, (w1, w2, got1, got2)
    assert "nothing left running" in " ".join(done.stdout.split())  # rich wraps its lines
