"""The local node runs a Pod nobody else would on the local control plane: binds it, starts
its command on an address of its own, reports it Ready at that podIP only once it answers,
serves it through the apiserver's pod proxy, and stops it when the Pod is deleted; a Pod it
cannot run is reported Failed with the reason, and others' images are left alone. (Meshed
Pods, with our sidecar, are covered by tests/conformance/test_current.py.)"""

from __future__ import annotations

import socket
import sys

import pytest
from kubernetes import client

from smimesh._aio import waiting
from smimesh.conformance import apps
from smimesh.testing import kubelet

pytestmark = pytest.mark.cluster

IMAGE = "registry.example/smimesh:test"


def _pod(name: str, image: str = IMAGE, program: str = "smimesh") -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="app",
                    image=image,
                    command=[program, "conformance", "app"],
                    env=[
                        client.V1EnvVar(name="PORT", value="8080"),
                        client.V1EnvVar(name="CONTROL_PORT", value="9090"),
                        client.V1EnvVar(
                            name="SMIMESH_WORKLOAD",
                            value_from=client.V1EnvVarSource(
                                field_ref=client.V1ObjectFieldSelector(field_path="metadata.name")
                            ),
                        ),
                    ],
                    ports=[client.V1ContainerPort(container_port=9090)],
                )
            ]
        ),
    )


def test_a_pod_of_the_image_runs_is_served_by_the_pod_proxy_and_stops_when_deleted(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    try:
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
        )
    except client.ApiException as exc:
        if exc.status != 409:  # SMIMESH_CLUSTER=node: kube-controller-manager made it
            raise
    with kubelet.LocalNode(
        api,
        image=IMAGE,
        config_server="",
        trust_bundle=b"",
        namespaces=[namespace],
        say=lambda message: print(message, file=sys.stderr),
    ) as node:
        core.create_namespaced_pod(namespace, _pod("runs"))
        core.create_namespaced_pod(namespace, _pod("other", image="nginx:1.27"))
        core.create_namespaced_pod(namespace, _pod("broken", program="no-such-program"))

        def ready() -> bool:
            pod = core.read_namespaced_pod("runs", namespace)
            conditions = {c.type: c.status for c in (pod.status.conditions or [])}
            return conditions.get("Ready") == "True"

        waiting.eventually_sync(
            ready, message="never: the Pod is Ready", timeout=60, interval=0.2, error=AssertionError
        )
        pod = core.read_namespaced_pod("runs", namespace)
        assert pod.spec.node_name == node.name
        address = pod.status.pod_ip
        assert address.startswith("10.77.")
        metrics = apps.PodApp(api, namespace, "runs").request("GET", "/metrics", timeout=10)
        assert metrics["name"] == "runs"  # the downward API filled SMIMESH_WORKLOAD
        assert core.read_namespaced_pod("other", namespace).spec.node_name is None
        waiting.eventually_sync(
            lambda: core.read_namespaced_pod("broken", namespace).status.phase == "Failed",
            message="never: the Pod whose program is missing is reported Failed",
            timeout=60,
            interval=0.2,
            error=AssertionError,
        )
        assert "'no-such-program' is not installed" in (
            core.read_namespaced_pod("broken", namespace).status.message
        )

        core.delete_namespaced_pod("runs", namespace)

        def gone() -> bool:
            names = [p.metadata.name for p in core.list_namespaced_pod(namespace).items]
            return "runs" not in names

        waiting.eventually_sync(
            gone,
            message="never: the deleted Pod is finalized by its node",
            timeout=60,
            interval=0.2,
            error=AssertionError,
        )

        def closed() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex((address, 9090)) != 0

        waiting.eventually_sync(
            closed,
            message="never: the Pod's process stopped",
            timeout=60,
            interval=0.2,
            error=AssertionError,
        )
    assert list(node.failures.values()) == [
        "PlanError: 'no-such-program' is not installed on this node"
    ]
