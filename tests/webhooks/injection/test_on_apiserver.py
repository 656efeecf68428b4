"""The injected manifests are valid Kubernetes, and the apiserver applies our admission patch.

Against the real test apiserver: every injected workload kind passes server-side dry-run, an
injected Pod is stored with its native sidecar, and a mutating webhook answering with
`admission.review` (serving a certificate from the mesh CA) injects pods the apiserver creates.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from smimesh.identity import authority, keys, tlscontexts
from smimesh.testing import clusters
from smimesh.webhooks.injection import admission, settings, workloads

from .manifests import KINDS, pod_spec, workload
from .pods import annotated, app_pod

pytestmark = pytest.mark.cluster

MESHED = {"smimesh.dev/inject": "enabled"}


def _kubectl_ok(cluster: clusters.Cluster, *args: str, input: str | None = None) -> str:
    result = cluster.kubectl(*args, input=input)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def meshed_namespace(cluster: clusters.Cluster, namespace: str) -> str:
    """A namespace with the `web` ServiceAccount (no controller-manager makes `default`)."""
    _kubectl_ok(cluster, "-n", namespace, "create", "serviceaccount", "web")
    return namespace


@pytest.mark.parametrize(
    "config",
    [settings.InjectionSettings(), settings.InjectionSettings(native_sidecars=False)],
    ids=["native", "classic"],
)
def test_every_injected_workload_kind_passes_server_side_validation(
    cluster: clusters.Cluster, meshed_namespace: str, config: settings.InjectionSettings
) -> None:
    injected = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [workloads.inject_manifest(workload(kind), config=config)[0] for kind in KINDS],
    }
    output = _kubectl_ok(
        cluster,
        "-n",
        meshed_namespace,
        "apply",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(injected),
    )
    stored = json.loads(output)["items"]
    assert [item["kind"] for item in stored] == list(KINDS)
    for item in stored:
        names = [c["name"] for c in pod_spec(item).get("initContainers", [])]
        names += [c["name"] for c in pod_spec(item)["containers"]]
        assert "smimesh-proxy" in names, item["kind"]


def test_an_injected_pod_is_stored_with_its_native_sidecar(
    cluster: clusters.Cluster, meshed_namespace: str
) -> None:
    injected, _ = workloads.inject_manifest(workload("Pod"), config=settings.InjectionSettings())
    _kubectl_ok(cluster, "-n", meshed_namespace, "create", "-f", "-", input=json.dumps(injected))
    stored = json.loads(
        _kubectl_ok(cluster, "-n", meshed_namespace, "get", "pod", "web", "-o", "json")
    )
    proxy = stored["spec"]["initContainers"][1]
    assert (proxy["name"], proxy["restartPolicy"]) == ("smimesh-proxy", "Always")
    volume = stored["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
    assert volume["audience"] == "smimesh"
    annotations = stored["metadata"]["annotations"]
    assert (
        json.loads(annotations["smimesh.dev/original-probes"])["app/livez"]["httpGet"]["port"]
        == 8080
    )


class _Injector(BaseHTTPRequestHandler):
    """The mutating webhook: body in, `admission.review` out (labels given by the test)."""

    namespace_labels: ClassVar[dict[str, dict[str, str]]] = {}

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        namespace = body["request"].get("namespace", "")
        answer = admission.review(
            body,
            namespace_labels=self.namespace_labels.get(namespace, {}),
            config=settings.InjectionSettings(),
        )
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test asserts on what the apiserver stores."""


@pytest.fixture
def injection_webhook(cluster: clusters.Cluster, meshed_namespace: str) -> Iterator[str]:
    """A mutating webhook for `meshed_namespace`, served with a mesh-CA certificate.

    The mesh's own `smimesh-injector` (failurePolicy Fail) is removed first: a test that
    installed the manifests without an operator to serve it must not refuse these pods.
    """
    _kubectl_ok(
        cluster,
        "delete",
        "--ignore-not-found",
        "mutatingwebhookconfiguration/smimesh-injector",
        "validatingwebhookconfiguration/smimesh-validator",
    )
    ca = authority.create("cluster.local")
    key = keys.generate_key()
    serving = ca.issue_serving(key.public_key(), ip_addresses=("127.0.0.1",))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Injector)
    context = tlscontexts.serving_context(key=key, certificate=serving)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _Injector.namespace_labels[meshed_namespace] = MESHED
    _kubectl_ok(cluster, "label", "namespace", meshed_namespace, "smimesh.dev/inject=enabled")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    name = f"smimesh-injector-{meshed_namespace}"
    configuration: dict[str, Any] = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "inject.smimesh.dev",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{server.server_port}/inject",
                    "caBundle": base64.b64encode(keys.certificates_to_pem((ca.root,))).decode(),
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": meshed_namespace, **MESHED}
                },
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "timeoutSeconds": 5,
            }
        ],
    }
    _kubectl_ok(cluster, "apply", "-f", "-", input=json.dumps(configuration))
    try:
        yield meshed_namespace
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", name)
        server.shutdown()
        server.server_close()


def test_the_apiserver_stores_pods_injected_by_the_webhook(
    cluster: clusters.Cluster, injection_webhook: str
) -> None:
    namespace = injection_webhook
    _kubectl_ok(cluster, "-n", namespace, "create", "-f", "-", input=json.dumps(app_pod()))
    stored = json.loads(_kubectl_ok(cluster, "-n", namespace, "get", "pod", "web", "-o", "json"))
    assert [c["name"] for c in stored["spec"]["initContainers"]] == [
        "smimesh-init",
        "smimesh-proxy",
    ]
    assert stored["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] == 15020
    assert "smimesh.dev/injected" in stored["metadata"]["annotations"]


def test_the_webhook_leaves_opted_out_pods_alone(
    cluster: clusters.Cluster, injection_webhook: str
) -> None:
    pod = annotated(app_pod(), **{"smimesh.dev/inject": "disabled"})
    pod["metadata"]["name"] = "plain"
    _kubectl_ok(cluster, "-n", injection_webhook, "create", "-f", "-", input=json.dumps(pod))
    stored = json.loads(
        _kubectl_ok(cluster, "-n", injection_webhook, "get", "pod", "plain", "-o", "json")
    )
    assert "initContainers" not in stored["spec"]
    assert "smimesh.dev/injected" not in stored["metadata"]["annotations"]


def test_the_webhook_denies_a_pod_it_cannot_inject_with_the_reason(
    cluster: clusters.Cluster, injection_webhook: str
) -> None:
    pod = annotated(app_pod(), **{"smimesh.dev/exclude-outbound-ports": "postgres"})
    refused = cluster.kubectl("-n", injection_webhook, "create", "-f", "-", input=json.dumps(pod))
    assert refused.returncode != 0
    assert "'postgres' is not a port" in refused.stderr
