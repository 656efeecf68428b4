"""Which Pods the local node runs, and how: one app container of its image, the command and
environment as written, downward-API fields to fill, and the meshed pod's intercepted ports
moved behind the sidecar while excluded ones stay put."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from smimesh.testing import podplans

pytestmark = pytest.mark.fast

IMAGE = "ghcr.io/smimesh/smimesh:0.1.0"


def _pod(**changes: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {"name": "b-1", "namespace": "ns", "uid": "u1", "labels": {"app": "b"}},
        "spec": {
            "serviceAccountName": "service-b",
            "containers": [
                {
                    "name": "app",
                    "image": IMAGE,
                    "command": ["smimesh", "conformance"],
                    "args": ["app"],
                    "env": [
                        {"name": "PORT", "value": "8080"},
                        {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "x", "key": "y"}}},
                    ],
                    "ports": [{"containerPort": 8080}, {"containerPort": 9090}],
                }
            ],
        },
    }
    for section, values in changes.items():
        pod[section] = {**pod[section], **values}
    return pod


def test_a_plain_pod_runs_its_command_with_its_environment_on_its_own_ports() -> None:
    planned = podplans.plan(_pod(), image=IMAGE)
    assert planned is not None
    assert planned.command == ("smimesh", "conformance", "app")
    assert planned.env == {"PORT": "8080"}
    assert planned.fields == {"ME": "metadata.name"}
    assert (planned.service_account, planned.labels) == ("service-b", {"app": "b"})
    assert not planned.meshed
    assert planned.app_ports == {}


def test_a_meshed_pod_moves_intercepted_ports_behind_the_sidecar_but_not_excluded_ones() -> None:
    annotations = {
        "smimesh.dev/injected": IMAGE,
        "smimesh.dev/exclude-inbound-ports": "9090",
    }
    pod = _pod(metadata={"annotations": annotations})
    pod["spec"]["initContainers"] = [
        {"name": "smimesh-init", "image": IMAGE},
        {"name": "smimesh-proxy", "image": IMAGE},
    ]
    planned = podplans.plan(pod, image=IMAGE)
    assert planned is not None
    assert planned.meshed
    assert planned.app_ports == {8080: 8080 + podplans.APP_PORT_OFFSET}


@pytest.mark.parametrize(
    ("why", "metadata", "spec"),
    [
        (
            "another image",
            {},
            {"containers": [{"name": "app", "image": "nginx", "command": ["x"]}]},
        ),
        ("the image's own command", {}, {"containers": [{"name": "app", "image": IMAGE}]}),
        ("gated", {}, {"schedulingGates": [{"name": "smimesh.dev/local-workload"}]}),
        ("terminating", {"deletionTimestamp": "2026-01-01T00:00:00Z"}, {}),
        ("an init container of its own", {}, {"initContainers": [{"name": "m", "image": IMAGE}]}),
    ],
)
def test_pods_the_node_leaves_alone(
    why: str, metadata: dict[str, Any], spec: dict[str, Any]
) -> None:
    assert podplans.plan(_pod(metadata=metadata, spec=spec), image=IMAGE) is None, why


def test_the_program_is_found_beside_this_python_first() -> None:
    assert podplans.executable("smimesh") == str(Path(sys.executable).parent / "smimesh")
    with pytest.raises(podplans.PlanError, match="not installed"):
        podplans.executable("no-such-program-here")
