"""Front-proxy authentication: the request headers name a user only on a connection whose
verified client certificate is an allowed front proxy; settings come from the ConfigMap the
apiserver publishes (its JSON-encoded lists)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from smimesh.operator import delegating
from smimesh.testing import pki

pytestmark = pytest.mark.fast

SETTINGS = delegating.RequestHeaders.from_configmap(
    {
        "requestheader-client-ca-file": "-----BEGIN CERTIFICATE-----\n...",
        "requestheader-allowed-names": json.dumps(["front-proxy-client"]),
        "requestheader-username-headers": json.dumps(["X-Remote-User"]),
        "requestheader-group-headers": json.dumps(["X-Remote-Group"]),
        "requestheader-extra-headers-prefix": json.dumps(["X-Remote-Extra-"]),
    }
)
FRONT_PROXY = {"subject": ((("commonName", "front-proxy-client"),),)}
HEADERS = {
    "x-remote-user": ["alice"],
    "x-remote-group": ["dev", "system:authenticated"],
    "x-remote-extra-scopes": ["a", "b"],
    "accept": ["application/json"],
}


def test_the_front_proxy_vouches_for_user_groups_and_extra() -> None:
    user = delegating.authenticate(SETTINGS, FRONT_PROXY, HEADERS)
    assert user == delegating.User("alice", ("dev", "system:authenticated"), {"scopes": ("a", "b")})


@pytest.mark.parametrize(
    ("peercert", "reason"),
    [
        (None, "no client certificate"),
        ({}, "no client certificate"),
        ({"subject": ((("commonName", "mallory"),),)}, "'mallory' is not an allowed front proxy"),
    ],
)
def test_headers_without_an_allowed_certificate_are_not_believed(
    peercert: dict[str, object] | None, reason: str
) -> None:
    with pytest.raises(delegating.UnauthenticatedError, match=reason):
        delegating.authenticate(SETTINGS, peercert, HEADERS)


def test_no_user_header_and_no_front_proxy_configured_are_refused() -> None:
    with pytest.raises(delegating.UnauthenticatedError, match="named no user"):
        delegating.authenticate(SETTINGS, FRONT_PROXY, {"x-remote-group": ["dev"]})
    with pytest.raises(delegating.UnauthenticatedError, match="no front-proxy CA"):
        delegating.authenticate(None, FRONT_PROXY, HEADERS)


def test_a_cluster_without_a_front_proxy_publishes_no_settings() -> None:
    assert delegating.RequestHeaders.from_configmap({"client-ca-file": "..."}) is None


def test_trusting_the_front_proxy_keeps_clients_without_certificates_welcome(
    tmp_path: Path,
) -> None:
    written = pki.write_pki(tmp_path, hosts=["127.0.0.1"])
    settings = delegating.RequestHeaders(client_ca=written.front_proxy_ca_cert.read_text())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    settings.trust(context)
    assert context.verify_mode == ssl.CERT_OPTIONAL  # the webhooks' callers send none
    [loaded] = context.get_ca_certs()
    assert loaded["subject"] == ((("commonName", "smimesh-local-front-proxy-ca"),),)
