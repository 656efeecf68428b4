"""Workloads in network namespaces: what runs where, and nothing left behind — after a clean
stop or a start that fails halfway (real namespaces, veths, routes and a real apiserver)."""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client

from smimesh._aio import waiting
from smimesh.sidecar import settings
from smimesh.testing import addresses, isolating, launching, workloads
from tests.testing import support


def _launch(isolation: launching.Isolation) -> launching.Launch:
    return launching.Launch(
        namespace="shop", name="web-1", service_account="web", address="10.78.1.2",
        isolation=isolation, config_server="127.0.0.1:15010", app_port=18080,
        workload_name="web",
    )  # fmt: skip


def _live_pods(api: client.ApiClient, namespace: str) -> list[str]:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    return [str(p.metadata.name) for p in pods if p.metadata.deletion_timestamp is None]


@contextlib.contextmanager
def _serving(host: str) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer((host, 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _curl(space: isolating.Namespace, url: str) -> str:
    done = subprocess.run(
        space.exec("curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", url),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout


def _eventually_get(url: str) -> int:
    """The status of the first answer from `url` (its server may not listen yet)."""
    return waiting.eventually_sync(
        lambda: httpx.get(url, timeout=2).status_code,
        timeout=10,
        message=f"{url} never answered",
        interval=0.1,
        ignoring=(httpx.TransportError,),
        error=AssertionError,
    )


def test_hosts_file_names_services_by_cluster_dns_and_short_names_in_own_namespace() -> None:
    text = isolating.hosts_file(
        [("shop", "cart", "10.96.0.9"), ("other", "db", "10.96.0.7")],
        namespace="shop",
        pod="web-1",
        address="10.78.1.2",
    )
    assert text.splitlines() == [
        "127.0.0.1 localhost",
        "10.78.1.2 web-1",
        "10.96.0.7 db.other.svc.cluster.local db.other.svc db.other",
        "10.96.0.9 cart.shop.svc.cluster.local cart.shop.svc cart.shop cart",
    ]


def test_a_namespaced_app_gets_no_proxy_settings_even_inherited_ones() -> None:
    inherited = {"HTTP_PROXY": "http://corp:3128", "https_proxy": "x", "PATH": "/bin"}
    env = launching.app_environment(_launch("netns"), inherited, {"GREETING": "hi"})
    assert env == {
        "PATH": "/bin", "GREETING": "hi", "HOST": "0.0.0.0", "PORT": "18080",
        "SMIMESH_WORKLOAD": "shop/web-1",
    }  # fmt: skip
    explicit = launching.app_environment(_launch("address"), inherited, {})
    assert explicit["HTTP_PROXY"] == explicit["http_proxy"] == "http://10.78.1.2:15001"
    assert "https_proxy" not in explicit


def test_a_namespaced_sidecar_intercepts_transparently_with_the_mark_init_exempts() -> None:
    argv = launching.sidecar_command(_launch("netns"), token="t", trust_bundle="b")
    assert argv[argv.index("--interception") + 1] == "transparent"
    assert argv[argv.index("--mark") + 1] == str(settings.PROXY_MARK)
    assert isolating.PROXY_MARK == settings.PROXY_MARK
    explicit = launching.sidecar_command(_launch("address"), token="t", trust_bundle="b")
    assert explicit[explicit.index("--interception") + 1] == "explicit"
    assert "--mark" not in explicit


def test_a_namespace_is_removed_with_its_veth_route_and_hosts_file() -> None:
    support.require_netns()
    space = isolating.Namespace(addresses.allocate_routed(), addresses.gateway())
    try:
        space.create()
        assert space.leftovers() == [
            f"network namespace {space.name}",
            f"veth {space.host_veth}",
            f"route to {space.address}",
            str(space.etc),
        ]
        space.write_hosts("10.96.0.9 cart.shop.svc.cluster.local\n")
        inside = subprocess.run(
            space.exec("getent", "hosts", "cart.shop.svc.cluster.local"),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert inside.stdout.split() == ["10.96.0.9", "cart.shop.svc.cluster.local"]
        # Routed both ways: the namespace reaches the host, the host the namespace.
        with _serving(addresses.gateway()) as url:
            assert _curl(space, url) == "200"
        server = subprocess.Popen(
            space.exec(sys.executable, "-m", "http.server", "--bind", space.address, "18080"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert _eventually_get(f"http://{space.address}:18080/") == 200
        finally:
            server.terminate()
            server.wait(10)
    finally:
        space.remove()
    assert space.leftovers() == []


def test_the_bridge_relays_the_namespaces_loopback_port_to_the_hosts() -> None:
    support.require_netns()
    space = isolating.Namespace(addresses.allocate_routed(), addresses.gateway())
    try:
        space.create()
        with _serving("127.0.0.1") as url:
            port = url.rsplit(":", 1)[1].rstrip("/")
            with subprocess.Popen(
                [sys.executable, "-m", "smimesh.testing.bridging", space.name, port,
                 f"127.0.0.1:{port}"],
                stdout=subprocess.PIPE, text=True,
            ) as bridge:  # fmt: skip
                try:
                    assert bridge.stdout is not None
                    announced = bridge.stdout.readline()
                    assert announced.startswith(f"bridging {space.name} 127.0.0.1:{port}")
                    assert _curl(space, url) == "200"  # the same address, inside the namespace
                finally:
                    bridge.terminate()
                    assert bridge.wait(10) == 0
    finally:
        space.remove()


@pytest.mark.cluster
def test_a_start_that_fails_after_the_namespace_exists_leaves_nothing(
    api: client.ApiClient, namespace: str
) -> None:
    support.require_netns()
    workload = workloads.LocalWorkload(
        workloads.WorkloadSpec(
            namespace=namespace, name="lost-1", service_account="lost",
            command=["sleep", "60"], app_ports={8080: 18080}, isolation="netns",
        ),
        api=api, config_server="127.0.0.1:1", trust_bundle=b"not a bundle",
    )  # fmt: skip
    assert workload.netns is not None
    with pytest.raises(workloads.WorkloadError, match="sidecar not ready within 3s"):
        workload.start(ready_timeout=3)
    assert workload.netns.leftovers() == []
    assert workload.processes == {}
    assert _live_pods(api, namespace) == []


@pytest.mark.cluster
def test_a_start_that_fails_while_building_the_namespace_leaves_nothing(
    api: client.ApiClient, namespace: str
) -> None:
    support.require_netns()
    workload = workloads.LocalWorkload(
        workloads.WorkloadSpec(
            namespace=namespace, name="clash-1", service_account="clash",
            command=["sleep", "60"], isolation="netns",
        ),
        api=api, config_server="127.0.0.1:1", trust_bundle=b"",
    )  # fmt: skip
    assert workload.netns is not None
    # Someone else routes the address already: the last step of building fails.
    subprocess.run(["ip", "route", "add", f"{workload.address}/32", "dev", "lo"], check=True)
    try:
        with pytest.raises(workloads.WorkloadError, match=r"network namespace: .*ip route add"):
            workload.start()
    finally:
        subprocess.run(["ip", "route", "del", f"{workload.address}/32", "dev", "lo"], check=True)
    assert workload.netns.leftovers() == []
    assert not Path("/sys/class/net", workload.netns.host_veth).exists()
    assert _live_pods(api, namespace) == []
