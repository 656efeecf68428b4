"""Kubernetes objects (as JSON dicts) -> the compiler's typed mesh model, once, at the edge.

Used by the operator's indexes (each watched object is parsed when it changes) and by golden
tests (a YAML scenario becomes a `state.MeshState`). SMI objects of any served version are
parsed with `smimesh.smi` and converted to their hub. Pure; a bad object raises
`ParseError` naming it, never a bare KeyError.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast, get_args

import pydantic

from smimesh.compiler import state
from smimesh.kube import names
from smimesh.proxyconfig import refs, snapshots
from smimesh.smi import access, conversion, kinds, objects, specs, split

Raw = Mapping[str, Any]


class ParseError(ValueError):
    """An object the mesh cannot read; the message names it."""


def _meta(raw: Raw) -> Mapping[str, Any]:
    return cast(Mapping[str, Any], raw.get("metadata") or {})


def _name(raw: Raw) -> str:
    meta = _meta(raw)
    return f"{raw.get('kind')} {meta.get('namespace', '')}/{meta.get('name', '')}"


def service(raw: Raw) -> state.Service:
    meta, spec = _meta(raw), raw.get("spec") or {}
    ports = [
        state.ServicePort(
            name=port.get("name", ""),
            port=port["port"],
            target_port=port.get("targetPort", port["port"]),
            transport=port.get("protocol", "TCP"),
            app_protocol=port.get("appProtocol"),
        )
        for port in spec.get("ports") or []
    ]
    cluster_ip = spec.get("clusterIP")
    return state.Service(
        ref=refs.ServiceRef(namespace=meta["namespace"], name=meta["name"]),
        cluster_ip=cluster_ip if cluster_ip and cluster_ip != "None" else None,
        selector=spec.get("selector"),
        ports=tuple(ports),
        annotations=meta.get("annotations") or {},
    )


def endpoint_slice(raw: Raw) -> state.EndpointSlice:
    meta = _meta(raw)
    labels = meta.get("labels") or {}
    endpoints: list[state.SliceEndpoint] = []
    for endpoint in raw.get("endpoints") or []:
        ready = (endpoint.get("conditions") or {}).get("ready")
        target = endpoint.get("targetRef") or {}
        pod = target.get("name") if target.get("kind", "Pod") == "Pod" else None
        endpoints.extend(
            state.SliceEndpoint(address=address, pod=pod, ready=ready is not False)
            for address in endpoint.get("addresses") or []
        )
    return state.EndpointSlice(
        namespace=meta["namespace"],
        name=meta["name"],
        service=labels.get("kubernetes.io/service-name", ""),
        ports=tuple(
            state.SlicePort(name=port.get("name") or "", port=port["port"])
            for port in raw.get("ports") or []
            if port.get("port")
        ),
        endpoints=tuple(endpoints),
    )


def _app_ports(annotation: str | None) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for item in (annotation or "").split(","):
        if "=" in item:
            port, app_port = item.split("=", 1)
            mapping[int(port)] = int(app_port)
    return mapping


def pod(raw: Raw) -> state.Pod:
    meta, spec, status = _meta(raw), raw.get("spec") or {}, raw.get("status") or {}
    annotations = meta.get("annotations") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return state.Pod(
        namespace=meta["namespace"],
        name=meta["name"],
        service_account=spec.get("serviceAccountName") or "default",
        labels=meta.get("labels") or {},
        ip=status.get("podIP"),
        ready=conditions.get("Ready") == "True",
        meshed=names.INJECTED_ANNOTATION in annotations,
        app_ports=_app_ports(annotations.get(names.APP_PORTS_ANNOTATION)),
    )


def namespace(raw: Raw) -> state.Namespace:
    meta = _meta(raw)
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    mode = annotations.get(names.NAMESPACE_ACCESS_ANNOTATION)
    if mode is not None and mode not in get_args(state.AccessMode):
        raise ParseError(
            f"{_name(raw)}: {names.NAMESPACE_ACCESS_ANNOTATION}={mode!r} is not "
            "strict or permissive"
        )
    return state.Namespace(
        name=meta["name"],
        meshed=labels.get(names.NAMESPACE_MESH_LABEL) == "enabled",
        access=cast(state.AccessMode | None, mode),
    )


def smi_hub(raw: Raw) -> objects.Resource:
    """Any served version of an SMI object, converted to its kind's hub."""
    model = kinds.lookup(str(raw.get("apiVersion")), str(raw.get("kind")))
    if model is None:
        raise ParseError(f"{_name(raw)}: not an SMI kind this mesh serves")
    try:
        return conversion.to_hub(model.model_validate(dict(raw)))
    except (pydantic.ValidationError, conversion.ConversionError) as exc:
        raise ParseError(f"{_name(raw)}: {exc}") from exc


def mesh_state(
    objects: Iterable[Raw],
    *,
    settings: snapshots.MeshSettings | None = None,
    default_access: state.AccessMode = "permissive",
) -> state.MeshState:
    """A MeshState from a bag of objects (Lists flattened, unknown kinds ignored)."""
    buckets: dict[str, list[Any]] = {key: [] for key in _FIELDS.values()}
    for raw in _flatten(objects):
        parsed = parse_object(raw)
        if parsed is not None:
            buckets[parsed[0]].append(parsed[1])
    return state.MeshState(
        settings=settings or snapshots.MeshSettings(),
        default_access=default_access,
        **{field: tuple(items) for field, items in buckets.items()},
    )


def parse_object(raw: Raw) -> tuple[str, Any] | None:
    """(MeshState field, parsed object) for a kind the mesh reads; None for other kinds."""
    kind = str(raw.get("kind"))
    try:
        if kind in _CORE:
            return _FIELDS[kind], _CORE[kind](raw)
        if kinds.lookup(str(raw.get("apiVersion")), kind) is None:
            return None
        hub = smi_hub(raw)
    except ParseError:
        raise
    except (KeyError, TypeError, ValueError, pydantic.ValidationError) as exc:
        raise ParseError(f"{_name(raw)}: cannot read it ({type(exc).__name__}: {exc})") from exc
    for hub_type, field in _HUBS:
        if isinstance(hub, hub_type):
            return field, hub
    return None


def _flatten(objects: Iterable[Raw]) -> Iterable[Raw]:
    for raw in objects:
        if raw.get("kind") == "List" or str(raw.get("kind", "")).endswith("List"):
            yield from _flatten(raw.get("items") or [])
        elif raw:
            yield raw


_CORE: dict[str, Any] = {
    "Service": service,
    "EndpointSlice": endpoint_slice,
    "Pod": pod,
    "Namespace": namespace,
}
_FIELDS = {
    "Service": "services",
    "EndpointSlice": "endpoint_slices",
    "Pod": "pods",
    "Namespace": "namespaces",
    "TrafficSplit": "splits",
    "TrafficTarget": "targets",
    "HTTPRouteGroup": "route_groups",
    "TCPRoute": "tcp_routes",
}
_HUBS: tuple[tuple[type[objects.Resource], str], ...] = (
    (split.TrafficSplit, "splits"),
    (access.TrafficTarget, "targets"),
    (specs.HTTPRouteGroup, "route_groups"),
    (specs.TCPRoute, "tcp_routes"),
)
