"""Shared fixtures: one real cluster per test session (see smimesh.testing.clusters)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from smimesh.testing import clusters


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite golden expected files (tests/golden/...) instead of comparing.",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def _say(message: str) -> None:
    print(f"[smimesh] {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def cluster() -> Iterator[clusters.Cluster]:
    """A real cluster (local etcd + kube-apiserver unless SMIMESH_CLUSTER says otherwise)."""
    with clusters.provide(say=_say) as provided:
        yield provided


@pytest.fixture(scope="session")
def api(cluster: clusters.Cluster) -> Iterator[client.ApiClient]:
    """A Python API client connected to the session's cluster."""
    with cluster.api_client() as api_client:
        yield api_client


@pytest.fixture
def namespace(api: client.ApiClient) -> str:
    """A fresh namespace for one test (namespaces are never reused between tests)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name
