"""The end-to-end tests' `mesh` fixture: a fresh local mesh (operator, webhooks) on the
session's control plane, its logs shown when a test fails (`support`); and the fault suite's
table (`faultreport`), printed in the terminal summary so CI output carries it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smimesh.testing import clusters, meshes
from tests.e2e import faultreport, support


@pytest.fixture
def mesh(cluster: clusters.Cluster) -> Iterator[meshes.LocalMesh]:
    with support.local_mesh(cluster) as local:
        yield local


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault suite's table (`faultreport`), when fault tests ran in this session."""
    if faultreport.ROWS:
        terminalreporter.section("fault suite: fixed-rate traffic through the mesh")
        for line in faultreport.render(faultreport.ROWS):
            terminalreporter.write_line(line)
