"""The ends of a request as the sidecars' metrics name them: `Workload` (namespace, kind,
name, pod), whose parts are the `source_*` and `destination_*` labels, and the `osm-stats-*`
request headers that tell a server-side sidecar which workload called.

Written by the sidecar (`smimesh.sidecar.metrics` labels its series with it, `outbound` sends
the headers, `inbound` and `http2` read them); read back from scraped `/metrics` by
`smimesh.telemetry.trafficstats`. Part of the contract because both sides must spell the
labels alike. Pure.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

LABELS = ("namespace", "kind", "name", "pod")
"""The parts of a workload, in label order: `source_namespace`, `source_kind`, …"""

_POD_OF_DEPLOYMENT = re.compile(r"^(?P<name>.+)-[a-z0-9]{5,10}-[a-z0-9]{5}$")
# What a Kubernetes name or kind may look like (DNS-1123 subdomain, or a CamelCase kind):
# a header value that is not one is ignored, never copied into a label.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")


@dataclass(frozen=True, order=True, slots=True)
class Workload:
    """One end of a request (`source_*` / `destination_*` labels); empty parts are unknown."""

    namespace: str = ""
    kind: str = ""
    name: str = ""
    pod: str = ""

    @classmethod
    def of_pod(cls, namespace: str, pod: str, kind: str = "", name: str = "") -> Workload:
        """The contract names pods, Flagger queries workloads: a Deployment's pod is
        `<name>-<replicaset hash>-<suffix>`; anything else is reported as the Pod itself."""
        if not kind:
            found = _POD_OF_DEPLOYMENT.match(pod)
            kind, name = ("Deployment", found["name"]) if found else ("Pod", pod)
        return cls(namespace, kind, name, pod)

    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """OSM's `osm-stats-*` request headers: how the server side learns the source pod."""
        return _stats_headers(self)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], verified: Workload) -> Workload:
        """The source workload of an inbound request. `verified` is what the peer's
        certificate proves (namespace and ServiceAccount; empty for plaintext). The caller's
        `osm-stats-*` headers only refine it to a pod and workload name, and only when they
        claim the verified namespace and look like Kubernetes names: a caller can never
        write a series for another namespace, and a plaintext caller gets empty labels.
        A denied request is recorded with `verified` itself (the call sites do so)."""
        if not verified.namespace:
            return verified
        namespace = headers.get("osm-stats-namespace", "")
        kind = headers.get("osm-stats-kind", "")
        name = headers.get("osm-stats-name", "")
        pod = headers.get("osm-stats-pod", "")
        if namespace != verified.namespace or not (
            _KIND.match(kind) and _NAME.match(name) and _NAME.match(pod)
        ):
            return verified
        return cls(namespace, kind, name, pod)

    @property
    def owner(self) -> Workload:
        """The workload without its pod: edges are between workloads, not pods."""
        return Workload(self.namespace, self.kind, self.name)

    def __str__(self) -> str:
        if not (self.namespace or self.name):
            return "(unknown)"
        kind = "svc" if self.kind == "Service" else self.kind.lower() or "?"
        return f"{self.namespace}/{kind}/{self.name}"


@functools.lru_cache(maxsize=64)
def _stats_headers(workload: Workload) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(
        (f"osm-stats-{label}".encode(), getattr(workload, label).encode()) for label in LABELS
    )


STATS_HEADERS = frozenset(f"osm-stats-{label}".encode() for label in LABELS)
"""The header names, which a sidecar drops from requests it forwards (the client side then
adds its own)."""
