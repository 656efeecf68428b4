"""The mesh model: the compiler's whole input, as frozen typed objects.

The operator's indexes parse Kubernetes objects into these types once, at the edge
(`smimesh.operator.indexing`), and hand a `MeshState` to `compiling.compile_mesh`. Core kinds
are reduced to the fields the mesh needs; SMI objects are the hub models of `smimesh.smi`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from smimesh.proxyconfig import refs, snapshots
from smimesh.smi import access, specs, split

AccessMode = Literal["strict", "permissive"]
"""strict: deny by default, TrafficTargets allow; permissive: every caller is allowed."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class ServicePort(Frozen):
    name: str = ""
    port: int
    target_port: int | str
    transport: Literal["TCP", "UDP", "SCTP"] = "TCP"
    app_protocol: str | None = None


class Service(Frozen):
    ref: refs.ServiceRef
    cluster_ip: str | None = None
    selector: Mapping[str, str] | None = None
    ports: tuple[ServicePort, ...] = ()
    annotations: Mapping[str, str] = Field(default_factory=dict)


class SliceEndpoint(Frozen):
    address: str
    pod: str | None = None
    ready: bool = True


class SlicePort(Frozen):
    name: str = ""
    port: int


class EndpointSlice(Frozen):
    namespace: str
    name: str
    service: str
    ports: tuple[SlicePort, ...] = ()
    endpoints: tuple[SliceEndpoint, ...] = ()


class Pod(Frozen):
    namespace: str
    name: str
    service_account: str = "default"
    labels: Mapping[str, str] = Field(default_factory=dict)
    ip: str | None = None
    ready: bool = False
    meshed: bool = False
    app_ports: Mapping[int, int] = Field(
        default_factory=dict, description="Service target port -> where the app listens."
    )

    def app_port(self, port: int) -> int:
        """Where the app listens for the Service target port `port` (the same, unless the
        pod's annotation maps it)."""
        return self.app_ports.get(port, port)

    @property
    def proxy(self) -> refs.ProxyRef:
        return refs.ProxyRef(
            namespace=self.namespace, service_account=self.service_account, pod=self.name
        )


class Namespace(Frozen):
    name: str
    meshed: bool = False
    access: AccessMode | None = Field(default=None, description="None: the mesh's default.")


MeshObject = (
    Namespace
    | Service
    | EndpointSlice
    | Pod
    | split.TrafficSplit
    | access.TrafficTarget
    | specs.HTTPRouteGroup
    | specs.TCPRoute
)
"""One object the mesh reads: a core kind reduced to what the mesh needs, or an SMI hub."""


class MeshState(Frozen):
    """Everything the compiler reads. Tuples are in any order; the compiler sorts."""

    settings: snapshots.MeshSettings = snapshots.MeshSettings()
    default_access: AccessMode = Field(
        default="permissive",
        description="The mode of namespaces without an annotation (see DESIGN.md: Flagger "
        "creates no TrafficTarget, so a mesh that starts strict breaks it).",
    )
    namespaces: tuple[Namespace, ...] = ()
    services: tuple[Service, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()
    pods: tuple[Pod, ...] = ()
    splits: tuple[split.TrafficSplit, ...] = ()
    targets: tuple[access.TrafficTarget, ...] = ()
    route_groups: tuple[specs.HTTPRouteGroup, ...] = ()
    tcp_routes: tuple[specs.TCPRoute, ...] = ()

    @classmethod
    def of(
        cls,
        objects: Iterable[MeshObject],
        *,
        settings: snapshots.MeshSettings | None = None,
        default_access: AccessMode = "permissive",
    ) -> MeshState:
        """The state holding `objects`, each in the field of its type, in the order given."""
        fields: dict[str, list[MeshObject]] = {}
        for obj in objects:
            fields.setdefault(_FIELDS[type(obj)], []).append(obj)
        return cls(
            settings=settings or snapshots.MeshSettings(),
            default_access=default_access,
            **{field: tuple(values) for field, values in fields.items()},
        )

    def access_of(self, namespace: str) -> AccessMode:
        for candidate in self.namespaces:
            if candidate.name == namespace and candidate.access is not None:
                return candidate.access
        return self.default_access


Key = tuple[str, str, str, str]
"""(kind, API group, namespace, name): how the operator's index (`operator.indexing.key_of`)
and `incremental` name one object."""

_GROUPS: dict[type[MeshObject], str] = {EndpointSlice: "discovery.k8s.io"}


def key_of(obj: MeshObject) -> Key:
    """The object's key, as `operator.indexing.key_of` gives it for the raw object."""
    if isinstance(obj, Namespace):
        return ("Namespace", "", "", obj.name)
    if isinstance(obj, Service):
        return ("Service", "", obj.ref.namespace, obj.ref.name)
    if isinstance(obj, EndpointSlice | Pod):
        return (type(obj).__name__, _GROUPS.get(type(obj), ""), obj.namespace, obj.name)
    group = obj.api_version.rpartition("/")[0]
    return (obj.kind, group, obj.metadata.namespace or "", obj.metadata.name or "")


_FIELDS: dict[type[MeshObject], str] = {
    Namespace: "namespaces",
    Service: "services",
    EndpointSlice: "endpoint_slices",
    Pod: "pods",
    split.TrafficSplit: "splits",
    access.TrafficTarget: "targets",
    specs.HTTPRouteGroup: "route_groups",
    specs.TCPRoute: "tcp_routes",
}
