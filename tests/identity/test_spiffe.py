"""SPIFFE IDs parse and format both ways, and every malformed one is refused with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smimesh.identity import errors, spiffe

pytestmark = pytest.mark.fast

labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
domains = st.from_regex(r"\A[a-z0-9._-]{1,30}\Z")


def test_an_identity_formats_as_a_spiffe_uri() -> None:
    identity = spiffe.SpiffeId("cluster.local", "shop", "web")
    assert str(identity) == "spiffe://cluster.local/ns/shop/sa/web"
    assert spiffe.parse(identity.uri) == identity


@given(domain=domains, namespace=labels, account=labels)
def test_parse_inverts_format(domain: str, namespace: str, account: str) -> None:
    identity = spiffe.SpiffeId(domain, namespace, account)
    assert spiffe.parse(identity.uri) == identity


@given(text=st.text(max_size=80))
def test_parse_refuses_garbage_only_with_its_typed_error(text: str) -> None:
    try:
        identity = spiffe.parse(text)
    except errors.InvalidIdentityError:
        return
    assert identity.uri == text


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("https://cluster.local/ns/a/sa/b", "must start with 'spiffe://'"),
        ("spiffe://cluster.local", "has no path"),
        ("spiffe://cluster.local/ns/a", "the path must be /ns/<namespace>/sa/<service-account>"),
        ("spiffe://cluster.local/ns/a/sa/b/extra", "the path must be"),
        ("spiffe://cluster.local/sa/b/ns/a", "the path must be"),
        ("spiffe://cluster.local:8443/ns/a/sa/b", "no port or user info"),
        ("spiffe://Cluster.Local/ns/a/sa/b", "trust domain 'Cluster.Local'"),
        ("spiffe://cluster.local/ns/A/sa/b", "namespace 'A' is not a DNS-1123 label"),
        ("spiffe://cluster.local/ns/a/sa/b_c", "service account 'b_c'"),
        ("spiffe://cluster.local/ns/a/sa/b?x=1", "no query or fragment"),
        ("spiffe://cluster.local/ns//sa/b", "namespace '' is not a DNS-1123 label"),
    ],
)
def test_malformed_ids_are_refused_with_what_is_wrong(uri: str, says: str) -> None:
    with pytest.raises(errors.InvalidIdentityError, match=None) as caught:
        spiffe.parse(uri)
    assert says in str(caught.value)
    assert caught.value.reason == "invalid_identity"


def test_an_invalid_identity_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="DNS-1123"):
        spiffe.SpiffeId("cluster.local", "-bad", "web")
