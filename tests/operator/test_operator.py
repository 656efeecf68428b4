"""The operator end to end: real apiserver, the operator as a process under its own RBAC,
real gRPC proxies. Cluster state goes in with kubectl; configs, status and Events come out."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from smimesh._aio import waiting
from smimesh.testing import clusters
from smimesh.testing.meshes import OperatorProcess
from tests.operator.scenarios import (
    apply,
    connect,
    kubectl,
    next_with,
    patch_weights,
    route_weights,
    service,
    split,
    wait_conditions,
)

pytestmark = pytest.mark.cluster


def test_a_proxy_gets_its_config_and_every_weight_change(
    mesh_installed: clusters.Cluster, canary: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    cluster, namespace = mesh_installed, canary
    apply(cluster, split(namespace, "canary", "root", {"v1": 90, "v2": 10}))
    operator = start_operator()
    proxy = connect(cluster, operator, namespace)
    try:
        first = next_with(proxy, lambda c: route_weights(c, "root") == {"v1": 90, "v2": 10})
        assert first.identity == f"spiffe://cluster.local/ns/{namespace}/sa/client"
        root = next(
            s
            for s in first.outbound
            if (s.service.namespace, s.service.name) == (namespace, "root")
        )
        assert sorted(e.address for e in root.endpoints) == ["10.20.0.2", "10.20.0.3"]
        wait_conditions(
            cluster,
            namespace,
            "canary",
            {"Accepted": "True", "ResolvedRefs": "True", "Programmed": "True"},
            generation=1,
        )

        # Argo Rollouts' write: a merge patch of spec.backends.
        patch_weights(cluster, namespace, "canary", {"v1": 50, "v2": 50})
        second = next_with(proxy, lambda c: route_weights(c, "root") == {"v1": 50, "v2": 50})
        assert second.version != first.version
        wait_conditions(cluster, namespace, "canary", {"Programmed": "True"}, generation=2)
    finally:
        proxy.close()

    # The operator never wrote spec: its only field manager on the object is for status.
    raw = json.loads(
        kubectl(
            cluster,
            "-n",
            namespace,
            "get",
            "trafficsplits.v1alpha4.split.smi-spec.io",
            "canary",
            "-o",
            "json",
            "--show-managed-fields",
        )
    )
    for entry in raw["metadata"]["managedFields"]:
        if entry.get("subresource") != "status":
            assert "f:spec" not in json.dumps(entry.get("fieldsV1", {})) or entry[
                "manager"
            ].startswith("kubectl")


def test_a_second_split_on_the_same_root_is_refused_with_a_warning_event(
    mesh_installed: clusters.Cluster, canary: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    cluster, namespace = mesh_installed, canary
    apply(cluster, split(namespace, "first", "root", {"v1": 100, "v2": 0}))
    time.sleep(1.1)  # creationTimestamp has one-second resolution
    apply(cluster, split(namespace, "second", "root", {"v1": 0, "v2": 100}))
    operator = start_operator()
    proxy = connect(cluster, operator, namespace)
    try:
        config = next_with(proxy, lambda c: bool(route_weights(c, "root")))
        assert route_weights(config, "root") == {"v1": 100, "v2": 0}
    finally:
        proxy.close()
    loser = wait_conditions(cluster, namespace, "second", {"Accepted": "False"})
    assert loser["Accepted"]["reason"] == "Conflict"
    assert f"{namespace}/first" in loser["Accepted"]["message"]
    wait_conditions(cluster, namespace, "first", {"Accepted": "True"})
    events: list[dict[str, Any]] = []

    def conflict_warnings() -> list[dict[str, Any]]:
        nonlocal events
        events = json.loads(kubectl(cluster, "-n", namespace, "get", "events", "-o", "json"))[
            "items"
        ]
        # Programmed=False (Pending) is a Warning too, and Events come in no set order.
        return [
            e
            for e in events
            if e["involvedObject"]["name"] == "second"
            and e["type"] == "Warning"
            and e["reason"] == "Conflict"
        ]

    warnings = waiting.eventually_sync(
        conflict_warnings, timeout=20, message=lambda: str(events), interval=0.2
    )
    assert warnings[0]["reason"] == "Conflict"


def test_proxies_must_prove_their_identity(
    mesh_installed: clusters.Cluster, canary: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    cluster, namespace = mesh_installed, canary
    operator = start_operator()
    wrong_audience = connect(cluster, operator, namespace, token=cluster.token(namespace, "client"))
    assert wrong_audience.wait_for_error().code() == grpc.StatusCode.UNAUTHENTICATED
    wrong_audience.close()
    impostor = connect(
        cluster,
        operator,
        namespace,
        pod="v1-1",
        service_account="backend",
        token=cluster.token(namespace, "client", audience="smimesh"),
    )
    error = impostor.wait_for_error()
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "claims" in (error.details() or "")
    impostor.close()


def test_a_proxy_may_claim_only_the_pod_its_token_is_bound_to(
    mesh_installed: clusters.Cluster, canary: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    cluster, namespace = mesh_installed, canary
    operator = start_operator()
    # v1-1 and v2-1 run as the same ServiceAccount; v1-1's token does not make it v2-1.
    v1_token = cluster.token(namespace, "backend", audience="smimesh", pod="v1-1")
    other_pod = connect(
        cluster, operator, namespace, pod="v2-1", service_account="backend", token=v1_token
    )
    error = other_pod.wait_for_error()
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"bound to pod {namespace}/v1-1" in (error.details() or "")
    other_pod.close()
    # A ServiceAccount token bound to no Pod may claim none.
    unbound = connect(
        cluster,
        operator,
        namespace,
        pod="v1-1",
        service_account="backend",
        token=cluster.token(namespace, "backend", audience="smimesh"),
    )
    error = unbound.wait_for_error()
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "bound to no Pod" in (error.details() or "")
    unbound.close()
    own = connect(
        cluster, operator, namespace, pod="v1-1", service_account="backend", token=v1_token
    )
    try:
        assert own.next().proxy.pod == "v1-1"
    finally:
        own.close()


def test_a_burst_of_changes_is_coalesced_into_few_pushes(
    mesh_installed: clusters.Cluster, canary: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    cluster, namespace = mesh_installed, canary
    operator = start_operator()
    proxy = connect(cluster, operator, namespace)
    try:
        proxy.next()
        # The operator is paused while kubectl writes the Services, so the burst reaches it
        # as one backlog of watch events however slowly the apiserver takes 100 writes (under
        # load they spread over seconds: each 0.5 s `max_delay` window then was one more push).
        operator.process.send_signal(signal.SIGSTOP)
        try:
            apply(cluster, *[service(namespace, f"burst-{i}") for i in range(100)])
        finally:
            operator.process.send_signal(signal.SIGCONT)
        config = next_with(
            proxy, lambda c: sum(s.service.name.startswith("burst-") for s in c.outbound) == 100
        )
        assert len([s for s in config.outbound if s.service.name.startswith("burst-")]) == 100
        time.sleep(1.0)
        pushes = len(proxy.received) - 1
        assert pushes <= 10, f"{pushes} pushes for one burst of 100 Services"
    finally:
        proxy.close()


def test_a_proxy_that_refuses_its_config_keeps_the_split_unprogrammed_with_its_reason(
    mesh_installed: clusters.Cluster, canary: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    cluster, namespace = mesh_installed, canary
    apply(cluster, split(namespace, "canary", "root", {"v1": 90, "v2": 10}))
    operator = start_operator()
    proxy = connect(cluster, operator, namespace, nack="route table too large for this proxy")
    try:
        next_with(proxy, lambda c: route_weights(c, "root") == {"v1": 90, "v2": 10})
        # Programmed is False (Pending) before the NACK arrives too: wait for its reason.
        found: dict[str, dict[str, Any]] = {}

        def refused() -> bool:
            nonlocal found
            found = wait_conditions(
                cluster, namespace, "canary", {"Programmed": "False", "Accepted": "True"}
            )
            return "refused it" in found["Programmed"]["message"]

        waiting.eventually_sync(
            refused, timeout=30, message=lambda: f"Programmed: {found['Programmed']}", interval=0.2
        )
        assert "refused it: route table too large for this proxy" in found["Programmed"]["message"]
        assert f"{namespace}/client-1" in found["Programmed"]["message"]
    finally:
        proxy.close()


def test_observed_generation_follows_every_spec_change_even_when_conditions_stay_equal(
    mesh_installed: clusters.Cluster, canary: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    # No proxy is connected, so every generation is Programmed at once: the conditions never
    # change, and only observedGeneration tells a controller that its write was seen.
    cluster, namespace = mesh_installed, canary
    apply(cluster, split(namespace, "canary", "root", {"v1": 90, "v2": 10}))
    start_operator()
    wait_conditions(cluster, namespace, "canary", {"Programmed": "True"}, generation=1)
    for generation, weight in ((2, 20), (3, 30)):
        patch_weights(cluster, namespace, "canary", {"v1": 100 - weight, "v2": weight})
        wait_conditions(cluster, namespace, "canary", {"Programmed": "True"}, generation=generation)
