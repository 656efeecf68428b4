"""The end-to-end tests' `mesh` fixture: a fresh local mesh (operator, webhooks) on the
session's control plane, its logs shown when a test fails (`support`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smimesh.testing import clusters, meshes
from tests.e2e import support


@pytest.fixture
def mesh(cluster: clusters.Cluster) -> Iterator[meshes.LocalMesh]:
    with support.local_mesh(cluster) as local:
        yield local
