"""kubelet probes go through the proxy's probe port; the originals are kept for the sidecar."""

from __future__ import annotations

from typing import Any

import pytest

from smimesh.webhooks.injection import probes, settings

pytestmark = pytest.mark.fast

CONFIG = settings.InjectionSettings()


def _container(**probe_fields: Any) -> dict[str, Any]:
    return {
        "name": "app",
        "ports": [{"name": "http", "containerPort": 8080}, {"name": "grpc", "containerPort": 9090}],
        **probe_fields,
    }


def test_an_http_probe_on_a_named_port_goes_through_the_probe_port() -> None:
    container = _container(
        livenessProbe={
            "httpGet": {
                "path": "/healthz",
                "port": "http",
                "scheme": "HTTPS",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}],
            },
            "periodSeconds": 7,
            "failureThreshold": 4,
        }
    )
    originals = probes.rewrite_probes([container], CONFIG)
    assert container["livenessProbe"] == {
        "httpGet": {"path": "/app-health/app/livez", "port": 15020, "scheme": "HTTP"},
        "periodSeconds": 7,
        "failureThreshold": 4,
    }
    assert originals == {
        "app/livez": {
            "httpGet": {
                "path": "/healthz",
                "port": 8080,
                "scheme": "HTTPS",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}],
            }
        }
    }


def test_tcp_and_grpc_probes_become_http_probes_of_the_proxy() -> None:
    container = _container(
        readinessProbe={"tcpSocket": {"port": 8080}},
        startupProbe={"grpc": {"port": 9090, "service": "ready"}},
    )
    originals = probes.rewrite_probes([container], CONFIG)
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/app-health/app/readyz", "port": 15020, "scheme": "HTTP"}
    }
    assert container["startupProbe"]["httpGet"]["path"] == "/app-health/app/startupz"
    assert "grpc" not in container["startupProbe"]
    assert originals == {
        "app/readyz": {"tcpSocket": {"port": 8080}},
        "app/startupz": {"grpc": {"port": 9090, "service": "ready"}},
    }


def test_exec_probes_are_left_alone() -> None:
    container = _container(livenessProbe={"exec": {"command": ["cat", "/tmp/ok"]}})
    assert probes.rewrite_probes([container], CONFIG) == {}
    assert container["livenessProbe"] == {"exec": {"command": ["cat", "/tmp/ok"]}}


def test_a_probe_on_an_undeclared_port_name_is_left_for_kubelet_to_report() -> None:
    container = _container(livenessProbe={"httpGet": {"path": "/", "port": "metrics"}})
    assert probes.rewrite_probes([container], CONFIG) == {}
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"


def test_each_container_gets_its_own_paths() -> None:
    first = _container(readinessProbe={"tcpSocket": {"port": 8080}})
    second = {"name": "worker", "readinessProbe": {"tcpSocket": {"port": "9000"}}}
    originals = probes.rewrite_probes([first, second], CONFIG)
    assert second["readinessProbe"]["httpGet"]["path"] == "/app-health/worker/readyz"
    assert originals["worker/readyz"] == {"tcpSocket": {"port": 9000}}
