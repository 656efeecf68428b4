"""Fixtures for the identity tests: a mesh CA and a workload identity in `cluster.local`."""

from __future__ import annotations

import pytest

from smimesh.identity import authority, spiffe

TRUST_DOMAIN = "cluster.local"


@pytest.fixture(scope="session")
def ca() -> authority.CertificateAuthority:
    return authority.create(TRUST_DOMAIN)


@pytest.fixture
def web() -> spiffe.SpiffeId:
    return spiffe.SpiffeId(TRUST_DOMAIN, "shop", "web")
