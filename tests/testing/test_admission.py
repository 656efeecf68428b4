"""Admission webhooks are on: the test apiserver calls a real HTTPS webhook and obeys it."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes import client

from smimesh.testing import clusters, pki

pytestmark = pytest.mark.cluster


class _DenyByName(BaseHTTPRequestHandler):
    """Denies ConfigMaps whose name starts with `deny-`; allows everything else."""

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        name = request["object"]["metadata"]["name"]
        allowed = not name.startswith("deny-")
        response = {"uid": request["uid"], "allowed": allowed}
        if not allowed:
            response["status"] = {"code": 403, "message": "the test webhook refuses deny-*"}
        body = json.dumps({**review, "response": response, "request": None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test asserts on what the apiserver does, not on access logs."""


@pytest.fixture
def webhook_url(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    credentials = pki.write_pki(tmp_path, hosts=["127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(credentials.serving_cert, credentials.serving_key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DenyByName)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}/validate", credentials.ca_cert.read_bytes()
    finally:
        server.shutdown()
        server.server_close()


def test_the_apiserver_calls_a_validating_webhook_and_obeys_it(
    cluster: clusters.Cluster, namespace: str, webhook_url: tuple[str, bytes]
) -> None:
    url, ca_bundle = webhook_url
    labelled = cluster.kubectl("label", "namespace", namespace, f"webhook-test={namespace}")
    assert labelled.returncode == 0, labelled.stderr
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": f"deny-by-name-{namespace}"},
        "webhooks": [
            {
                "name": "deny-by-name.smimesh.dev",
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_bundle).decode()},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"webhook-test": namespace}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }
    applied = cluster.kubectl("apply", "-f", "-", input=json.dumps(configuration))
    assert applied.returncode == 0, applied.stderr
    try:
        core = client.CoreV1Api(cluster.api_client())
        denied = cluster.kubectl("-n", namespace, "create", "configmap", "deny-me")
        assert denied.returncode != 0
        assert "the test webhook refuses deny-*" in denied.stderr
        allowed = cluster.kubectl("-n", namespace, "create", "configmap", "fine")
        assert allowed.returncode == 0, allowed.stderr
        names = [item.metadata.name for item in core.list_namespaced_config_map(namespace).items]
        assert "fine" in names
        assert "deny-me" not in names
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", f"deny-by-name-{namespace}")
