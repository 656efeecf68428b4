"""Mesh profiles: how to put the test app into a given SMI mesh (`--mesh`) and keep the suite's
control port out of it. Each says which labels and annotations opt a namespace or pod in,
which pod annotation excludes an inbound port from interception, how a namespace is made
strict or permissive (if the mesh can say so per namespace), and whether the mesh reports
smimesh's status conditions.

Read by `deploying`, which renders the Namespaces and Pods from them. The annotation names
are those each mesh documents (OSM, Linkerd, Consul on Kubernetes); ours come from
`smimesh.kube.names`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from smimesh.kube import names

MeshName = Literal["smimesh", "osm", "linkerd", "consul", "none"]
Access = Literal["strict", "permissive"]
Programmed = Literal["conditions", "traffic"]


@dataclass(frozen=True)
class Profile:
    name: MeshName
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    namespace_annotations: Mapping[str, str] = field(default_factory=dict)
    access: Mapping[Access, Mapping[str, str]] = field(default_factory=dict)
    """Namespace annotations for each access mode the mesh can set per namespace."""
    no_permissive: str = ""
    """Why a namespace cannot be made permissive here (empty when it can)."""
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    exclude_inbound: str | None = None
    """The pod annotation listing inbound ports the mesh must not intercept."""
    programmed: Programmed = "traffic"
    """"conditions": the mesh reports Programmed (smimesh); "traffic": only traffic tells."""

    def namespace(self, name: str, access: Access) -> dict[str, object]:
        """The Namespace manifest for a namespace of the given access mode."""
        annotations = {**self.namespace_annotations, **self.access.get(access, {})}
        metadata: dict[str, object] = {"name": name}
        if self.namespace_labels:
            metadata["labels"] = dict(self.namespace_labels)
        if annotations:
            metadata["annotations"] = annotations
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}

    def pod_metadata(self, *, control_port: int) -> dict[str, str]:
        """Pod annotations: the opt-in, and the control port left out of interception."""
        annotations = dict(self.pod_annotations)
        if self.exclude_inbound is not None:
            annotations[self.exclude_inbound] = str(control_port)
        return annotations


PROFILES: Mapping[MeshName, Profile] = {
    "smimesh": Profile(
        "smimesh",
        namespace_labels={names.NAMESPACE_MESH_LABEL: names.ENABLED},
        access={
            "strict": {names.NAMESPACE_ACCESS_ANNOTATION: "strict"},
            "permissive": {names.NAMESPACE_ACCESS_ANNOTATION: "permissive"},
        },
        exclude_inbound=names.EXCLUDE_INBOUND_PORTS_ANNOTATION,
        programmed="conditions",
    ),
    "osm": Profile(
        "osm",
        namespace_labels={"openservicemesh.io/monitored-by": "osm"},
        namespace_annotations={"openservicemesh.io/sidecar-injection": "enabled"},
        # Strict is OSM's default (permissive traffic policy mode off).
        access={"strict": {}},
        no_permissive="OSM's permissive traffic policy mode is mesh-wide (MeshConfig "
        "spec.traffic.enablePermissiveTrafficPolicyMode), not per namespace",
        exclude_inbound="openservicemesh.io/inbound-port-exclusion-list",
    ),
    "linkerd": Profile(
        "linkerd",
        namespace_annotations={"linkerd.io/inject": "enabled"},
        access={
            "strict": {"config.linkerd.io/default-inbound-policy": "deny"},
            "permissive": {"config.linkerd.io/default-inbound-policy": "all-unauthenticated"},
        },
        exclude_inbound="config.linkerd.io/skip-inbound-ports",
    ),
    "consul": Profile(
        "consul",
        # Strict assumes intentions default to deny (ACLs on, or a `*` deny intention).
        access={"strict": {}},
        no_permissive="Consul's default intention is datacenter-wide (ACL default policy or "
        "a `*` intention), not per namespace",
        pod_annotations={"consul.hashicorp.com/connect-inject": "true"},
        exclude_inbound="consul.hashicorp.com/transparent-proxy-exclude-inbound-ports",
    ),
    # No mesh: everything is allowed, so permissive holds and strict cases fail, as they should.
    "none": Profile("none", access={"strict": {}, "permissive": {}}),
}


def lookup(name: str) -> Profile:
    """The profile called `name`; ValueError naming the known ones otherwise."""
    for key, profile in PROFILES.items():
        if key == name:
            return profile
    raise ValueError(f"unknown mesh {name!r}: one of {', '.join(PROFILES)}")
