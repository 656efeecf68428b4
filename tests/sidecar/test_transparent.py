"""Transparent interception for real: two network namespaces routed through the host (the
local workloads' `smimesh.testing.isolating`), the iptables rules written by `smimesh sidecar
init`, sidecars that learn each connection's original destination from SO_ORIGINAL_DST, mTLS
between them, and curl as the app's client. And the segments that would slip past the
redirection (out of window for conntrack, so the nat table leaves them as they are): dropped in
the pod, both ways, where without the rule they would leave it or reach the app's own port.

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
from smimesh.sidecar import settings, transparent
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


def _packets(pod: Pod, chain: str, marker: str) -> int:
    """The packet count of the mangle rule in `chain` whose listing holds `marker`."""
    listing = _run(*pod.exec("iptables", "-t", "mangle", "-L", chain, "-v", "-x", "-n"))
    (line,) = [line for line in listing.stdout.splitlines() if marker in line]
    return int(line.split()[0])


def _count(pod: Pod, chain: str, *match: str) -> None:
    """A mangle rule without a target: it only counts the packets `match` selects."""
    _run(*pod.exec("iptables", "-t", "mangle", "-A", chain, *match,
                   "-m", "comment", "--comment", "counted"))  # fmt: skip


def _delete_drop(pod: Pod, chain: str) -> None:
    """Delete the INVALID-dropping rule `sidecar init` wrote in `chain` (the control case)."""
    written = transparent.rules(outbound_port=1, inbound_port=2, mark=None)
    (rule,) = [r for r in written if r[:4] == ["-t", "mangle", "-A", chain]]
    _run(*pod.exec("iptables", "-t", "mangle", "-D", *rule[3:]))


def _out_of_window(pod: Pod, ip: str, port: int, *, listen: int | None) -> None:
    script = _OUT_OF_WINDOW.format(ip=ip, port=port, listen=listen)
    result = subprocess.run(pod.exec(sys.executable, "-c", script),
                            capture_output=True, text=True, timeout=20)  # fmt: skip
    assert result.stdout.strip() == "sent", result


def test_an_out_of_window_segment_is_dropped_not_sent_past_the_redirect(
    pods: tuple[Pod, Pod],
) -> None:
    """conntrack tracks the app's redirected connection; a segment of it that conntrack finds
    out of window is INVALID, which the nat table does not rewrite. Without the mangle
    rule it would leave for the ClusterIP itself (where the Service's real backend answers it
    with an RST that resets the app's connection); with the rule it never leaves the pod."""
    pod, _ = pods
    _run(*pod.exec(SMIMESH, "sidecar", "init", "--mark", str(settings.PROXY_MARK)))
    # Redirected segments go to 127.0.0.1: only an un-redirected one is counted.
    _count(pod, "POSTROUTING", "-d", CLUSTER_IP, "-p", "tcp")
    _out_of_window(pod, CLUSTER_IP, 80, listen=settings.OUTBOUND_PORT)
    assert _packets(pod, "OUTPUT", "DROP") == 1
    assert _packets(pod, "POSTROUTING", "counted") == 0
    # The control: without the rule, the same segment leaves the pod un-redirected.
    _delete_drop(pod, "OUTPUT")
    _out_of_window(pod, CLUSTER_IP, 80, listen=settings.OUTBOUND_PORT)
    assert _packets(pod, "POSTROUTING", "counted") == 1


def test_an_out_of_window_segment_never_reaches_the_app_port_past_the_redirect(
    pods: tuple[Pod, Pod],
) -> None:
    """The inbound side: a caller's segment that conntrack finds out of window would be
    delivered to the app's own port, not the inbound listener; the app's kernel, knowing no
    such connection, would reset the caller's. With the rule it is dropped on the way in."""
    client, server = pods
    _run(*server.exec(SMIMESH, "sidecar", "init", "--mark", str(settings.PROXY_MARK)))
    _count(server, "INPUT", "-p", "tcp", "--dport", "8080")  # after PREROUTING's REDIRECT
    greeter = server.start(sys.executable, "-c", _GREETER.format(port=settings.INBOUND_PORT))
    assert greeter.stdout is not None
    assert greeter.stdout.readline() == "listening\n"
    address = server.netns.address
    _out_of_window(client, address, 8080, listen=None)
    assert _packets(server, "PREROUTING", "DROP") == 1
    assert _packets(server, "INPUT", "counted") == 0
    _delete_drop(server, "PREROUTING")
    _out_of_window(client, address, 8080, listen=None)
    assert _packets(server, "INPUT", "counted") == 1


# The inbound listener's stand-in: greets each connection.
_GREETER = """
import socket
listener = socket.create_server(("0.0.0.0", {port}))
print("listening", flush=True)
while True:
    conn, _ = listener.accept()
    conn.sendall(b"hello")
"""

# A connection to ip:port (redirected to a listener of this script on `listen`, or to one in
# the peer's pod), then one segment of that connection written raw, acknowledging what was
# received but a quarter of the sequence space ahead of what was sent: out of window.
_OUT_OF_WINDOW = """
import socket, struct
def checksum(data):
    if len(data) % 2:
        data += b"\\0"
    total = sum(struct.unpack(f"!{{len(data) // 2}}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
listen = {listen}
if listen is not None:
    listener = socket.create_server(("0.0.0.0", listen))
app = socket.create_connection(("{ip}", {port}), timeout=5)
if listen is not None:
    listener.accept()[0].sendall(b"hello")
assert app.recv(5) == b"hello"
# The connection's own numbers, read in repair mode (TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ).
app.setsockopt(socket.IPPROTO_TCP, 19, 1)
numbers = []
for queue in (2, 1):  # the send queue's next sequence number, then the receive queue's
    app.setsockopt(socket.IPPROTO_TCP, 20, queue)
    numbers.append(struct.unpack("I", app.getsockopt(socket.IPPROTO_TCP, 21, 4))[0])
seq, ack = (numbers[0] + (1 << 30)) % (1 << 32), numbers[1]  # a quarter of the space ahead
src, sport = app.getsockname()
src_b, dst_b = socket.inet_aton(src), socket.inet_aton("{ip}")
payload = b"x"
tcp = struct.pack("!HHIIBBHHH", sport, {port}, seq, ack, 5 << 4, 0x18, 65535, 0, 0)
pseudo = src_b + dst_b + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp) + len(payload))
tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp + payload)) + tcp[18:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64,
                 socket.IPPROTO_TCP, 0, src_b, dst_b)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
try:
    raw.sendto(ip + tcp + payload, ("{ip}", 0))
except PermissionError:  # what a netfilter DROP of a locally written packet says
    pass
print("sent")
"""
