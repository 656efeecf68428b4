"""Shared fixtures: one real cluster per test session (see smimesh.testing.clusters), and
the fast tier's guard: a test marked `fast` (`make test-fast`, `pytest -m fast`) may use no
cluster, open no network socket and start no process, or it fails."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from smimesh._aio import waiting
from smimesh.testing import clusters, helm, nodes
from tests.testing import nodepods


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite golden expected files (tests/golden/...) instead of comparing.",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


class FastTierIOError(RuntimeError):
    """Raised inside a `fast` test that opens a network socket or starts a process (not an
    OSError, so code that handles connection errors does not swallow it)."""


# The audit hook stays installed for the whole process (audit hooks cannot be removed); it
# acts only while a `fast` test runs. The event loop's own AF_UNIX socketpair is allowed: it
# neither binds nor connects.
_guard: dict[str, list[str] | None] = {"violations": None}
_NETWORK_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})
_PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork", "os.spawn", "os.system"}
)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    violations = _guard["violations"]
    if violations is None:
        return
    if event == "socket.__new__" and args[1] in _NETWORK_FAMILIES:
        found = f"a network socket (family {args[1]!r})"
    elif event in {"socket.bind", "socket.connect"}:
        found = f"{event}({args[1]!r})"
    elif event in _PROCESS_EVENTS:
        found = f"{event}{args[:2]!r}"
    else:
        return
    violations.append(found)
    raise FastTierIOError(f"a fast test used {found}; mark it otherwise or remove the I/O")


sys.addaudithook(_audit)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every `fast` test runs under `_no_io`; one that needs the cluster is a usage error (its
    session fixture would start etcd and kube-apiserver)."""
    for item in items:
        if item.get_closest_marker("fast") is None or not isinstance(item, pytest.Function):
            continue
        if "cluster" in item.fixturenames or item.get_closest_marker("cluster") is not None:
            raise pytest.UsageError(f"{item.nodeid} is marked fast but needs the cluster")
        item.fixturenames.insert(0, "_no_io")


@pytest.fixture
def _no_io() -> Iterator[None]:
    """Fail a fast test that opened a network socket or started a process, even when the code
    under test caught the error."""
    violations: list[str] = []
    _guard["violations"] = violations
    try:
        yield
    finally:
        _guard["violations"] = None
    if violations:
        pytest.fail(f"a fast test did I/O: {violations}")


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


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[nodes.NodeCluster]:
    """The real node beside its own control plane, for the `node` tier (`make pytest-node`);
    one per session, started on first use and timed."""
    started = time.monotonic()
    with nodes.running(say=_say) as provided:
        _say(f"real node up in {time.monotonic() - started:.1f}s ({provided.node.timings})")
        yield provided
        _say(f"real node RSS {provided.node.rss_bytes() / 2**20:.0f} MiB before stop")
    _say(f"real node stopped in {provided.node.timings.get('stop', 0.0):.1f}s")


@pytest.fixture(scope="session")
def node_api(node_cluster: nodes.NodeCluster) -> clusters.Cluster:
    """The node's cluster, driven as any other (kubectl, the Python client)."""
    plane = node_cluster.plane
    return clusters.Cluster("node", plane.kubeconfig, str(plane.binaries.kubectl))


@pytest.fixture(scope="module")
def mesh_on_node(node_cluster: nodes.NodeCluster, node_api: clusters.Cluster) -> Iterator[str]:
    """The mesh installed on the node from this tree's image, for a module; yields the image
    (`nodepods.installed_mesh`)."""
    with nodepods.installed_mesh(node_cluster, node_api, say=_say) as image:
        yield image


@pytest.fixture
def node_namespace(node_api: clusters.Cluster) -> str:
    """A fresh namespace on the node's cluster, once its default ServiceAccount exists."""
    name = f"n-{uuid.uuid4().hex[:10]}"
    created = node_api.kubectl("create", "namespace", name)
    assert created.returncode == 0, created.stderr
    waiting.eventually_sync(
        lambda: (
            node_api.kubectl("get", "serviceaccount", "default", "-n", name).returncode == 0 or None
        ),
        timeout=30,
        message=f"no default ServiceAccount appeared in {name}",
        interval=0.2,
    )
    return name


@pytest.fixture(scope="session")
def run_helm(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`helm ARGS` with the pinned helm (`smimesh.testing.helm`, built once and cached) and
    its own config, cache and data directories; the caller checks the return code. For the
    chart tests (tests/charts) and the chart on the real node (tests/testing)."""
    executable = helm.ensure()
    home = tmp_path_factory.mktemp("helm")
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(executable), *args], capture_output=True, text=True, check=False,
            timeout=300, env=env,
        )  # fmt: skip

    return run
