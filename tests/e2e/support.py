"""What the end-to-end tests share: a local mesh that shows its logs when a test fails, and
the TrafficTarget a -> b most of them need. The `mesh` fixture lives in `conftest`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from smimesh.conformance import objects
from smimesh.testing import clusters, meshes


def show_logs(local: meshes.LocalMesh) -> None:
    """The operator's and every sidecar's log tail; pytest shows them for a failed test."""
    if local.operator is not None:
        print(f"--- operator log ---\n{local.operator.logs()[-8000:]}")
    for workload in local.started:
        print(f"--- {workload.spec.name} sidecar ---\n{workload.log('sidecar')[-3000:]}")


@contextlib.contextmanager
def local_mesh(
    cluster: clusters.Cluster, operator_args: tuple[str, ...] = ()
) -> Iterator[meshes.LocalMesh]:
    with meshes.LocalMesh(cluster, operator_args=operator_args) as local:
        yield local
        show_logs(local)


def allow_a_to_b(mesh: meshes.LocalMesh, namespace: str) -> None:
    """A TrafficTarget service-a -> service-b over a TCPRoute of all ports (the
    conformance suite's own builders, namespaced here)."""
    items = [
        objects.tcp_route("all"),
        objects.target(
            "a-to-b",
            destination="service-b",
            sources=[(namespace, "service-a")],
            rules=[{"kind": "TCPRoute", "name": "all"}],
            namespace=namespace,
        ),
    ]
    mesh.apply(
        *[{**item, "metadata": {**item["metadata"], "namespace": namespace}} for item in items]
    )
