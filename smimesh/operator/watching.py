"""kopf watch handlers that feed `indexing.MeshIndex`: every SMI kind (at its hub version,
which the apiserver converts to) plus Services, EndpointSlices, Pods and Namespaces.

Registered by `running` into an explicit kopf registry. Handlers are coroutines that only
update the in-memory index (no I/O, no waiting), so they run on the event loop, never in a
thread, and never block it; kopf never writes to the
watched objects because only `on.event` handlers are used (no finalizers, no progress
annotations).
"""

from __future__ import annotations

from typing import Any

import kopf

from smimesh.operator import indexing

WATCHED: tuple[tuple[str, str, str], ...] = (
    ("", "v1", "services"),
    ("discovery.k8s.io", "v1", "endpointslices"),
    ("", "v1", "pods"),
    ("", "v1", "namespaces"),
    ("split.smi-spec.io", "v1alpha4", "trafficsplits"),
    ("access.smi-spec.io", "v1alpha3", "traffictargets"),
    ("specs.smi-spec.io", "v1alpha4", "httproutegroups"),
    ("specs.smi-spec.io", "v1alpha4", "tcproutes"),
)


def register(registry: kopf.OperatorRegistry, index: indexing.MeshIndex) -> None:
    """Add one event handler per watched resource to `registry`."""

    async def on_event(*, type: str, body: kopf.Body, **_: Any) -> None:
        # Async on purpose: kopf runs sync handlers in worker threads, and the index (with
        # its asyncio.Event) belongs to the event loop; `apply` is quick and never waits.
        # `type` is None for objects of the initial listing: they are current state too.
        index.apply(dict(body), deleted=type == "DELETED")

    for group, version, plural in WATCHED:
        kopf.on.event(group, version, plural, registry=registry)(on_event)
