"""The webhook server over real TLS sockets, in-process: each route answers its review, and a
malformed, oversized or slow request gets a clear HTTP error, never a traceback."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import httpx
import pytest

from smimesh.identity import authority, rotation
from smimesh.operator import authorities, indexing, renewing, webhooking
from smimesh.webhooks.injection import settings
from tests.webhooks.injection.pods import app_pod
from tests.webhooks.reviewing import SPLIT_V1ALPHA1, admission, conversion, split

CA = rotation.stable(authority.create("cluster.local"))


@dataclass
class Namespaces:
    """Labels by namespace, and which namespaces were asked about."""

    labels_by_name: dict[str, dict[str, str]]
    asked: list[str] = field(default_factory=list)

    async def labels(self, namespace: str) -> Mapping[str, str]:
        self.asked.append(namespace)
        return self.labels_by_name.get(namespace, {})


@dataclass
class Served:
    url: str
    namespaces: Namespaces
    client: httpx.AsyncClient


async def _serve(limits: webhooking.Limits) -> tuple[webhooking.WebhookServer, Namespaces]:
    namespaces = Namespaces({"shop": {"smimesh.dev/inject": "enabled"}})
    webhooks = webhooking.Webhooks(settings.InjectionSettings(), namespaces, limits)
    context = _serving_context()
    server = await webhooking.start(webhooks, address="127.0.0.1:0", ssl_context=context)
    return server, namespaces


def _serving_context() -> ssl.SSLContext:
    dns, ips = renewing.serving_names(namespace="smimesh-system", address="127.0.0.1:0")
    holder = authorities.CaHolder(CA)
    return renewing.webhook_context(
        renewing.ServingCertificate(holder, dns_names=dns, ip_addresses=ips)
    )


def _client_context() -> ssl.SSLContext:
    return ssl.create_default_context(cadata=CA.bundle.pem().decode())


@pytest.fixture
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    limits = getattr(request, "param", webhooking.Limits())
    server, namespaces = await _serve(limits)
    async with httpx.AsyncClient(verify=_client_context(), timeout=10) as http:
        try:
            yield Served(f"https://127.0.0.1:{server.port}", namespaces, http)
        finally:
            await server.stop()


async def test_conversion_answers_a_conversion_review(served: Served) -> None:
    body = conversion("split.smi-spec.io/v1alpha4", SPLIT_V1ALPHA1)
    answer = await served.client.post(f"{served.url}/convert", json=body)
    assert answer.status_code == 200
    response = answer.json()["response"]
    assert response["result"] == {"status": "Success"}
    assert response["convertedObjects"][0]["apiVersion"] == "split.smi-spec.io/v1alpha4"


async def test_validation_answers_with_warnings(served: Served) -> None:
    body = admission(split([("a", 0), ("b", 0)]))
    answer = await served.client.post(f"{served.url}/validate", json=body)
    assert answer.status_code == 200
    assert answer.json()["response"]["warnings"] == [
        "spec.backends: every weight is 0: no traffic reaches any backend"
    ]


async def test_injection_asks_for_the_namespace_labels_and_patches(served: Served) -> None:
    body = admission(app_pod())
    answer = await served.client.post(f"{served.url}/mutate", json=body)
    assert answer.status_code == 200
    response = answer.json()["response"]
    assert response["allowed"] is True
    patch = json.loads(base64.b64decode(response["patch"]))
    assert any(op["path"].startswith("/spec/initContainers") for op in patch)
    assert served.namespaces.asked == ["shop"]


async def test_health_is_served_over_tls(served: Served) -> None:
    answer = await served.client.get(f"{served.url}/healthz")
    assert (answer.status_code, answer.text) == (200, "ok\n")


@pytest.mark.parametrize(
    ("path", "content", "message"),
    [
        ("/convert", b"{not json", "the body is not JSON"),
        ("/validate", b"[1, 2]", "must be a AdmissionReview object, got list"),
        (
            "/mutate",
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
            "no request",
        ),
        ("/validate", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
async def test_a_malformed_review_gets_400_with_a_message(
    served: Served, path: str, content: bytes, message: str
) -> None:
    answer = await served.client.post(
        served.url + path, content=content, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert message in answer.text
    assert "Traceback" not in answer.text


@pytest.mark.parametrize(
    "served", [webhooking.Limits(admission_body=1024, conversion_body=2048)], indirect=True
)
async def test_an_oversized_body_gets_413(served: Served) -> None:
    big = admission(split([(f"b{i}", 1) for i in range(100)]))
    answer = await served.client.post(f"{served.url}/validate", json=big)
    assert answer.status_code == 413
    assert "over 1024" in answer.text


async def test_a_review_that_takes_too_long_gets_503() -> None:
    class Stuck:
        async def labels(self, namespace: str) -> Mapping[str, str]:
            await asyncio.sleep(60)
            return {}

    limits = webhooking.Limits(timeout=0.3)
    webhooks = webhooking.Webhooks(settings.InjectionSettings(), Stuck(), limits)
    context = _serving_context()
    server = await webhooking.start(webhooks, address="127.0.0.1:0", ssl_context=context)
    try:
        async with httpx.AsyncClient(verify=_client_context(), timeout=10) as http:
            answer = await http.post(
                f"https://127.0.0.1:{server.port}/mutate", json=admission(app_pod())
            )
        assert answer.status_code == 503
    finally:
        await server.stop()


async def test_an_unexpected_failure_gets_500_without_details() -> None:
    class Broken:
        async def labels(self, namespace: str) -> Mapping[str, str]:
            raise RuntimeError("secret internals")

    webhooks = webhooking.Webhooks(settings.InjectionSettings(), Broken())
    context = _serving_context()
    server = await webhooking.start(webhooks, address="127.0.0.1:0", ssl_context=context)
    try:
        async with httpx.AsyncClient(verify=_client_context(), timeout=10) as http:
            answer = await http.post(
                f"https://127.0.0.1:{server.port}/mutate", json=admission(app_pod())
            )
        assert answer.status_code == 500
        assert "secret internals" not in answer.text
    finally:
        await server.stop()


@pytest.mark.fast
def test_the_certificate_names_the_service_the_listen_ip_and_the_url_host() -> None:
    dns, ips = renewing.serving_names(
        namespace="mesh", address="0.0.0.0:9443", url="https://10.0.0.7:9443"
    )
    assert dns == (
        "smimesh-operator",
        "smimesh-operator.mesh",
        "smimesh-operator.mesh.svc",
        "smimesh-operator.mesh.svc.cluster.local",
    )
    assert ips == ("127.0.0.1", "10.0.0.7")
    _, local = renewing.serving_names(namespace="mesh", address="127.0.0.1:1", url=None)
    assert local == ("127.0.0.1",)


@pytest.mark.fast
async def test_namespace_labels_come_from_the_index_when_it_knows_the_namespace() -> None:
    index = indexing.MeshIndex()
    index.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"smimesh.dev/inject": "enabled"}},
        }
    )
    # No API client: a meshed namespace the index knows is answered without a request.
    namespaces = webhooking.IndexedNamespaces(index, api=None)  # type: ignore[arg-type]
    assert await namespaces.labels("shop") == {"smimesh.dev/inject": "enabled"}
