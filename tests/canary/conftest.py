"""The canary tier's real parts, on the session's node, for the whole package: the mesh
installed from this tree's image (once for the Flagger and the Argo Rollouts modules), and a
real Prometheus with the scrape job smimesh ships."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smimesh.testing import clusters, nodes, prometheus
from tests.testing import nodepods


@pytest.fixture(scope="package")
def mesh_on_node(node_cluster: nodes.NodeCluster, node_api: clusters.Cluster) -> Iterator[str]:
    """The mesh on the node for the whole package (tests/conftest.py's is per module)."""
    with nodepods.installed_mesh(node_cluster, node_api, say=print) as image:
        yield image


@pytest.fixture(scope="package")
def prometheus_on_node(
    node_api: clusters.Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[prometheus.Prometheus]:
    """A real Prometheus scraping every sidecar on the node, as its own ServiceAccount."""
    with prometheus.running(node_api, tmp_path_factory.mktemp("prometheus")) as running:
        yield running
