"""The test control plane is a real Kubernetes API: kubectl, the Python client, watches,
TokenRequest/TokenReview, RBAC and structural CRD validation all behave as on a cluster."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from kubernetes import client, watch

from smimesh.testing import clusters, controlplane

pytestmark = pytest.mark.cluster


def test_objects_created_with_kubectl_are_read_back_by_the_python_client(
    cluster: clusters.Cluster, api: client.ApiClient
) -> None:
    created = cluster.kubectl("create", "namespace", "made-by-kubectl")
    assert created.returncode == 0, created.stderr
    config_map = cluster.kubectl(
        "-n", "made-by-kubectl", "create", "configmap", "greeting", "--from-literal=hello=world"
    )
    assert config_map.returncode == 0, config_map.stderr

    core = client.CoreV1Api(api)
    assert core.read_namespace("made-by-kubectl").status.phase == "Active"
    read = core.read_namespaced_config_map("greeting", "made-by-kubectl")
    assert read.data == {"hello": "world"}


def test_a_watch_sees_an_update(
    cluster: clusters.Cluster, api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="watched"), data={"v": "1"})
    )
    seen: list[tuple[str, dict[str, str]]] = []
    stream = watch.Watch()

    def collect() -> None:
        for event in stream.stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=created.metadata.resource_version,
            timeout_seconds=30,
        ):
            seen.append((event["type"], event["object"].data))
            stream.stop()

    watcher = threading.Thread(target=collect)
    watcher.start()
    patched = cluster.kubectl(
        "-n", namespace, "patch", "configmap", "watched", "-p", '{"data":{"v":"2"}}'
    )
    assert patched.returncode == 0, patched.stderr
    watcher.join(timeout=30)
    assert seen == [("MODIFIED", {"v": "2"})]


def test_a_service_account_token_is_accepted_by_token_review(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="app"))
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=["smimesh"], expiration_seconds=600)
    )
    token = core.create_namespaced_service_account_token("app", namespace, request).status.token

    review = client.AuthenticationV1Api(api).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=["smimesh"]))
    )
    assert review.status.authenticated is True
    assert review.status.user.username == f"system:serviceaccount:{namespace}:app"

    wrong_audience = client.AuthenticationV1Api(api).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=["other"]))
    )
    assert not wrong_audience.status.authenticated


def test_rbac_denies_a_service_account_without_a_role(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec())
    ).status.token
    config = client.Configuration()
    config.host = api.configuration.host
    config.ssl_ca_cert = api.configuration.ssl_ca_cert
    config.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(config) as as_nobody, pytest.raises(client.ApiException) as denied:
        client.CoreV1Api(as_nobody).list_namespaced_config_map(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in str(denied.value.body)


_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.smimesh.dev"},
    "spec": {
        "group": "example.smimesh.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_a_structural_crd_rejects_a_bad_object_with_the_apiservers_message(
    cluster: clusters.Cluster, namespace: str
) -> None:
    applied = cluster.kubectl("apply", "-f", "-", input=json.dumps(_CRD))
    assert applied.returncode == 0, applied.stderr
    ready = cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.example.smimesh.dev"
    )
    assert ready.returncode == 0, ready.stderr

    def widget(size: object) -> str:
        return json.dumps(
            {
                "apiVersion": "example.smimesh.dev/v1",
                "kind": "Widget",
                "metadata": {"name": f"w{abs(hash(str(size)))}", "namespace": namespace},
                "spec": {"size": size},
            }
        )

    good = cluster.kubectl("create", "-f", "-", input=widget(3))
    assert good.returncode == 0, good.stderr
    bad = cluster.kubectl("create", "-f", "-", input=widget(0))
    assert bad.returncode != 0
    assert "spec.size" in bad.stderr
    assert "should be greater than or equal to 1" in bad.stderr


def test_the_aggregator_publishes_its_front_proxy_settings_for_aggregated_apis(
    api: client.ApiClient,
) -> None:
    published = client.CoreV1Api(api).read_namespaced_config_map(
        "extension-apiserver-authentication", "kube-system"
    )
    data = published.data
    assert "BEGIN CERTIFICATE" in data["requestheader-client-ca-file"]
    assert json.loads(data["requestheader-allowed-names"]) == ["front-proxy-client"]
    assert json.loads(data["requestheader-username-headers"]) == ["X-Remote-User"]
    assert json.loads(data["requestheader-group-headers"]) == ["X-Remote-Group"]
    assert json.loads(data["requestheader-extra-headers-prefix"]) == ["X-Remote-Extra-"]


def test_free_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [controlplane.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= port < low for port in ports), ports
    with socket.socket() as server:  # and it is free to bind right after
        server.bind(("127.0.0.1", controlplane.free_port()))
