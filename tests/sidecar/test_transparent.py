"""Transparent interception for real: two network namespaces routed through the host (the
local workloads' `smimesh.testing.isolating`), the iptables rules written by `smimesh sidecar
init`, sidecars that learn each connection's original destination from SO_ORIGINAL_DST, mTLS
between them, and curl as the app's client.

Needs root (network namespaces, iptables; `make sidecar-deps` installs iptables): on a host
without them the test fails with the reason, it does not skip.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smimesh._aio import waiting
from smimesh.proxyconfig import inbound, matches, refs
from smimesh.sidecar import settings
from smimesh.testing import addresses, isolating
from tests.sidecar.conftest import NS, Pki, config, service, spiffe
from tests.testing import support

SMIMESH = str(Path(sys.executable).with_name("smimesh"))
CLUSTER_IP = "10.96.77.7"
APP = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"path": self.path, "peer": self.client_address[0]}).encode()
        self.send_response(200); self.send_header("content-length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, capture_output=True, text=True)


class Pod:
    def __init__(self) -> None:
        self.netns = isolating.Namespace(addresses.allocate_routed(), addresses.gateway())
        self.name = self.netns.name
        self.processes: list[subprocess.Popen[str]] = []

    def exec(self, *args: str) -> list[str]:
        return self.netns.exec(*args)

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            self.exec(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.processes.append(process)
        return process

    def curl(self, url: str) -> tuple[int, str]:
        result = subprocess.run(
            self.exec("curl", "-s", "-m", "5", "-w", "\n%{http_code}", url),
            capture_output=True, text=True,
        )  # fmt: skip
        body, _, code = result.stdout.rpartition("\n")
        return int(code or 0), body

    def wait_ready(self, admin_port: int) -> None:
        """Until the sidecar in this namespace answers 200 on /ready (curl from inside)."""

        def logs() -> str:
            exited = [
                p.stdout.read() if p.poll() is not None and p.stdout else "" for p in self.processes
            ]
            return f"sidecar in {self.name} never became ready: {exited}"

        waiting.eventually_sync(
            lambda: self.curl(f"http://127.0.0.1:{admin_port}/ready")[0] == 200,
            timeout=20,
            message=logs,
            interval=0.2,
            error=AssertionError,
        )

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


@pytest.fixture
def pods() -> Iterator[tuple[Pod, Pod]]:
    support.require_netns()
    client, server = Pod(), Pod()
    try:
        for pod in (client, server):
            pod.netns.create()
        yield client, server
    finally:
        for pod in (client, server):
            pod.stop()
            pod.netns.remove()


def test_transparent_interception_with_mtls_between_namespaces(
    pods: tuple[Pod, Pod], pki: Pki, tmp_path: Path
) -> None:
    client, server = pods
    api = refs.ProxyRef(namespace=NS, service_account="api", pod="api-6f9c8d7b5c-xyz12")
    web = refs.ProxyRef(namespace=NS, service_account="web", pod="web-6f9c8d7b5c-abc12")
    server_config = config(
        proxy=api,
        inbound_ports=(
            inbound.InboundPort(
                port=8080, app_port=8080, protocol="http",
                rules=(
                    inbound.InboundRule(
                        target=f"{NS}/web-to-api", sources=(spiffe(NS, "web"),),
                        http_matches=(matches.HttpMatch(path_regex="/allowed", methods=("GET",)),),
                    ),
                ),
            ),
        ),
    )  # fmt: skip
    client_config = config(
        proxy=web,
        outbound_services=(
            service("api", [(server.netns.address, 8080, api.pod)], cluster_ip=CLUSTER_IP,
                    meshed=True, identity=spiffe(NS, "api")),
        ),
    )  # fmt: skip
    mark = str(settings.PROXY_MARK)
    for pod, cfg, identity in ((server, server_config, "api"), (client, client_config, "web")):
        path = tmp_path / f"{pod.name}.json"
        path.write_bytes(cfg.to_json())
        cert, key, bundle = pki.files(NS, identity)
        _run(*pod.exec(SMIMESH, "sidecar", "init", "--mark", mark))
        pod.start(
            SMIMESH, "sidecar", "run", "--interception", "transparent", "--config", str(path),
            "--mark", mark, "--cert", str(cert), "--key", str(key), "--trust-bundle", str(bundle),
            "--inbound-host", "0.0.0.0",
        )  # fmt: skip
    server.start(sys.executable, "-c", APP)
    for pod in (client, server):
        pod.wait_ready(settings.ADMIN_PORT)

    code, body = client.curl(f"http://{CLUSTER_IP}/allowed/thing")
    assert code == 200, body
    assert '"path": "/allowed/thing"' in body
    assert '"peer": "127.0.0.1"' in body  # the server sidecar delivered it locally

    code, body = client.curl(f"http://{CLUSTER_IP}/secret")
    assert code == 403
    assert body.startswith("smimesh: denied:")

    # The client's connection to the real pod IP is intercepted too, and mTLS is enforced:
    # a plaintext call from the client netns with the proxy's own mark bypasses the client
    # sidecar and is refused by the strict server sidecar.
    plaintext = _MARKED_PLAINTEXT.format(ip=server.netns.address, mark=mark)
    result = subprocess.run(
        client.exec(sys.executable, "-c", plaintext),
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert result.stdout.strip() == "refused", result


_MARKED_PLAINTEXT = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, {mark})
s.settimeout(5)
s.connect(("{ip}", 8080))
s.sendall(b"GET /allowed HTTP/1.1\\r\\nHost: api\\r\\n\\r\\n")
try:
    data = s.recv(100)
except ConnectionResetError:
    data = b""
print("answered" if data else "refused")
"""
